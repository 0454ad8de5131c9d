//! `ezk restore <cluster> [--snapshot FILE]` as phases (kubeasz's `ezctl restore`; arguments in
//! `cli/restore.rs`): the etcd cluster back to a snapshot taken by `ezk backup` (default
//! `clusters/<name>/backup/snapshot.db`, the latest). The snapshot is checked first (`snapshot
//! status`); then, on this machine, each member's data directory is made from it (`snapshot
//! restore` with the member's name, peer URL and the cluster's member list and token) and
//! packed; playbook 95.restore pushes each member its own, stops etcd everywhere, swaps the data
//! in (the old is kept beside it as `<data dir>.ezk-before-restore`), starts etcd and waits
//! until every member is healthy. Asks first (the cluster's name, typed at a terminal) unless
//! `--yes`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::confirm::confirmed;
use super::etcd_tools::{EtcdTools, SnapshotStatus, backup_dir};
use super::phase::{Flow, Phase, Step, skip};
use super::setup::RESTORE_STEP;
use super::{Error, run_steps};
use crate::exec::Options;
use crate::home::Home;
use crate::plan::action::StepPlan;
use crate::session::{NoFiles, Session};

/// What to restore.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// The snapshot file; None: `clusters/<name>/backup/snapshot.db`.
    pub snapshot: Option<PathBuf>,
    /// Do not ask (`--yes`).
    pub yes: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

/// Removes the restore workspace (it holds every key of the cluster) however the run ends:
/// the phase's cleanup drops it, and a panic drops it too.
struct Workspace(PathBuf);
impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Restore {
    req: Request,
    session: Session,
    /// Where each member's restored data is made; the role reads it as ETCD_RESTORE_DIR.
    work_dir: PathBuf,
    members: Vec<String>,
    tools: Option<EtcdTools>,
    snapshot: PathBuf,
    status: Option<SnapshotStatus>,
    workspace: Option<Workspace>,
    plans: Vec<StepPlan>,
    ready: Option<run_steps::Ready>,
}

const PHASES: &[Phase<Restore>] = &[
    Phase::new("find the etcd members", find_members),
    Phase::new("find etcdctl and the etcd client certificate", find_tools),
    Phase::new("check the snapshot", check_snapshot),
    Phase::new("ask for the cluster's name", ask).when(|r| !r.req.yes).dry_run(skip),
    Phase::new("make each member's data from the snapshot", make_member_data)
        .cleanup(|r| drop(r.workspace.take())),
    Phase::new("plan 95.restore", plan),
    Phase::new("run the steps on the hosts", run_on_hosts).prepare(connect),
    Phase::new("say what was restored", say_restored).when(|r| !r.req.run.json).dry_run(skip),
];

/// Run `ezk restore`; the exit code is 0, 1 (inventory problems, or not confirmed) or the
/// failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let work_dir = home
        .cluster_dir(&req.cluster)
        .join("backup")
        .join(format!(".restore-{}", std::process::id()));
    let mut extra = req.extra_vars.clone();
    extra.push(("ETCD_RESTORE_DIR".into(), work_dir.to_string_lossy().into_owned()));
    let session = match super::open_or_report(home, &req.cluster, &extra) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plan_only = req.run.plan_only;
    let mut state = Restore {
        req,
        session,
        work_dir,
        members: Vec::new(),
        tools: None,
        snapshot: PathBuf::new(),
        status: None,
        workspace: None,
        plans: Vec::new(),
        ready: None,
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn find_members(r: &mut Restore) -> Step {
    r.members = r.session.inventory.groups.get("etcd").cloned().unwrap_or_default();
    if r.members.is_empty() {
        return Err(format!("cluster {} has no etcd member to restore", r.req.cluster).into());
    }
    Ok(Flow::Next)
}

fn find_tools(r: &mut Restore) -> Step {
    r.tools = Some(EtcdTools::for_cluster(&r.session)?);
    Ok(Flow::Next)
}

fn check_snapshot(r: &mut Restore) -> Step {
    let tools = r.tools.as_ref().expect("found");
    r.snapshot = r.req.snapshot.clone().unwrap_or_else(|| r.session.dir().join("backup/snapshot.db"));
    let snapshot = &r.snapshot;
    let st = tools.status(snapshot).map_err(|e| {
        if snapshot.exists() {
            e
        } else {
            format!("{}: no such snapshot (take one with `ezk backup {}`)", snapshot.display(), r.req.cluster)
        }
    })?;
    r.status = Some(st);
    Ok(Flow::Next)
}

fn ask(r: &mut Restore) -> Step {
    let st = r.status.as_ref().expect("checked");
    let what = format!(
        "This replaces the data of every etcd member of cluster {} ({}) with snapshot {} \
         (revision {}, {} keys): what was written since is lost (the old data stays on each \
         member as <data dir>.ezk-before-restore).",
        r.req.cluster,
        r.members.join(", "),
        r.snapshot.display(),
        st.revision,
        st.total_key
    );
    if confirmed("restore", &r.req.cluster, &what)? {
        return Ok(Flow::Next);
    }
    eprintln!("restore cancelled: no host was contacted");
    Ok(Flow::Stop(1))
}

/// Each member's data directory, made here from the snapshot and packed for the role to push.
fn make_member_data(r: &mut Restore) -> Step {
    backup_dir(r.session.dir())?;
    let work = r.workspace.insert(Workspace(r.work_dir.clone()));
    std::fs::create_dir(&work.0).map_err(|e| format!("{}: {e}", work.0.display()))?;
    let catalog = r.session.catalog()?;
    let etcd_defaults = &catalog.roles.get("etcd").ok_or("the etcd role is missing")?.defaults;
    // Each member's peer URL and cluster token, resolved once (etcd role defaults < inventory).
    let mut peers: Vec<(String, String, String)> = Vec::new();
    for h in &r.members {
        let vars = r.session.inventory.vars_for(h, etcd_defaults)?;
        let var = |name: &str| -> Result<String, Error> {
            match vars.get(name) {
                Some(serde_yaml::Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(serde_yaml::to_string(other).unwrap_or_default().trim().to_string()),
                None => Err(format!("{name} is not set for {h}").into()),
            }
        };
        peers.push((h.clone(), format!("https://{h}:{}", var("ETCD_PEER_PORT")?), var("ETCD_CLUSTER_TOKEN")?));
    }
    let tools = r.tools.as_ref().expect("found");
    let initial: Vec<String> = peers.iter().map(|(h, url, _)| format!("etcd-{h}={url}")).collect();
    for (h, url, token) in &peers {
        let dir = work.0.join(h);
        restore_member(tools, &r.snapshot, h, url, &initial.join(","), token, &dir)?;
        pack(&dir, &work.0.join(format!("{h}.tar.gz")))?;
    }
    Ok(Flow::Next)
}

/// Nothing is issued or fetched; the member data made above is pushed from disk.
fn plan(r: &mut Restore) -> Step {
    r.plans = r.session.plan(RESTORE_STEP, &NoFiles)?;
    Ok(Flow::Next)
}

fn connect(r: &mut Restore) -> Result<(), Error> {
    r.ready = Some(run_steps::prepare(&mut r.session)?);
    Ok(())
}

fn run_on_hosts(r: &mut Restore) -> Step {
    let ready = r.ready.as_ref().expect("prepared");
    run_steps::run(&mut r.session, ready, &r.plans, &r.req.run, None)
}

fn say_restored(r: &mut Restore) -> Step {
    let st = r.status.as_ref().expect("checked");
    println!(
        "cluster {}: etcd restored from {} (revision {}, {} keys) on {} member(s)",
        r.req.cluster,
        r.snapshot.display(),
        st.revision,
        st.total_key,
        r.members.len()
    );
    Ok(Flow::Next)
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
) -> Result<(), Error> {
    let tool = tools.snapshot_tool();
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
fn pack(dir: &Path, out: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out)?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    t.append_dir_all("member", dir.join("member"))?;
    t.into_inner()?.finish()?.sync_all()?;
    Ok(())
}
