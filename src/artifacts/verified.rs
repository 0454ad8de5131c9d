//! Store binaries already hashed against their record, so that planning a run does not re-hash
//! every binary it pushes (etcd + etcdctl are 38 MB, containerd + runc 80 MB: 40–80 ms of each
//! run before the first connection).
//!
//! `down/bin/<name>/<version>/.verified` lists, per binary, the file's signature (device, inode,
//! size, mtime, ctime in nanoseconds) when it last hashed to its recorded sha256. A binary whose
//! signature is unchanged is trusted without hashing; any write, rename or `touch` changes the
//! ctime, which user space cannot set back, so a changed file is hashed again (and refused if it
//! no longer matches). A file whose ctime is within a second of the check is never recorded
//! (timestamps are coarse: a write in the same tick could hide behind an unchanged signature),
//! as in the hosts' checksum cache (`src/exec/sums.rs`). The file is only a cache: missing or
//! garbled means "hash".

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const FILE: &str = ".verified";

/// The file's signature, or None when it cannot be read or changed too recently to be trusted.
fn signature(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    let ctime = m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128;
    if now - ctime < 1_000_000_000 {
        return None;
    }
    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    Some(format!("{}:{}:{}:{mtime}:{ctime}", m.dev(), m.ino(), m.size()))
}

fn entries(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join(FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, '\t');
            Some((it.next()?.to_string(), it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Binary `name` in `dir` still is the file that hashed to `sha256`.
pub(super) fn known(dir: &Path, name: &str, sha256: &str) -> bool {
    let Some(sig) = signature(&dir.join(name)) else { return false };
    entries(dir).iter().any(|(s, h, n)| n == name && *s == sig && h == sha256)
}

/// Record that binary `name` in `dir` hashed to `sha256` (best effort: a lost record costs a
/// hash next time).
pub(super) fn remember(dir: &Path, name: &str, sha256: &str) {
    let Some(sig) = signature(&dir.join(name)) else { return };
    let mut all: Vec<(String, String, String)> = entries(dir).into_iter().filter(|(_, _, n)| n != name).collect();
    all.push((sig, sha256.to_string(), name.to_string()));
    let text: String = all.iter().map(|(s, h, n)| format!("{s}\t{h}\t{n}\n")).collect();
    let tmp = dir.join(format!("{FILE}.tmp.{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, dir.join(FILE)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ctime cannot be set back: wait out the one-second racy window instead.
    fn age() {
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    #[test]
    fn a_recorded_binary_is_known_until_it_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("etcd");
        std::fs::write(&f, b"v1").unwrap();
        remember(d.path(), "etcd", "aa");
        assert!(!known(d.path(), "etcd", "aa"), "a file changed within the last second is not recorded");
        age();
        remember(d.path(), "etcd", "aa");
        assert!(known(d.path(), "etcd", "aa"));
        assert!(!known(d.path(), "etcd", "bb"), "another expected sum");
        assert!(!known(d.path(), "etcdctl", "aa"), "another binary");
        std::fs::write(&f, b"v2").unwrap();
        assert!(!known(d.path(), "etcd", "aa"), "rewritten: hash again");
        age();
        assert!(!known(d.path(), "etcd", "aa"), "still a different signature after the window");
    }
}
