//! The etcd client tools `ezk backup` and `ezk restore` run on the deploy machine: etcdctl
//! (and etcdutl, where the artifact set has it) from the artifact store, with the cluster's
//! etcd client certificate, against each member over TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::Error;
use crate::inventory::Inventory;
use crate::plan::DeployFiles;
use crate::session::Session;

/// What `snapshot status` says of a snapshot file.
#[derive(Debug, serde::Deserialize)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// The etcd client tools of a cluster's artifact set, and its client certificate.
pub struct EtcdTools {
    pub etcdctl: PathBuf,
    /// etcdutl (etcd 3.5+), which owns `snapshot status`/`restore` there; etcd 3.4's etcdctl
    /// does both itself.
    pub etcdutl: Option<PathBuf>,
    ssl: PathBuf,
}

impl EtcdTools {
    pub fn for_cluster(session: &Session) -> Result<EtcdTools, Error> {
        // Issues or reuses the certificates (the etcd client one among them) and opens the store.
        let files = session.files()?;
        let etcdctl = files.binary("etcdctl")?.path;
        let provides_etcdutl = files
            .k8s_ver
            .as_deref()
            .and_then(|v| files.store.manifest().set(v).ok())
            .is_some_and(|(_, set)| set.provides("etcdutl"));
        let etcdutl = if provides_etcdutl { Some(files.binary("etcdutl")?.path) } else { None };
        Ok(EtcdTools { etcdctl, etcdutl, ssl: session.dir().join("ssl") })
    }

    /// etcdctl against one member, over TLS with the cluster's etcd client certificate.
    pub fn etcdctl(&self, endpoint: &str, args: &[&str]) -> std::io::Result<Output> {
        Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", self.ssl.join("etcd-ca.pem").display()))
            .arg(format!("--cert={}", self.ssl.join("etcd-client.pem").display()))
            .arg(format!("--key={}", self.ssl.join("etcd-client-key.pem").display()))
            .arg("--dial-timeout=3s")
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// The tool that owns `snapshot status`/`restore`: etcdutl where the set has it.
    pub fn snapshot_tool(&self) -> &Path {
        self.etcdutl.as_ref().unwrap_or(&self.etcdctl)
    }

    /// `snapshot status` of a local snapshot file (etcdutl where the set has it).
    pub fn status(&self, file: &Path) -> Result<SnapshotStatus, String> {
        let tool = self.snapshot_tool();
        let out = Command::new(tool)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", tool.display()))?;
        if !out.status.success() {
            return Err(format!("{} is not a valid etcd snapshot: {}", file.display(), text(&out)));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{}: snapshot status said {:?}: {e}", file.display(), text(&out)))
    }
}

/// `https://<member>:<ETCD_CLIENT_PORT>` of every etcd member, in inventory order.
pub fn endpoints(inv: &Inventory) -> Vec<String> {
    let members = inv.groups.get("etcd").cloned().unwrap_or_default();
    members
        .iter()
        .map(|h| {
            let port = inv.var_str(h, "ETCD_CLIENT_PORT").unwrap_or_else(|| "2379".into());
            format!("https://{h}:{port}")
        })
        .collect()
}

/// A tool's stdout and stderr, as one trimmed text.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string()
}

/// `clusters/<name>/backup/`, created 0700.
pub fn backup_dir(cluster_dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = cluster_dir.join("backup");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
