//! The per-cluster lock: `clusters/<name>/.lock`, held with flock for the whole run, so two runs
//! on one cluster cannot interleave their writes. The kernel drops it when the process ends, even
//! on a crash, so a stale lock never needs manual cleanup.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another ezk run is in progress on this cluster (lock {path} held{holder}); wait for it to finish")]
    Busy { path: PathBuf, holder: String },
    #[error("cannot open lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A held cluster lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    pub path: PathBuf,
}

impl ClusterLock {
    /// The locked cluster's directory (`clusters/<name>/`).
    pub fn cluster_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Take the lock of `cluster_dir` without waiting.
pub fn lock_cluster(cluster_dir: &Path) -> Result<ClusterLock, LockError> {
    let path = cluster_dir.join(".lock");
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            let holder = s.trim();
            let holder = if holder.is_empty() { String::new() } else { format!(" by pid {holder}") };
            return Err(LockError::Busy { path, holder });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(ClusterLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_cluster(d.path()).unwrap();
        let err = lock_cluster(d.path()).unwrap_err();
        assert!(err.to_string().contains("another ezk run"), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock_cluster(d.path()).expect("released on drop");
    }
}
