//! Where clusters live: the ezk home, like kubeasz's /etc/kubeasz.
//!
//! Resolution: `--home DIR`, else `$EZK_HOME`, else the current directory. The home holds
//! `clusters/<name>/{hosts,config.yml,ssl,logs}`, the artifact store `down/`, and optional
//! `roles/` and `playbooks/` folders that override the copies embedded in the binary.
//!
//! The current cluster (as kubeasz's `ezctl checkout` chooses it) is the file
//! `clusters/.current` (one line, the cluster name), written by `ezk new` and `ezk checkout`,
//! read by `ezk list` (to mark it) and by commands whose cluster is optional.

use std::path::{Path, PathBuf};

/// The resolved ezk home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Resolve from an explicit `--home`/`EZK_HOME` value (clap fills it from the env), or the cwd.
    pub fn resolve(explicit: Option<PathBuf>) -> std::io::Result<Home> {
        let root = match explicit {
            Some(p) => p,
            None => std::env::current_dir()?,
        };
        Ok(Home { root })
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `clusters/` under the home.
    pub fn clusters_dir(&self) -> PathBuf {
        self.root.join("clusters")
    }

    /// `clusters/<name>/`.
    pub fn cluster_dir(&self, name: &str) -> PathBuf {
        self.clusters_dir().join(name)
    }

    /// The artifact store (`down/`, as kubeasz's ezdown uses).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("down")
    }

    /// On-disk `roles/` override, if present.
    pub fn roles_dir(&self) -> PathBuf {
        self.root.join("roles")
    }

    /// On-disk `playbooks/` override, if present.
    pub fn playbooks_dir(&self) -> PathBuf {
        self.root.join("playbooks")
    }

    /// The current cluster, if one was chosen and still exists.
    pub fn current_cluster(&self) -> Option<String> {
        let name = std::fs::read_to_string(self.clusters_dir().join(".current")).ok()?;
        let name = name.trim().to_string();
        (!name.is_empty() && self.cluster_dir(&name).is_dir()).then_some(name)
    }

    /// Record `name` as the current cluster.
    pub fn set_current_cluster(&self, name: &str) -> Result<(), String> {
        let path = self.clusters_dir().join(".current");
        std::fs::write(&path, format!("{name}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The cluster a command should act on: the one given, else the current one.
    pub fn cluster_or_current(&self, given: Option<String>) -> Result<String, String> {
        given.or_else(|| self.current_cluster()).ok_or_else(|| {
            "no cluster given and none is current: name one, or choose one with `ezk checkout <name>`".into()
        })
    }
}
