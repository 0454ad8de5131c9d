//! `ezk stop <cluster>` / `ezk start <cluster>` as phases (kubeasz's `ezctl stop` / `start`;
//! arguments in `cli/stop_start.rs`): playbook 92.stop (the control plane, etcd, the external
//! load balancer, then the nodes' kubelet, kube-proxy and kube-lb; stopped and disabled) or
//! 91.start (the reverse, each service healthy before what needs it). `stop` asks first (the
//! cluster's name) unless `--yes`; `--plan` shows per host what would stop or start.

use super::confirm::confirmed;
use super::phase::{Flow, Phase, Step, skip};
use super::{Error, run_steps};
use crate::exec::Options;
use crate::home::Home;
use crate::plan::action::{StepPlan, Wave};
use crate::session::{NoFiles, Session};

/// The playbook `ezk start` runs.
pub const START_STEP: &str = "91.start";
/// The playbook `ezk stop` runs.
pub const STOP_STEP: &str = "92.stop";

#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// Stop (else start).
    pub stop: bool,
    /// Do not ask (`--yes`; stop only).
    pub yes: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

struct StopStart {
    req: Request,
    session: Session,
    plans: Vec<StepPlan>,
    ready: Option<run_steps::Ready>,
}

const PHASES: &[Phase<StopStart>] = &[
    Phase::new("plan 92.stop or 91.start", plan),
    Phase::new("ask for the cluster's name", ask).when(|s| s.req.stop && !s.req.yes).dry_run(skip),
    Phase::new("run the steps on the hosts", run_on_hosts).prepare(connect),
];

/// Run `ezk stop` or `ezk start`; the exit code is 0, 1 (inventory problems, not confirmed) or
/// the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plan_only = req.run.plan_only;
    super::phase::run(PHASES, &mut StopStart { req, session, plans: Vec::new(), ready: None }, plan_only)
}

/// The roles of 92.stop and 91.start in the order they run, each one wave on every host it
/// applies to before the next starts (the playbooks' plays have no edge between them, so the
/// planner alone would run them at once).
const STOP_ORDER: [&str; 4] = ["stop-kube-master", "stop-etcd", "stop-ex-lb", "stop-kube-node"];
const START_ORDER: [&str; 4] = ["start-etcd", "start-ex-lb", "start-kube-master", "start-kube-node"];

/// Nothing is issued or fetched: these roles install no files.
fn plan(s: &mut StopStart) -> Step {
    let (step, order) = if s.req.stop { (STOP_STEP, STOP_ORDER) } else { (START_STEP, START_ORDER) };
    s.plans = s.session.plan(step, &NoFiles)?.into_iter().map(|p| in_order(p, &order)).collect();
    Ok(Flow::Next)
}

/// `plan` as one wave per role of `order`, in that order.
fn in_order(plan: StepPlan, order: &[&str]) -> StepPlan {
    let all: Vec<_> = plan.waves.into_iter().flat_map(|w| w.hosts).collect();
    let waves = order
        .iter()
        .map(|role| Wave {
            roles: vec![role.to_string()],
            hosts: all.iter().filter(|h| h.role == *role).cloned().collect(),
            serial: Default::default(),
        })
        .filter(|w| !w.hosts.is_empty())
        .collect();
    StepPlan { waves, ..plan }
}

fn ask(s: &mut StopStart) -> Step {
    let what = format!(
        "This stops the API, etcd and every node's kubelet and kube-proxy of cluster {} (the pods' containers keep running) until `ezk start {}`.",
        s.req.cluster, s.req.cluster
    );
    if confirmed("stop", &s.req.cluster, &what)? {
        return Ok(Flow::Next);
    }
    eprintln!("stop cancelled: no host was contacted");
    Ok(Flow::Stop(1))
}

fn connect(s: &mut StopStart) -> Result<(), Error> {
    s.ready = Some(run_steps::prepare(&mut s.session)?);
    Ok(())
}

fn run_on_hosts(s: &mut StopStart) -> Step {
    let ready = s.ready.as_ref().expect("prepared");
    run_steps::run(&mut s.session, ready, &s.plans, &s.req.run, None)
}
