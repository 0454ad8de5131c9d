//! `ezk lab`: a local sandbox of real systemd hosts (systemd-nspawn) on a private bridge.
//!
//! A lab is N Debian hosts booted with `systemd-nspawn --boot`, each on its own overlay of one
//! cached base image, with real systemd and sshd, a static address in `198.18.<N>.0/24` on a
//! bridge of its own, and no route anywhere else (no default route, no NAT, no forwarding).
//! `up` writes `clusters/<name>/{hosts,config.yml,known_hosts,ssh/id_ed25519}` so every ezk
//! command can be pointed at it with host-key checking on; `down` removes everything `up` made,
//! also after an `up` that crashed halfway, because every resource is recorded in the lab's
//! state file *before* it is created.
//!
//! Files: `image` (cached debootstrap base), `net` (subnet allocation, bridge), `host` (overlay,
//! per-host files, boot/stop), `wait` (SSH readiness), `state` (the state file), `inventory`
//! (the kubeasz hosts file), `sys` (root/tool checks, commands, mounts, pids), `inotify` (the
//! machine's inotify limits, raised by `up` to fit every lab host: all hosts' systemd share
//! root's limit, and the default 128 instances runs out at ~16 hosts), `lifecycle`
//! (up/down/status, and rebooting one host).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod cgroup;
pub mod host;
pub mod image;
pub mod inotify;
pub mod inventory;
pub mod lifecycle;
pub mod net;
pub mod state;
pub mod sys;
pub mod wait;

pub use lifecycle::{HostStatus, LabStatus, UpOptions, down, reboot, status, up};
pub use state::{HostState, LabState};

/// Everything that can go wrong in `ezk lab`; each message names what failed and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "`ezk lab {0}` needs root: it creates a bridge, overlay mounts and containers; run it with sudo"
    )]
    NotRoot(&'static str),
    #[error("missing tools: {}. Install them with:\n  apt-get install -y {}", .tools.join(", "), .packages.join(" "))]
    MissingTools {
        tools: Vec<String>,
        packages: Vec<String>,
    },
    #[error(
        "the kernel has no overlay filesystem (not in /proc/filesystems); load it with: modprobe overlay"
    )]
    NoOverlay,
    #[error("invalid lab name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("--hosts {0}: a lab has 1 to {max} hosts", max = net::MAX_HOSTS)]
    BadHostCount(usize),
    #[error("lab {name:?} already exists (state {path}); run `ezk lab down {name}` first")]
    AlreadyUp { name: String, path: PathBuf },
    #[error(
        "{path} exists and was not written by `ezk lab`; refusing to overwrite a real cluster's inventory. Pick another lab name"
    )]
    ClusterExists { path: PathBuf },
    #[error(
        "no free lab subnet: 198.18.1.0/24 .. 198.18.{}.0/24 are all in use; run `ezk lab down` on a lab you no longer need",
        net::MAX_INDEX
    )]
    NoFreeSubnet,
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: bad lab state file: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("host {} ({}) exited during boot; its console log ended with:\n{}", .0.host, .0.ip, .0.tail)]
    BootFailed(Box<HostFailure>),
    #[error(
        "host {} ({}) not ready after {}s (last: {}); its console log ended with:\n{}\n(raise --timeout if the machine is just slow)",
        .0.host, .0.ip, .0.secs, .0.last, .0.tail
    )]
    Timeout(Box<HostFailure>),
    #[error(
        "{path} is still mounted (or has mounts below it); not deleting it. Check `findmnt -R {path}`, unmount, then rerun `ezk lab down`"
    )]
    StillMounted { path: PathBuf },
    #[error("no lab named {0:?} (see `ezk lab status`)")]
    NoSuchLab(String),
    #[error("lab {lab:?} has no host {host:?}; its hosts: {hosts}")]
    NoSuchHost { lab: String, host: String, hosts: String },
    #[error("base image: {0}")]
    Image(String),
    #[error("interrupted")]
    Interrupted,
}

/// Set by a signal handler (Ctrl-C, SIGTERM); `up` checks it between steps and then removes
/// what it made, so an interrupted `up` leaves nothing half-made.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ask a running `up` to stop at its next step and clean up.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `Err(Interrupted)` once `interrupt()` was called.
pub fn check_interrupted() -> Result<(), LabError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(LabError::Interrupted)
    } else {
        Ok(())
    }
}

/// A host that did not come up (boxed in `LabError` to keep the error small).
#[derive(Debug)]
pub struct HostFailure {
    pub host: String,
    pub ip: String,
    /// The timeout that passed (0 for a host that exited).
    pub secs: u64,
    /// The last readiness answer or ssh error.
    pub last: String,
    /// The last lines of the host's console log.
    pub tail: String,
}

impl LabError {
    /// Wrap an io::Error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }
}

/// Where lab state and the image cache live: `/var/lib/ezk` (override: `EZK_LAB_DIR`).
#[derive(Debug, Clone)]
pub struct LabPaths {
    pub root: PathBuf,
}

impl LabPaths {
    /// `$EZK_LAB_DIR` or `/var/lib/ezk`.
    pub fn from_env() -> LabPaths {
        let root = std::env::var_os("EZK_LAB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/ezk"));
        LabPaths { root }
    }
    /// `<root>/images/`: cached base images, one directory per recipe key.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// `<root>/labs/`.
    pub fn labs_dir(&self) -> PathBuf {
        self.root.join("labs")
    }
    /// `<root>/labs/<name>/`: state file, per-host overlay dirs and console logs.
    pub fn lab_dir(&self, name: &str) -> PathBuf {
        self.labs_dir().join(name)
    }
    /// `<root>/labs/<name>/state.json`.
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.lab_dir(name).join("state.json")
    }
}

/// Lab names become host names, file names and cluster names: `[a-z][a-z0-9-]*`, ≤ 32 chars.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let bad = |why| {
        Err(LabError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > 32 {
        return bad("use 1 to 32 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.ends_with('-')
    {
        return bad("use only a-z, 0-9 and '-' (not at the end)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("demo").is_ok());
        assert!(validate_name("t1234-x").is_ok());
        for bad in ["", "Demo", "1abc", "a_b", "a-", "a/b", &"x".repeat(33)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
