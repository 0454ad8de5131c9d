//! One lab host: its overlay filesystem (lower = the base image, upper/work its own), the files
//! that make it a distinct machine (hostname, /etc/hosts, machine-id, root's authorized_keys, a
//! static address for host0, fresh ssh host keys), booting it with systemd-nspawn, stopping it.
//!
//! nspawn capabilities: `--network-bridge` implies a private network namespace, in which nspawn
//! keeps CAP_NET_ADMIN (and CAP_NET_RAW is in its default set): enough for keepalived to send
//! VRRP and add the VIP, and /proc/sys/net is writable for `net.*` sysctls. Other sysctls
//! (vm.*, kernel.*) are read-only inside and CAP_SYS_MODULE is not granted: a container must
//! not load modules into the shared kernel — roles warn where a lab refuses those.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::state::HostState;
use super::{LabError, sys};

/// Mount the overlay and write the host's own files. Returns the host's ssh public host key
/// line (`ssh-ed25519 AAAA...`) for known_hosts.
pub fn prepare(h: &HostState, image: &Path, all: &[(String, Ipv4Addr)], authorized_key: &str) -> Result<String, LabError> {
    for d in [h.upper(), h.work(), h.rootfs()] {
        std::fs::create_dir_all(&d).map_err(LabError::io(&d))?;
    }
    let root = h.rootfs();
    if sys::mounts_under(&root).is_empty() {
        let opts = format!("lowerdir={},upperdir={},workdir={}", image.display(), h.upper().display(), h.work().display());
        sys::run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&root))?;
    }
    let write = |rel: &str, text: &str, mode: u32| sys::write_atomic(&root.join(rel), text.as_bytes(), mode);
    write("etc/hostname", &format!("{}\n", h.name), 0o644)?;
    let mut hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n", h.name);
    for (name, ip) in all {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    write("etc/hosts", &hosts, 0o644)?;
    write("etc/machine-id", &format!("{}\n", random_hex(16)?), 0o444)?;
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
    sys::run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C"]).arg(format!("root@{}", h.name)).arg("-f").arg(&key))?;
    let pub_path = root.join("etc/ssh/ssh_host_ed25519_key.pub");
    let pubkey = std::fs::read_to_string(&pub_path).map_err(LabError::io(&pub_path))?;
    let mut parts = pubkey.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(LabError::Image(format!("{}: unexpected public key format", pub_path.display()))),
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(LabError::io(p))
}

/// `n` random bytes as hex, from the kernel.
fn random_hex(n: usize) -> Result<String, LabError> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).map_err(LabError::io("/dev/urandom"))?;
    Ok(hex::encode(buf))
}

/// Boot the host: systemd-nspawn in its own session (setsid; stdin /dev/null; console to the
/// host's log), so it outlives this process. `--register=no` because there is no machined to
/// register with; `--keep-unit` so it does not try to create a scope unit.
pub fn boot(h: &HostState, bridge: &str) -> Result<Child, LabError> {
    let log = h.log();
    let out = File::create(&log).map_err(LabError::io(&log))?;
    let err = out.try_clone().map_err(LabError::io(&log))?;
    let mut cmd = Command::new("setsid");
    cmd.arg("systemd-nspawn")
        .arg("--quiet")
        .arg("--boot")
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
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    cmd.spawn().map_err(|e| LabError::Command { cmd: sys::show(&cmd), status: "not started".into(), stderr: e.to_string() })
}

/// Stop hosts: SIGTERM every recorded nspawn pid that is still ours (nspawn then shuts the
/// container's systemd down cleanly), wait up to `grace`, then SIGKILL the stragglers.
pub fn stop_all(hosts: &[HostState], grace: Duration) {
    fn live(h: &HostState) -> bool {
        h.pid.is_some_and(|p| sys::is_our_nspawn(p, &h.machine))
    }
    let running: Vec<&HostState> = hosts.iter().filter(|h| live(h)).collect();
    for h in &running {
        sys::signal(h.pid.expect("filtered"), "TERM");
    }
    let start = Instant::now();
    while running.iter().any(|h| live(h)) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(200));
    }
    for h in running.iter().filter(|h| live(h)) {
        sys::signal(h.pid.expect("filtered"), "KILL");
    }
    let start = Instant::now();
    while running.iter().any(|h| live(h)) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
}
