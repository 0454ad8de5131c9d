//! `ezk backup [<cluster>]` (kubeasz's `ezctl backup`): an etcd snapshot of the cluster, taken
//! from this machine over TLS (the cluster's etcd client certificate) from the first member
//! that answers, with the artifact store's etcdctl; checked with `snapshot status` before it
//! is kept as `clusters/<name>/backup/snapshot_<UTC time>.db` (0600, in a 0700 directory: a
//! snapshot holds every Kubernetes secret) plus its `.sha256`, and copied to `snapshot.db`, the
//! one `ezk restore` uses by default. Nothing on the hosts is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::checkout::cluster_or_current;
use super::{CliResult, Context, parse_extra_var};
use crate::inventory::Inventory;
use crate::plan::Sources;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

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
    pub fn for_cluster(ctx: &Context, inv: &Inventory) -> Result<EtcdTools, super::CliError> {
        // Issues or reuses the certificates (the etcd client one among them) and opens the store.
        let sources = crate::cluster::sources(ctx, inv)?;
        let etcdctl = sources.binary("etcdctl")?.path;
        let provides_etcdutl = sources
            .k8s_ver
            .as_deref()
            .and_then(|v| sources.store.manifest().set(v).ok())
            .is_some_and(|(_, set)| set.provides("etcdutl"));
        let etcdutl = if provides_etcdutl { Some(sources.binary("etcdutl")?.path) } else { None };
        Ok(EtcdTools { etcdctl, etcdutl, ssl: inv.dir.join("ssl") })
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

    /// `snapshot status` of a local snapshot file (etcdutl where the set has it).
    pub fn status(&self, file: &Path) -> Result<SnapshotStatus, String> {
        let tool = self.etcdutl.as_ref().unwrap_or(&self.etcdctl);
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

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string()
}

/// `clusters/<name>/backup/`, created 0700.
pub fn backup_dir(inv: &Inventory) -> Result<PathBuf, super::CliError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = inv.dir.join("backup");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    use std::os::unix::fs::PermissionsExt;
    let cluster = cluster_or_current(&ctx.home, args.cluster)?;
    let inv = Inventory::load(&ctx.home, &cluster, &args.extra)?;
    let eps = endpoints(&inv);
    if eps.is_empty() {
        return Err(format!("cluster {cluster} has no etcd member (the [etcd] group of {}/hosts is empty)", inv.dir.display()).into());
    }
    let tools = EtcdTools::for_cluster(ctx, &inv)?;
    let dir = backup_dir(&inv)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .map_err(|e| e.to_string())?;
    let name = format!("snapshot_{stamp}.db");
    let part = dir.join(format!("{name}.part"));
    let mut tried = Vec::new();
    for ep in &eps {
        let _ = std::fs::remove_file(&part);
        let out = tools.etcdctl(ep, &["snapshot", "save", &part.to_string_lossy()])?;
        if !out.status.success() || !part.is_file() {
            tried.push(format!("{ep}: {}", text(&out)));
            eprintln!("backup: {ep} did not give a snapshot; trying the next member");
            continue;
        }
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600))?;
        let st = match tools.status(&part) {
            Ok(st) => st,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e.into());
            }
        };
        let file = dir.join(&name);
        std::fs::rename(&part, &file)?;
        let sha = crate::artifacts::sha256_file(&file)?;
        std::fs::write(dir.join(format!("{name}.sha256")), format!("{sha}  {name}\n"))?;
        // The latest, under the name restore uses by default (a copy, as kubeasz keeps it).
        let latest_tmp = dir.join(format!(".snapshot.db.tmp.{}", std::process::id()));
        std::fs::copy(&file, &latest_tmp)?;
        std::fs::rename(&latest_tmp, dir.join("snapshot.db"))?;
        println!(
            "etcd snapshot of cluster {cluster} from {ep}: {} (revision {}, {} keys, {} bytes, sha256 {sha}); also {}",
            file.display(),
            st.revision,
            st.total_key,
            st.total_size,
            dir.join("snapshot.db").display()
        );
        return Ok(0);
    }
    Err(format!("no etcd member of cluster {cluster} gave a snapshot:\n  {}", tried.join("\n  ")).into())
}
