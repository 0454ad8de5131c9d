//! The lab's base image: a Debian bookworm root filesystem made by debootstrap, built once and
//! cached in `<root>/images/<key>/`, where the key is a hash of the recipe (suite, packages,
//! customisation version), so a recipe change builds a new image instead of reusing a stale one.
//!
//! Built under an exclusive flock (two concurrent `up`s build once), into a temp dir that is
//! renamed into place only when complete: a crash leaves no half image, and the next build
//! deletes the leftover temp dir (after unmounting whatever debootstrap had mounted in it).
//!
//! The image carries every OS package the roles expect, because lab hosts have no network
//! access of their own. Services that would start on boot and bind ports (nginx, haproxy,
//! keepalived, chrony, docker-registry, rpcbind from nfs-common) are disabled in the image:
//! the roles decide what runs. ssh and systemd-networkd are enabled. The image has no ssh host
//! keys and an empty machine-id: each host gets its own (see `host`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::{LabError, LabPaths, sys};

/// Debian release of the image.
pub const SUITE: &str = "bookworm";

/// Packages installed on every lab host (besides minbase): what roles expect on a host.
#[rustfmt::skip]
pub const PACKAGES: &[&str] = &[
    // a host
    "systemd", "systemd-sysv", "openssh-server", "dbus", "iproute2", "sudo", "ca-certificates",
    "procps", "less", "kmod", "iptables", "iputils-ping", "openssl", "curl",
    // ex-lb and chrony roles
    "nginx", "libnginx-mod-stream", "haproxy", "keepalived", "chrony",
    // local-registry role (IMAGE_DELIVERY=registry)
    "docker-registry",
    // prepare role's PREPARE_PACKAGES (installed offline = verified present)
    "bash-completion", "conntrack", "ipset", "ipvsadm", "jq", "libseccomp2", "lvm2", "nfs-common",
    "psmisc", "rsync", "socat",
];

/// Services disabled in the image so nothing binds ports until a role starts it.
pub const DISABLED_UNITS: &[&str] = &[
    "nginx",
    "docker-registry",
    "haproxy",
    "keepalived",
    "chrony",
    "rpcbind.service",
    "rpcbind.socket",
];

/// Units masked in the image: the rpc_pipefs mount (nfs-common's, for Kerberos NFS) cannot be
/// mounted inside a container and would leave every host `degraded`.
pub const MASKED_UNITS: &[&str] = &["run-rpc_pipefs.mount"];

/// Units enabled in the image.
pub const ENABLED_UNITS: &[&str] = &["ssh", "systemd-networkd"];

/// Bump when `customize` changes, so cached images are rebuilt.
const CUSTOMIZE_VERSION: u32 = 1;

/// The recipe text; its hash names the cached image.
pub fn recipe() -> String {
    format!(
        "suite={SUITE}\nvariant=minbase\ninclude={}\nenable={}\ndisable={}\nmask={}\ncustomize=v{CUSTOMIZE_VERSION}\n",
        PACKAGES.join(","),
        ENABLED_UNITS.join(","),
        DISABLED_UNITS.join(","),
        MASKED_UNITS.join(",")
    )
}

/// `bookworm-<12 hex of sha256(recipe)>`.
pub fn key() -> String {
    let digest = Sha256::digest(recipe().as_bytes());
    format!("{SUITE}-{}", &hex::encode(digest)[..12])
}

/// Path of the image for the current recipe (it may not exist yet).
pub fn image_dir(paths: &LabPaths) -> PathBuf {
    paths.images_dir().join(key())
}

/// Is the image for the current recipe built?
pub fn is_cached(paths: &LabPaths) -> bool {
    image_dir(paths).join("etc/ezk-image").is_file()
}

/// Return the cached image, building it first if needed. `progress` receives one line per
/// debootstrap/customisation step.
pub fn ensure(paths: &LabPaths, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, LabError> {
    let dir = image_dir(paths);
    if is_cached(paths) {
        return Ok(dir);
    }
    let images = paths.images_dir();
    let _lock = sys::lock_file_noting_wait(&images.join(format!(".lock-{}", key())), || {
        progress("another ezk is building the base image; waiting for it")
    })?;
    // Someone else may have built it while we waited for the lock.
    if dir.join("etc/ezk-image").is_file() {
        return Ok(dir);
    }
    let tmp = images.join(format!(".tmp-{}", key()));
    sys::remove_tree(&tmp)?;
    progress(&format!(
        "building base image {} (debootstrap {SUITE}, a few minutes, once)",
        key()
    ));
    let result = debootstrap(&tmp, progress).and_then(|()| customize(&tmp, progress));
    if let Err(e) = result {
        let _ = sys::remove_tree(&tmp);
        return Err(e);
    }
    if let Err(e) = sys::unmount_all(&tmp) {
        let _ = sys::remove_tree(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dir).map_err(LabError::io(&dir))?;
    progress(&format!("base image ready: {}", dir.display()));
    Ok(dir)
}

/// debootstrap's per-package progress verbs, grouped into the phases shown to the user.
fn package_phase(verb: &str) -> Option<&'static str> {
    match verb {
        "Retrieving" | "Validating" => Some("downloading"),
        "Extracting" => Some("extracting"),
        "Unpacking" | "Configuring" | "Installing" => Some("installing"),
        _ => None,
    }
}

fn debootstrap(target: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(target)
        .arg(crate::machine::debian_mirror())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = sys::show(&cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::Image(format!("{shown}: {e}")))?;
    // stderr on a thread so neither pipe can fill up and stall debootstrap.
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.push(l);
        }
        lines
    });
    let mut last = Vec::new();
    let mut phase = "";
    // Drawn only when stderr is a terminal (indicatif hides itself otherwise).
    let spinner = indicatif::ProgressBar::new_spinner();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        if super::check_interrupted().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Interrupted);
        }
        if let Some(msg) = line.strip_prefix("I: ") {
            // Per-package lines (hundreds) go to the spinner; a phase change is printed once.
            match msg
                .split_once(' ')
                .and_then(|(verb, _)| package_phase(verb))
            {
                Some(group) => {
                    if phase != group {
                        phase = group;
                        progress(&format!("{group} packages..."));
                    }
                    spinner.set_message(msg.to_string());
                    spinner.tick();
                }
                _ => progress(msg),
            }
        }
        last.push(line);
        if last.len() > 20 {
            last.remove(0);
        }
    }
    spinner.finish_and_clear();
    let status = child
        .wait()
        .map_err(|e| LabError::Image(format!("{shown}: {e}")))?;
    let err_lines = err_thread.join().unwrap_or_default();
    if !status.success() {
        let log = target.join("debootstrap/debootstrap.log");
        return Err(LabError::Image(format!(
            "{shown} failed ({status}):\n{}\n{}\n{}",
            last.join("\n"),
            err_lines.join("\n"),
            sys::log_tail(&log, 20)
        )));
    }
    Ok(())
}

/// Make the debootstrapped tree a lab host image.
pub fn customize(root: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    progress("customizing image (enable ssh + networkd, disable role services)");
    let r = root.to_string_lossy().into_owned();
    let mut enable = vec!["chroot", &r, "systemctl", "enable"];
    enable.extend(ENABLED_UNITS);
    sys::run_args(enable[0], &enable[1..])?;
    let mut disable = vec!["chroot", &r, "systemctl", "disable"];
    disable.extend(DISABLED_UNITS);
    sys::run_args(disable[0], &disable[1..])?;
    let mut mask = vec!["chroot", &r, "systemctl", "mask"];
    mask.extend(MASKED_UNITS);
    sys::run_args(mask[0], &mask[1..])?;
    // Host keys and machine-id are per host; none may be shared through the image.
    let ssh_dir = root.join("etc/ssh");
    for e in std::fs::read_dir(&ssh_dir)
        .map_err(LabError::io(&ssh_dir))?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(e.path()).map_err(LabError::io(e.path()))?;
        }
    }
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::write(&p, text).map_err(LabError::io(&p))
    };
    write("etc/machine-id", "")?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.is_file() && !dbus_id.is_symlink() {
        std::fs::remove_file(&dbus_id).map_err(LabError::io(&dbus_id))?;
    }
    write(
        "etc/ssh/sshd_config.d/10-ezk-lab.conf",
        "# ezk lab: key login only, no DNS lookups of clients\nPasswordAuthentication no\nUseDNS no\n",
    )?;
    // The downloaded .debs are not needed on hosts.
    if let Ok(rd) = std::fs::read_dir(root.join("var/cache/apt/archives")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Written last: its presence marks a complete image.
    write("etc/ezk-image", &format!("key={}\n{}", key(), recipe()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_recipe() {
        assert!(key().starts_with("bookworm-"));
        assert_eq!(key().len(), "bookworm-".len() + 12);
        assert!(recipe().contains("openssh-server"));
    }
}
