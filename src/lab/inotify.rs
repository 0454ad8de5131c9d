//! The machine's inotify limits, sized for the lab hosts it runs.
//!
//! Lab hosts are containers without user namespaces: every host's systemd, journald, logind and
//! later containerd/kubelet are root on the machine, so they all draw from root's one
//! `fs.inotify.max_user_instances` (Debian's default: 128) and `max_user_watches`. Each booted
//! host holds about 8 instances (5 of them systemd's); a few labs of 5 hosts exhaust 128, and
//! systemd in the next host fails with "Too many open files" (it cannot watch its unit
//! directories). `ezk lab up` therefore raises both limits to what every recorded lab host
//! needs, like it makes its bridge: the machine-wide setting is the lab's to manage. It never
//! lowers them (other software may rely on a raised value) and does not persist them across a
//! reboot (labs do not survive one either).

use std::fmt;
use std::path::{Path, PathBuf};

use super::LabError;

/// Instances left for everything else root runs on the machine (the kernel's default limit).
pub const BASE_INSTANCES: u64 = 128;
/// Instances per lab host: ~8 at rest after boot, more while units start and once a container
/// runtime and kubelet run there (kubelet and cAdvisor hold their own); 4x headroom.
pub const INSTANCES_PER_HOST: u64 = 32;
/// Watches left for the machine (Debian's default for a machine with little memory).
pub const BASE_WATCHES: u64 = 8192;
/// Watches per lab host: systemd watches its unit and config directories, kubelet every pod
/// volume and cgroup.
pub const WATCHES_PER_HOST: u64 = 16384;

/// Where the kernel keeps each limit.
const INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";
const WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// Limits enough for `hosts` lab hosts (every lab's, since all share root's limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_user_instances: u64,
    pub max_user_watches: u64,
}

/// What `hosts` lab hosts need, machine baseline included.
pub fn needed(hosts: usize) -> Limits {
    let n = hosts as u64;
    Limits {
        max_user_instances: BASE_INSTANCES + INSTANCES_PER_HOST * n,
        max_user_watches: BASE_WATCHES + WATCHES_PER_HOST * n,
    }
}

/// One limit raised: the sysctl name, the old and the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub key: &'static str,
    pub from: u64,
    pub to: u64,
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.key, self.from, self.to)
    }
}

/// Raise each limit below what `hosts` lab hosts need; returns what changed (empty when the
/// machine already allows enough).
pub fn ensure(hosts: usize) -> Result<Vec<Raised>, LabError> {
    let want = needed(hosts);
    let mut raised = Vec::new();
    for (key, path, to) in [
        ("fs.inotify.max_user_instances", INSTANCES, want.max_user_instances),
        ("fs.inotify.max_user_watches", WATCHES, want.max_user_watches),
    ] {
        let path = Path::new(path);
        let from = read(path)?;
        if from < to {
            std::fs::write(path, format!("{to}\n")).map_err(LabError::io(PathBuf::from(path)))?;
            raised.push(Raised { key, from, to });
        }
    }
    Ok(raised)
}

fn read(path: &Path) -> Result<u64, LabError> {
    let text = std::fs::read_to_string(path).map_err(LabError::io(path))?;
    text.trim().parse().map_err(|e| LabError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {text:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_by_host_count_above_the_kernel_default() {
        // No hosts: the kernel's defaults, nothing to raise on a stock machine.
        assert_eq!(
            needed(0),
            Limits { max_user_instances: 128, max_user_watches: 8192 }
        );
        // The failure this prevents: 128 instances ran out with ~16 booted hosts at ~8 each.
        let five = needed(5);
        assert!(five.max_user_instances >= 128 + 5 * 8 * 4, "{five:?}");
        assert_eq!(five.max_user_instances, 288);
        assert_eq!(five.max_user_watches, 8192 + 5 * 16384);
        // Grows with every host, also at the lab's largest size (200 hosts).
        let big = needed(200);
        assert!(big.max_user_instances > needed(199).max_user_instances);
        assert_eq!(big.max_user_instances, 128 + 200 * 32);
        assert_eq!(big.max_user_watches, 8192 + 200 * 16384);
    }

    #[test]
    fn raised_reads_as_a_sysctl_change() {
        let r = Raised { key: "fs.inotify.max_user_instances", from: 128, to: 288 };
        assert_eq!(r.to_string(), "fs.inotify.max_user_instances 128 -> 288");
    }
}
