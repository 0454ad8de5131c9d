//! `ezk restore <cluster> [--snapshot FILE]` (kubeasz's `ezctl restore`): the etcd cluster back
//! to a snapshot taken by `ezk backup` (default `clusters/<name>/backup/snapshot.db`, the
//! latest). The snapshot is checked first (`snapshot status`); then, on this machine, each
//! member's data directory is made from it (`snapshot restore` with the member's name, peer
//! URL and the cluster's member list and token) and packed; playbook 95.restore pushes each
//! member its own, stops etcd everywhere, swaps the data in (the old is kept beside it as
//! `<data dir>.ezk-before-restore`), starts etcd and waits until every member is healthy.
//! Asks first (the cluster's name, typed at a terminal) unless `--yes`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::backup::{EtcdTools, backup_dir};
use super::destroy::confirmed;
use super::setup::{RESTORE_STEP, RunArgs, run_plans};
use super::{CliError, CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Snapshot file (default: clusters/<name>/backup/snapshot.db, the latest `ezk backup`).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Removes the restore workspace (it holds every key of the cluster) however the run ends.
struct Workspace(PathBuf);
impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    // Where each member's restored data is made; the role reads it as ETCD_RESTORE_DIR.
    let work_dir = ctx.home.cluster_dir(&args.cluster).join("backup").join(format!(".restore-{}", std::process::id()));
    let mut extra = args.run.extra_vars.clone();
    extra.push(("ETCD_RESTORE_DIR".into(), work_dir.to_string_lossy().into_owned()));
    let inv = match crate::cluster::load_inventory(ctx, &args.cluster, &extra) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let members = inv.groups.get("etcd").cloned().unwrap_or_default();
    if members.is_empty() {
        return Err(format!("cluster {} has no etcd member to restore", args.cluster).into());
    }
    let tools = EtcdTools::for_cluster(ctx, &inv)?;
    let snapshot = args.snapshot.clone().unwrap_or_else(|| inv.dir.join("backup/snapshot.db"));
    let st = tools.status(&snapshot).map_err(|e| {
        if snapshot.exists() { e } else { format!("{}: no such snapshot (take one with `ezk backup {}`)", snapshot.display(), args.cluster) }
    })?;
    let what = format!(
        "This replaces the data of every etcd member of cluster {} ({}) with snapshot {} \
         (revision {}, {} keys): what was written since is lost (the old data stays on each \
         member as <data dir>.ezk-before-restore).",
        args.cluster,
        members.join(", "),
        snapshot.display(),
        st.revision,
        st.total_key
    );
    if !args.run.plan && !args.yes && !confirmed("restore", &args.cluster, &what)? {
        eprintln!("restore cancelled: no host was contacted");
        return Ok(1);
    }

    // Each member's data directory, made here; the workspace goes when this function returns.
    backup_dir(&inv)?;
    let work = Workspace(work_dir);
    std::fs::create_dir(&work.0).map_err(|e| format!("{}: {e}", work.0.display()))?;
    let catalog = crate::plan::Catalog::load(&crate::plan::Library::with_overrides(ctx.home.root())?)?;
    let etcd_defaults = &catalog.roles.get("etcd").ok_or("the etcd role is missing")?.defaults;
    // Each member's peer URL and cluster token, resolved once (etcd role defaults < inventory).
    let mut peers: Vec<(String, String, String)> = Vec::new();
    for h in &members {
        let vars = inv.vars_for(h, etcd_defaults)?;
        let var = |name: &str| -> Result<String, CliError> {
            match vars.get(name) {
                Some(serde_yaml::Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(serde_yaml::to_string(other).unwrap_or_default().trim().to_string()),
                None => Err(format!("{name} is not set for {h}").into()),
            }
        };
        peers.push((h.clone(), format!("https://{h}:{}", var("ETCD_PEER_PORT")?), var("ETCD_CLUSTER_TOKEN")?));
    }
    let initial: Vec<String> = peers.iter().map(|(h, url, _)| format!("etcd-{h}={url}")).collect();
    for (h, url, token) in &peers {
        let dir = work.0.join(h);
        restore_member(&tools, &snapshot, h, url, &initial.join(","), token, &dir)?;
        pack(&dir, &work.0.join(format!("{h}.tar.gz")))?;
    }

    let plans = crate::plan::Planner { catalog: &catalog, vars: &inv, sources: &crate::plan::NoFiles }
        .plan_steps(RESTORE_STEP)?;
    let code = run_plans(ctx, &args.run, &inv, &plans)?;
    if code == 0 && !args.run.plan && !args.run.json {
        println!(
            "cluster {}: etcd restored from {} (revision {}, {} keys) on {} member(s)",
            args.cluster,
            snapshot.display(),
            st.revision,
            st.total_key,
            members.len()
        );
    }
    Ok(code)
}

/// `snapshot restore` of one member into `dir` (etcdutl where the set has it, else etcdctl).
fn restore_member(
    tools: &EtcdTools,
    snapshot: &Path,
    member: &str,
    peer_url: &str,
    initial_cluster: &str,
    token: &str,
    dir: &Path,
) -> Result<(), CliError> {
    let tool = tools.etcdutl.as_ref().unwrap_or(&tools.etcdctl);
    let out = Command::new(tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--name=etcd-{member}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--data-dir={}", dir.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", tool.display()))?;
    if !out.status.success() || !dir.join("member").is_dir() {
        return Err(format!(
            "snapshot restore for member etcd-{member} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// `dir`'s `member/` as a gzip'd tar (0600): the WAL etcd preallocates (64 MB of zeros) packs
/// to almost nothing.
fn pack(dir: &Path, out: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out)?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    t.append_dir_all("member", dir.join("member"))?;
    t.into_inner()?.finish()?.sync_all()?;
    Ok(())
}
