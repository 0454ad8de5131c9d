//! The lab state file `<root>/labs/<name>/state.json`: every resource `up` makes is recorded
//! here *before* it is made, so `down` can remove it even after a crash.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LabError, LabPaths, sys};

/// One lab as recorded on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    /// N of the subnet 198.18.N.0/24.
    pub index: u8,
    /// Bridge interface on the deploy machine (address 198.18.N.1).
    pub bridge: String,
    /// Base image (overlay lower dir).
    pub image: PathBuf,
    /// `clusters/<name>/` (absolute) where the inventory, key and known_hosts were written.
    pub cluster_dir: PathBuf,
    /// VIP for ex_lb (5+ hosts).
    pub vip: Option<Ipv4Addr>,
    pub hosts: Vec<HostState>,
    /// The last `spare` hosts are booted but left out of the inventory (for `ezk add-node`).
    #[serde(default)]
    pub spare: usize,
}

/// One host of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    /// Host name inside the host (and k8s_nodename): `<lab>-<i>`.
    pub name: String,
    /// systemd-nspawn machine name, short so the host-side veth `vb-<machine>` fits 15 chars.
    pub machine: String,
    pub ip: Ipv4Addr,
    /// `<lab dir>/hosts/<name>/` holding upper/, work/, rootfs/ (the overlay mount) and console.log.
    pub dir: PathBuf,
    /// Host-side veth created by nspawn.
    pub veth: String,
    /// The systemd-nspawn pid, once started.
    pub pid: Option<u32>,
    /// The host's /etc/machine-id: finds its processes even when nspawn itself is gone.
    #[serde(default)]
    pub machine_id: String,
    /// The host's own cgroups, one per hierarchy (see `cgroup`); recorded before they are made.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

impl HostState {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// A directory of the machine's own filesystem, bound into the host at `DISK_MOUNT`: a
    /// container runtime's overlayfs snapshots cannot sit on the host's overlayfs root.
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk")
    }
}

impl LabState {
    /// Load the state of lab `name`; `Ok(None)` when there is none.
    pub fn load(paths: &LabPaths, name: &str) -> Result<Option<LabState>, LabError> {
        let path = paths.state_file(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| LabError::State { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::Io { path, source: e }),
        }
    }

    /// Save atomically.
    pub fn save(&self, paths: &LabPaths) -> Result<(), LabError> {
        let json = serde_json::to_vec_pretty(self).expect("state serializes");
        sys::write_atomic(&paths.state_file(&self.name), &json, 0o644)
    }

    /// Names of every lab with a state dir, sorted.
    pub fn list(paths: &LabPaths) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(paths.labs_dir())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The lab key, `clusters/<name>/ssh/id_ed25519`.
    pub fn key_file(&self) -> PathBuf {
        key_file(&self.cluster_dir)
    }

    /// `clusters/<name>/known_hosts`.
    pub fn known_hosts(&self) -> PathBuf {
        self.cluster_dir.join("known_hosts")
    }
}

/// `<cluster_dir>/ssh/id_ed25519`.
pub fn key_file(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("ssh").join("id_ed25519")
}
