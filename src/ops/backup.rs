//! `ezk backup [<cluster>]` as phases (kubeasz's `ezctl backup`; arguments in `cli/backup.rs`):
//! an etcd snapshot of the cluster, taken from this machine over TLS (the cluster's etcd client
//! certificate) from the first member that answers, with the artifact store's etcdctl; checked
//! with `snapshot status` before it is kept as `clusters/<name>/backup/snapshot_<UTC time>.db`
//! (0600, in a 0700 directory: a snapshot holds every Kubernetes secret) plus its `.sha256`,
//! and copied to `snapshot.db`, the one `ezk restore` uses by default. Nothing on the hosts is
//! written.

use super::etcd_tools::{EtcdTools, backup_dir, endpoints, text};
use super::phase::{Flow, Phase, Step};
use super::Error;
use crate::home::Home;
use crate::session::Session;

/// What to back up.
#[derive(Debug, Clone)]
pub struct Request {
    /// The cluster; None: the current one.
    pub cluster: Option<String>,
    pub extra_vars: Vec<(String, String)>,
}

struct Backup {
    session: Session,
    endpoints: Vec<String>,
    tools: Option<EtcdTools>,
}

const PHASES: &[Phase<Backup>] = &[
    Phase::new("find the etcd members", find_members),
    Phase::new("find etcdctl and the etcd client certificate", find_tools),
    Phase::new("take a snapshot from the first member that answers", snapshot),
];

/// Run `ezk backup`; inventory problems are an error.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let cluster = home.cluster_or_current(req.cluster)?;
    let session = Session::open(home, &cluster, &req.extra_vars)?;
    let mut state = Backup { session, endpoints: Vec::new(), tools: None };
    super::phase::run(PHASES, &mut state, false)
}

fn find_members(b: &mut Backup) -> Step {
    b.endpoints = endpoints(&b.session.inventory);
    if b.endpoints.is_empty() {
        return Err(format!(
            "cluster {} has no etcd member (the [etcd] group of {}/hosts is empty)",
            b.session.name(),
            b.session.dir().display()
        )
        .into());
    }
    Ok(Flow::Next)
}

fn find_tools(b: &mut Backup) -> Step {
    b.tools = Some(EtcdTools::for_cluster(&b.session)?);
    Ok(Flow::Next)
}

fn snapshot(b: &mut Backup) -> Step {
    use std::os::unix::fs::PermissionsExt;
    let tools = b.tools.as_ref().expect("found");
    let cluster = b.session.name();
    let dir = backup_dir(b.session.dir())?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .map_err(|e| e.to_string())?;
    let name = format!("snapshot_{stamp}.db");
    let part = dir.join(format!("{name}.part"));
    let mut tried = Vec::new();
    for ep in &b.endpoints {
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
        return Ok(Flow::Next);
    }
    Err(format!("no etcd member of cluster {cluster} gave a snapshot:\n  {}", tried.join("\n  ")).into())
}
