//! SSH masters kept between runs (OpenSSH's ControlPersist, as Ansible does by default): each
//! host's master outlives the run that opened it by `Persist::idle` after its last use, its
//! control socket in the cluster's 0700 directory `clusters/<name>/mux/`, so the next run
//! skips the handshake (the largest cost of a no-op run).
//!
//! A kept master is trusted only as long as what vouched for it still holds. Next to each
//! socket, a trust record keeps (1) a fingerprint of the known_hosts files that accepted the
//! host's key when the master was opened and (2) a fingerprint of the host's public host keys
//! (`/etc/ssh/ssh_host_*_key.pub`, read over the master right after the handshake). A run
//! reuses the master only if the known_hosts files are unchanged, the master answers, and the
//! host's public keys, read again over it, are still the same; otherwise it stops the master
//! and opens a fresh connection, whose strict host-key check decides as always. So a host key
//! that changed while a master was alive (a reinstall keeping its address, regenerated keys,
//! an impostor) refuses the run exactly as it would without a kept master: reusing a master
//! never accepts what a fresh handshake would refuse. The check costs one small command per
//! host (no handshake, not counted as a round trip of the run).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::connection::Connection;

/// Keep masters after the run: where their sockets live and how long an idle one stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    /// The cluster's `mux/` (0700), or a short directory under the temp dir when that path
    /// is too long for a unix socket (see [`dir_for`]).
    pub dir: PathBuf,
    /// ssh's `ControlPersist`: an idle master exits this long after its last use.
    pub idle: Duration,
}

/// The command that lists the host's public host keys, one line each (sorted here, by
/// [`host_keys_fingerprint`]). Shell builtins only: it runs on every host at the start of every
/// run that reuses a kept master, and a `cat | sort` there was two of the processes a no-op run
/// started on each host.
pub const HOST_KEYS: &str =
    "for f in /etc/ssh/ssh_host_*_key.pub; do [ -r \"$f\" ] || continue; while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$f\"; done; true";

/// Longest socket directory: sun_path holds 107 bytes, and ssh binds a master at
/// `<dir>/.ssh-connectionXXXXXX/master.<16 random chars>` before renaming it.
const MAX_DIR: usize = 60;

/// The directory for the kept masters of the cluster at `cluster_dir`: `<cluster_dir>/mux`,
/// or, when that path is too long for a control socket, `<temp>/ezk-mux-<hash of the
/// cluster dir>`; created 0700.
pub fn dir_for(cluster_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = dir_path(cluster_dir);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    // An existing directory keeps whatever mode it had: make it private again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Where [`dir_for`] keeps the masters of the cluster at `cluster_dir` (not created here).
fn dir_path(cluster_dir: &Path) -> PathBuf {
    let own = cluster_dir.join("mux");
    if own.as_os_str().len() <= MAX_DIR {
        own
    } else {
        let abs = std::fs::canonicalize(cluster_dir).unwrap_or_else(|_| cluster_dir.to_path_buf());
        let h = hex::encode(Sha256::digest(abs.as_os_str().as_encoded_bytes()));
        std::env::temp_dir().join(format!("ezk-mux-{}", &h[..16]))
    }
}

/// End every master kept for the cluster at `cluster_dir` (`ssh -O exit` on its socket) and
/// remove their directory; the number ended. `ezk lab down` calls it before the hosts go: a
/// master whose host vanished would otherwise linger until its keepalives give up.
pub fn end_all(cluster_dir: &Path) -> usize {
    use std::os::unix::fs::FileTypeExt;
    let dir = dir_path(cluster_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut ended = 0;
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_socket()) {
            let ok = std::process::Command::new("ssh")
                .args(["-O", "exit", "-o"])
                .arg(format!("ControlPath={}", p.display()))
                .arg("ezk-kept-master")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ended += usize::from(ok);
        }
        let _ = std::fs::remove_file(&p);
    }
    let _ = std::fs::remove_dir(&dir);
    ended
}

/// The socket and trust record of one host's master: named by everything that makes two
/// connections differ (address, port, user, key, bastion, key exchange), so a run never
/// reuses a master opened another way.
pub fn paths(dir: &Path, conn: &Connection, jump: &[String], kex: Option<&str>) -> (PathBuf, PathBuf) {
    let id = format!(
        "{}@{}:{}|{:?}|{:?}|{:?}|{:?}",
        conn.user, conn.address, conn.port, conn.key_file, conn.jump, jump, kex
    );
    let h = hex::encode(Sha256::digest(id.as_bytes()));
    let name = &h[..16];
    (dir.join(name), dir.join(format!("{name}.trust")))
}

/// Fingerprint of the known_hosts files (path and content; a missing file counts as empty).
pub fn known_hosts_fingerprint(files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Fingerprint of [`HOST_KEYS`]'s output, its lines sorted bytewise (what `sort` in the C
/// locale gave when the host sorted them: records made then still match).
pub fn host_keys_fingerprint(out: &[u8]) -> String {
    let mut lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.concat()))
}

/// What vouched for a master when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub known_hosts: String,
    pub host_keys: String,
}

impl Trust {
    /// The record at `path`, if there is a well-formed one.
    pub fn read(path: &Path) -> Option<Trust> {
        let text = std::fs::read_to_string(path).ok()?;
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')).map(str::to_string);
        Some(Trust { known_hosts: field("known_hosts")?, host_keys: field("host_keys")? })
    }

    /// Write the record (0600).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        writeln!(f, "known_hosts {}\nhost_keys {}", self.known_hosts, self.host_keys)
    }
}

/// Forget a master: its socket and trust record.
pub fn forget(ctl: &Path, trust: &Path) {
    let _ = std::fs::remove_file(ctl);
    let _ = std::fs::remove_file(trust);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builtins-only listing fingerprints as `cat | sort` did on this machine's own keys
    /// (a kept master's trust record made before still matches).
    #[test]
    fn host_keys_listing_fingerprints_as_the_sorted_cat_did() {
        let run = |c: &str| std::process::Command::new("sh").args(["-c", c]).env("LC_ALL", "C").output().unwrap().stdout;
        let old = run("cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null | sort");
        assert_eq!(host_keys_fingerprint(&run(HOST_KEYS)), hex::encode(Sha256::digest(&old)));
    }

    fn conn(user: &str, port: u16) -> Connection {
        Connection { address: "198.51.100.7".into(), port, user: user.into(), key_file: None, become_root: false, jump: None }
    }

    #[test]
    fn a_master_is_named_by_how_it_connects() {
        let d = Path::new("/c/mux");
        let (a, ta) = paths(d, &conn("root", 22), &[], None);
        assert_eq!(paths(d, &conn("root", 22), &[], None).0, a, "stable");
        assert_ne!(paths(d, &conn("admin", 22), &[], None).0, a);
        assert_ne!(paths(d, &conn("root", 2222), &[], None).0, a);
        assert_ne!(paths(d, &conn("root", 22), &[], Some("curve25519-sha256")).0, a);
        assert_ne!(paths(d, &conn("root", 22), &["bastion".into()], None).0, a);
        assert_eq!(ta, d.join(format!("{}.trust", a.file_name().unwrap().to_string_lossy())));
    }

    #[test]
    fn trust_records_round_trip_and_known_hosts_changes_show() {
        let t = tempfile::tempdir().unwrap();
        let rec = Trust { known_hosts: "k".repeat(64), host_keys: "h".repeat(64) };
        let p = t.path().join("x.trust");
        rec.write(&p).unwrap();
        assert_eq!(Trust::read(&p), Some(rec));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let kh = t.path().join("known_hosts");
        let before = known_hosts_fingerprint(std::slice::from_ref(&kh));
        std::fs::write(&kh, "198.51.100.7 ssh-ed25519 AAAA\n").unwrap();
        assert_ne!(known_hosts_fingerprint(std::slice::from_ref(&kh)), before);
    }

    #[test]
    fn the_socket_dir_is_private_and_short() {
        let t = tempfile::tempdir().unwrap();
        let short = t.path().join("c");
        let d = dir_for(&short).unwrap();
        assert!(d.starts_with(&short) || d.as_os_str().len() <= MAX_DIR);
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        let long = t.path().join("a-cluster-directory-whose-path-is-far-too-long-for-a-control-socket");
        let d = dir_for(&long).unwrap();
        assert!(!d.starts_with(&long) && d.as_os_str().len() <= MAX_DIR, "{}", d.display());
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        let _ = std::fs::remove_dir(d);
    }
}
