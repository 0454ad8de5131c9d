//! `ezk destroy <cluster>` as phases (kubeasz's `ezctl destroy`; arguments in
//! `cli/destroy.rs`): stop every service ezk set up on the cluster's hosts and remove their
//! data, certificates and configuration — playbook 99.clean, which `ezk setup` refuses to run.
//! Asks first (the cluster's name, typed at a terminal) unless `--yes`; `--plan` shows per host
//! what would go, changing nothing. Release binaries, OS tuning and the deploy machine's
//! `clusters/<name>/` (inventory, config.yml, ssl/) stay, so `ezk setup <name> all` builds the
//! same cluster again, with the same CA.

use super::confirm::confirmed;
use super::phase::{Flow, Phase, Step, skip};
use super::setup::DESTROY_STEP;
use super::{Error, run_steps};
use crate::exec::Options;
use crate::home::Home;
use crate::plan::action::StepPlan;
use crate::session::{NoFiles, Session};

/// What to destroy.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// Do not ask (`--yes`).
    pub yes: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

struct Destroy {
    req: Request,
    session: Session,
    plans: Vec<StepPlan>,
    ready: Option<run_steps::Ready>,
}

const PHASES: &[Phase<Destroy>] = &[
    Phase::new("plan 99.clean", plan),
    Phase::new("ask for the cluster's name", ask).when(|d| !d.req.yes).dry_run(skip),
    Phase::new("run the steps on the hosts", run_on_hosts).prepare(connect),
    Phase::new("say what was kept", say_kept).when(|d| !d.req.run.json).dry_run(skip),
];

/// Run `ezk destroy`; the exit code is 0, 1 (inventory problems, or not confirmed) or the
/// failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plan_only = req.run.plan_only;
    let mut state = Destroy { req, session, plans: Vec::new(), ready: None };
    super::phase::run(PHASES, &mut state, plan_only)
}

/// Nothing is issued or fetched: the clean roles install no files.
fn plan(d: &mut Destroy) -> Step {
    d.plans = d.session.plan(DESTROY_STEP, &NoFiles)?;
    Ok(Flow::Next)
}

fn ask(d: &mut Destroy) -> Step {
    let inv = &d.session.inventory;
    let what = format!(
        "This stops etcd, containerd and the load balancers of cluster {} and deletes their data, \
         certificates and configuration on {} host(s): {}.",
        d.req.cluster,
        inv.hosts.len(),
        inv.hosts.join(", ")
    );
    if confirmed("destroy", &d.req.cluster, &what)? {
        return Ok(Flow::Next);
    }
    eprintln!("destroy cancelled: no host was contacted");
    Ok(Flow::Stop(1))
}

fn connect(d: &mut Destroy) -> Result<(), Error> {
    d.ready = Some(run_steps::prepare(&mut d.session)?);
    Ok(())
}

fn run_on_hosts(d: &mut Destroy) -> Step {
    let ready = d.ready.as_ref().expect("prepared");
    run_steps::run(&mut d.session, ready, &d.plans, &d.req.run, None)
}

fn say_kept(d: &mut Destroy) -> Step {
    println!(
        "cluster {0} removed from its hosts; kept: {1} (hosts, config.yml, ssl/): `ezk setup {0} all` builds it again",
        d.req.cluster,
        d.session.dir().display()
    );
    Ok(Flow::Next)
}
