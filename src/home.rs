//! Where clusters live: the ezk home, like kubeasz's /etc/kubeasz.
//!
//! Resolution: `--home DIR`, else `$EZK_HOME`, else the current directory. The home holds
//! `clusters/<name>/{hosts,config.yml,ssl,logs}`, the artifact store `down/`, and optional
//! `roles/` and `playbooks/` folders that override the copies embedded in the binary.

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
}
