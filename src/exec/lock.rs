//! The per-cluster lock: `clusters/<name>/.lock`, held with flock for the whole run, so two runs
//! on one cluster cannot interleave their writes. The kernel drops it when the process ends, even
//! on a crash, so a stale lock never needs manual cleanup.
//!
//! The file records its holder (pid, machine, start time, command line): a second run is refused
//! naming the first. A run that ends normally empties the file before it lets go; a holder
//! record found by the next run therefore means the last run was killed or crashed. That run is
//! named (stderr), and the SSH masters it left behind (they are daemons, and outlive a killed
//! ezk) are ended: what it left undone on the hosts is owed and done by this run (`pending`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another ezk run is in progress on this cluster: {holder} (lock {path}); wait for it to finish, then run again")]
    Busy { path: PathBuf, holder: String },
    #[error("cannot open lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Who holds (or last held) a cluster lock, as its file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub machine: String,
    /// Unix seconds.
    pub since: i64,
    pub command: String,
}

impl Holder {
    fn me() -> Holder {
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut args = std::env::args();
        let prog = args.next().map(|a| a.rsplit('/').next().unwrap_or(&a).to_string()).unwrap_or_else(|| "ezk".into());
        let command = std::iter::once(prog).chain(args).collect::<Vec<_>>().join(" ");
        Holder { pid: std::process::id(), machine, since, command }
    }

    /// The file's text: `pid machine since command...` on one line.
    fn record(&self) -> String {
        format!("{} {} {} {}\n", self.pid, self.machine, self.since, self.command.replace('\n', " "))
    }

    /// Read a record back (None for an empty or foreign file). An older ezk wrote the pid alone.
    pub fn parse(text: &str) -> Option<Holder> {
        let line = text.lines().next()?.trim();
        let mut it = line.splitn(4, ' ');
        let pid = it.next()?.parse().ok()?;
        Some(Holder {
            pid,
            machine: it.next().unwrap_or("").to_string(),
            since: it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            command: it.next().unwrap_or("").to_string(),
        })
    }

    /// `pid 123 on deploy-1 since 14:02:11 UTC (ezk setup demo 02)`.
    pub fn describe(&self) -> String {
        let mut s = format!("pid {}", self.pid);
        if !self.machine.is_empty() {
            s.push_str(&format!(" on {}", self.machine));
        }
        if self.since > 0 {
            let t = self.since.rem_euclid(86400);
            s.push_str(&format!(" since {:02}:{:02}:{:02} UTC", t / 3600, t % 3600 / 60, t % 60));
        }
        if !self.command.is_empty() {
            s.push_str(&format!(" (`{}`)", self.command));
        }
        s
    }
}

/// A held cluster lock; dropping it empties the record and releases the lock.
#[derive(Debug)]
pub struct ClusterLock {
    file: File,
    pub path: PathBuf,
    /// The run before this one, when it ended without letting go (killed or crashed).
    pub stale: Option<Holder>,
}

impl ClusterLock {
    /// The locked cluster's directory (`clusters/<name>/`).
    pub fn cluster_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        // A normal end: nothing for the next run to recognise as stale.
        let _ = self.file.set_len(0);
    }
}

/// Take the lock of `cluster_dir` without waiting. A stale record (the last holder was killed)
/// is reported on stderr and its SSH masters ended.
pub fn lock_cluster(cluster_dir: &Path) -> Result<ClusterLock, LockError> {
    let lock = try_lock(cluster_dir)?;
    if let Some(h) = &lock.stale {
        let ended = if h.machine == Holder::me().machine { super::ssh::end_masters_of(h.pid) } else { 0 };
        let masters = if ended > 0 { format!("; ended the {ended} SSH connection(s) it left open") } else { String::new() };
        eprintln!(
            "note: the last run on this cluster did not finish ({}: killed or crashed){masters}; what it left owed on the hosts is done by this run",
            h.describe()
        );
    }
    Ok(lock)
}

/// `lock_cluster` without the report or clean-up of a stale holder.
pub fn try_lock(cluster_dir: &Path) -> Result<ClusterLock, LockError> {
    let path = cluster_dir.join(".lock");
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let mut text = String::new();
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let _ = file.read_to_string(&mut text);
            let holder = Holder::parse(&text).map(|h| h.describe()).unwrap_or_else(|| "holder not recorded yet".into());
            return Err(LockError::Busy { path, holder });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let _ = file.read_to_string(&mut text);
    // An older ezk wrote the pid alone and never emptied the file: not a sign of a crash.
    let stale = Holder::parse(&text).filter(|h| !h.machine.is_empty());
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(Holder::me().record().as_bytes()).map_err(io)?;
    Ok(ClusterLock { file, path, stale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_first_until_it_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = try_lock(d.path()).unwrap();
        assert_eq!(first.stale, None);
        let err = try_lock(d.path()).unwrap_err().to_string();
        assert!(err.contains("another ezk run"), "{err}");
        assert!(err.contains(&format!("pid {} on ", std::process::id())), "{err}");
        assert!(err.contains(" UTC (`"), "{err}");
        drop(first);
        assert_eq!(std::fs::read_to_string(d.path().join(".lock")).unwrap(), "", "a normal end leaves no record");
        let again = try_lock(d.path()).expect("released on drop");
        assert_eq!(again.stale, None, "a normal end is not stale");
    }

    #[test]
    fn a_record_left_behind_is_recognised_as_stale() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".lock"), "4000000 deploy-1 1780000000 ezk setup demo 02\n").unwrap();
        let l = try_lock(d.path()).unwrap();
        let h = l.stale.clone().expect("stale holder");
        assert_eq!((h.pid, h.machine.as_str(), h.command.as_str()), (4000000, "deploy-1", "ezk setup demo 02"));
        assert!(h.describe().starts_with("pid 4000000 on deploy-1 since "), "{}", h.describe());
        drop(l);
        // An older ezk's record (the pid alone, never emptied) is read, but is no crash.
        assert_eq!(Holder::parse("123").map(|h| h.pid), Some(123));
        std::fs::write(d.path().join(".lock"), "123").unwrap();
        assert_eq!(try_lock(d.path()).unwrap().stale, None);
        assert_eq!(Holder::parse(""), None);
    }
}
