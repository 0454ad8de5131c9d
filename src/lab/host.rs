//! One lab host: its overlay filesystem (lower = the base image, upper/work its own), the files
//! that make it a distinct machine (hostname, /etc/hosts, machine-id, root's authorized_keys, a
//! static address for host0, fresh ssh host keys), booting it with systemd-nspawn, stopping it.
//!
//! nspawn capabilities: `--network-bridge` implies a private network namespace, in which nspawn
//! keeps CAP_NET_ADMIN (and CAP_NET_RAW is in its default set): enough for keepalived to send
//! VRRP and add the VIP, and /proc/sys/net is writable for `net.*` sysctls. Other sysctls
//! (vm.*, kernel.*) are read-only inside and CAP_SYS_MODULE is not granted: a container must
//! not load modules into the shared kernel — roles warn where a lab refuses those.
//!
//! Containers inside a host (containerd + runc, kubelet's pods) need four things an nspawn host
//! does not have by default, each given here: cgroups of its own (`cgroup`, joined before nspawn
//! starts), writable cgroup controller hierarchies (nspawn mounts them read-only; the host's
//! first process, `INIT`, remounts them writable and then execs systemd), the keyring system
//! calls (`--system-call-filter=@keyring`: runc makes a session keyring per container), and a
//! filesystem that is not overlayfs for the runtime's snapshots (the host's `/` is an overlay,
//! and overlayfs refuses an overlayfs upper dir): a directory of the machine's own filesystem
//! bound at `DISK_MOUNT`. kubelet also reads `/dev/kmsg` (bound read-only) and insists on four
//! machine-wide kernel values that are read-only in a container; `INIT` covers those files, in
//! the host's own mount namespace, with files holding the values kubelet wants (`SYSCTLS`), so
//! the machine's own settings are never changed.
//!
//! CAP_SYS_TIME is not granted either (a container must not set the machine's clock); Debian's
//! chrony.service requires it, so the lab inventory sets `CHRONY_SET_CLOCK=false` and the chrony
//! role installs its `chronyd -x` drop-in, as it would on any host that may not set the clock.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::state::HostState;
use super::{LabError, cgroup, sys};

/// Where the host's own-filesystem directory (`HostState::disk`) is bound inside the host. The
/// lab inventory puts containerd's storage below it (a mount point itself cannot be deleted,
/// and `ezk destroy` deletes the storage dir).
pub const DISK_MOUNT: &str = "/var/lib/ezk-lab-disk";

/// The host's first process: makes the cgroup hierarchies writable and covers the kernel values
/// kubelet checks, then becomes systemd. Lives in the host's overlay, not in the shared image.
pub const INIT_PATH: &str = "usr/local/lib/ezk-lab/init";
const INIT: &str = r#"#!/bin/sh
# ezk lab: PID 1 of this host until it execs systemd (see `ezk lab` docs).
# systemd-nspawn mounts the cgroup v1 controllers read-only; a container runtime must write them.
for d in /sys/fs/cgroup/*/; do mount -o remount,rw,bind "$d" 2>/dev/null; done
# Machine-wide kernel values kubelet insists on, read-only here: covered in this host only.
for f in /usr/local/lib/ezk-lab/sysctl/*; do
  [ -f "$f" ] || continue
  k=/proc/sys/$(basename "$f" | tr . /)
  [ -e "$k" ] && mount --bind "$f" "$k" && mount -o remount,ro,bind "$k"
done
exec /lib/systemd/systemd "$@"
"#;

/// Kernel values kubelet requires (it refuses to start, or fails writing them, otherwise):
/// (sysctl name, value). Shown to the host only, by `INIT`.
pub const SYSCTLS: &[(&str, &str)] = &[
    ("kernel.panic", "10"),
    ("kernel.panic_on_oops", "1"),
    ("vm.overcommit_memory", "1"),
    ("vm.panic_on_oom", "0"),
];

/// Mount the overlay and write the host's own files. Returns the host's ssh public host key
/// line (`ssh-ed25519 AAAA...`) for known_hosts.
pub fn prepare(
    h: &HostState,
    image: &Path,
    all: &[(String, Ipv4Addr)],
    authorized_key: &str,
) -> Result<String, LabError> {
    for d in [h.upper(), h.work(), h.rootfs()] {
        std::fs::create_dir_all(&d).map_err(LabError::io(&d))?;
    }
    let root = h.rootfs();
    if sys::mounts_under(&root).is_empty() {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.display(),
            h.upper().display(),
            h.work().display()
        );
        sys::run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&root),
        )?;
    }
    let write = |rel: &str, text: &str, mode: u32| {
        sys::write_atomic(&root.join(rel), text.as_bytes(), mode)
    };
    write("etc/hostname", &format!("{}\n", h.name), 0o644)?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        h.name
    );
    for (name, ip) in all {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    write("etc/hosts", &hosts, 0o644)?;
    write("etc/machine-id", &format!("{}\n", h.machine_id), 0o444)?;
    // No outside DNS here: names go to the host itself, where nothing answers on port 53, so a
    // lookup of an outside name (CoreDNS forwards to this file's nameserver) fails at once
    // instead of waiting on the machine's resolver, which the lab cannot and must not reach.
    write(
        "etc/resolv.conf",
        &format!("# ezk lab: no outside DNS\nnameserver {}\noptions timeout:1 attempts:1\n", h.ip),
        0o644,
    )?;
    write(INIT_PATH, INIT, 0o755)?;
    for (name, value) in SYSCTLS {
        write(
            &format!("usr/local/lib/ezk-lab/sysctl/{name}"),
            &format!("{value}\n"),
            0o444,
        )?;
    }
    let disk = h.disk();
    std::fs::create_dir_all(&disk).map_err(LabError::io(&disk))?;
    std::fs::create_dir_all(root.join(DISK_MOUNT.trim_start_matches('/')))
        .map_err(LabError::io(root.join(DISK_MOUNT.trim_start_matches('/'))))?;
    // 10- sorts before the image's 80-container-host0.network (DHCP), and the first match wins.
    write(
        "etc/systemd/network/10-host0.network",
        &format!(
            "# ezk lab: static address, no default route, no IPv6 autoconfiguration\n[Match]\nName=host0\n\n[Network]\nAddress={}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            h.ip
        ),
        0o644,
    )?;
    let ssh_dir = root.join("root/.ssh");
    std::fs::create_dir_all(&ssh_dir).map_err(LabError::io(&ssh_dir))?;
    set_mode(&ssh_dir, 0o700)?;
    write("root/.ssh/authorized_keys", authorized_key, 0o600)?;
    // A fresh host key per host (the image has none), recorded by the caller in known_hosts.
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    sys::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("root@{}", h.name))
            .arg("-f")
            .arg(&key),
    )?;
    let pub_path = root.join("etc/ssh/ssh_host_ed25519_key.pub");
    let pubkey = std::fs::read_to_string(&pub_path).map_err(LabError::io(&pub_path))?;
    let mut parts = pubkey.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(LabError::Image(format!(
            "{}: unexpected public key format",
            pub_path.display()
        ))),
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(LabError::io(p))
}

/// A fresh random machine-id (32 hex digits), recorded in the state before the host exists.
pub fn new_machine_id() -> Result<String, LabError> {
    random_hex(16)
}

/// `n` random bytes as hex, from the kernel.
fn random_hex(n: usize) -> Result<String, LabError> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(LabError::io("/dev/urandom"))?;
    Ok(hex::encode(buf))
}

/// Boot the host: systemd-nspawn in its own session (setsid; stdin /dev/null; console to the
/// host's log), so it outlives this process, started inside the host's own cgroups (made here;
/// their paths are in the state already). `--register=no` because there is no machined to
/// register with; `--keep-unit` so it does not try to create a scope unit. Not `--boot`: the
/// command is `INIT`, which execs systemd; `--kill-signal=SIGRTMIN+3` is what `--boot` would
/// have set, so stopping nspawn still shuts systemd down cleanly.
pub fn boot(h: &HostState, bridge: &str) -> Result<Child, LabError> {
    use std::os::unix::process::CommandExt;
    let log = h.log();
    let out = File::create(&log).map_err(LabError::io(&log))?;
    let err = out.try_clone().map_err(LabError::io(&log))?;
    cgroup::create(&h.cgroups)?;
    let procs = cgroup::Procs::open(&h.cgroups)?;
    let mut cmd = Command::new("setsid");
    cmd.arg("systemd-nspawn")
        .arg("--quiet")
        .arg("--register=no")
        .arg("--keep-unit")
        .arg(format!("--machine={}", h.machine))
        .arg("--directory")
        .arg(h.rootfs())
        .arg(format!("--network-bridge={bridge}"))
        .arg("--link-journal=no")
        .arg("--resolv-conf=off")
        .arg("--timezone=off")
        .arg("--console=read-only")
        .arg("--kill-signal=SIGRTMIN+3")
        .arg("--system-call-filter=@keyring")
        .arg("--bind-ro=/dev/kmsg")
        // reading /dev/kmsg (kubelet's OOM watcher) needs CAP_SYSLOG where dmesg_restrict=1
        .arg("--capability=CAP_SYSLOG")
        .arg(format!("--bind={}:{DISK_MOUNT}", h.disk().display()))
        .arg(format!("/{INIT_PATH}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: join_self only calls write(2) on files opened before the fork.
    unsafe {
        cmd.pre_exec(move || procs.join_self());
    }
    cmd.spawn().map_err(|e| LabError::Command {
        cmd: sys::show(&cmd),
        status: "not started".into(),
        stderr: e.to_string(),
    })
}

/// Stop hosts: SIGTERM every recorded nspawn pid that is still ours (nspawn then shuts the
/// container's systemd down cleanly) and wait up to `grace`; then SIGKILL every process still
/// belonging to a host — everything in its cgroups, nspawn's forked helpers (same command line)
/// and anything running inside the container (found by its machine-id) — so a host killed
/// early in its boot, whose nspawn died, or whose containers ignore SIGTERM (a container's PID 1
/// without a handler does) leaves nothing behind.
pub fn stop_all(hosts: &[HostState], grace: Duration) {
    fn live(h: &HostState) -> bool {
        h.pid.is_some_and(|p| sys::is_our_nspawn(p, &h.machine))
    }
    let running: Vec<&HostState> = hosts.iter().filter(|h| live(h)).collect();
    for h in &running {
        sys::signal(h.pid.expect("filtered"), "TERM");
    }
    let start = Instant::now();
    let mut resent = Instant::now();
    while running.iter().any(|h| live(h)) && start.elapsed() < grace {
        // A container still early in its boot may miss the first request; ask again.
        if resent.elapsed() > Duration::from_secs(2) {
            running
                .iter()
                .filter(|h| live(h))
                .for_each(|h| sys::signal(h.pid.expect("filtered"), "TERM"));
            resent = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    loop {
        // Everything in the hosts' own cgroups (their containers too: a runtime's shims outlive
        // its service at shutdown), and, for hosts recorded before they had cgroups, every
        // process that nspawn's command line or the host's machine-id names.
        let mut left = sys::host_pids(
            hosts
                .iter()
                .map(|h| (h.machine.as_str(), h.machine_id.as_str())),
        );
        for h in hosts {
            for d in &h.cgroups {
                left.extend(cgroup::pids(d));
            }
        }
        left.retain(|p| *p != std::process::id());
        left.sort_unstable();
        left.dedup();
        if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        for pid in left {
            sys::signal(pid, "KILL");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
