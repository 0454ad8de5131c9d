//! `ezk setup <cluster> <step>` as phases (the command's arguments are in `cli/setup.rs`): plan
//! every step fully (inventory, PKI, artifact store, templates) before the first connection,
//! then run the steps in order on the hosts; a step that fails on a host stops the run. With
//! several steps (`all`), `--json` prints one JSON document for the run: per-host sums, and
//! each step's recap in `steps`.

use super::phase::{Flow, Phase, Step};
use super::{Error, run_steps};
use crate::exec::Options;
use crate::home::Home;
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The playbook `ezk destroy` runs.
pub const DESTROY_STEP: &str = "99.clean";
/// The playbook `ezk restore` runs.
pub const RESTORE_STEP: &str = "95.restore";

/// Playbooks with a command of their own, which asks before it acts: `setup` refuses them by
/// any of their names (step, command, what it does).
const OWN_COMMAND: &[(&str, &str, &str)] = &[
    (DESTROY_STEP, "destroy", "removes the cluster"),
    (RESTORE_STEP, "restore", "replaces etcd's data with a snapshot"),
    (super::stop_start::STOP_STEP, "stop", "stops the cluster"),
    (super::stop_start::START_STEP, "start", "starts a stopped cluster"),
];

/// What to set up.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// A step name (`02`, `etcd`, `02.etcd`, `all`).
    pub step: String,
    /// `--limit` patterns; empty: every host.
    pub limit: Vec<String>,
    pub extra_vars: Vec<(String, String)>,
    /// How the steps run (`--plan` is `plan_only`).
    pub run: Options,
    /// Apply a change that refuses clients that had access (`--allow-client-cutoff`).
    pub allow_client_cutoff: bool,
}

struct Setup {
    req: Request,
    session: Session,
    /// The hosts `--limit` selects.
    only: Option<Vec<String>>,
    plans: Vec<StepPlan>,
    ready: Option<run_steps::Ready>,
}

const PHASES: &[Phase<Setup>] = &[
    Phase::new("select the hosts (--limit)", select_hosts).when(|s| !s.req.limit.is_empty()),
    Phase::new("refuse steps that have a command of their own", refuse_own_command),
    Phase::new("plan every step", plan_steps),
    Phase::new("keep the selected hosts", keep_selected).when(|s| s.only.is_some()),
    Phase::new("say which clients lose access", client_cutoff),
    Phase::new("run the steps on the hosts", run_on_hosts).prepare(connect),
];

/// Run `ezk setup`; the exit code is 0, 1 (inventory problems, printed) or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plan_only = req.run.plan_only;
    let mut state = Setup { req, session, only: None, plans: Vec::new(), ready: None };
    super::phase::run(PHASES, &mut state, plan_only)
}

/// Every host is still planned (its variables feed the others' files); only the selected ones
/// are contacted and changed. A name that matches nothing is an error before any connection.
fn select_hosts(s: &mut Setup) -> Step {
    s.only = Some(s.session.inventory.select(&s.req.limit)?);
    Ok(Flow::Next)
}

fn refuse_own_command(s: &mut Setup) -> Step {
    for book in s.session.catalog()?.resolve_steps(&s.req.step)? {
        if let Some((_, command, what)) = OWN_COMMAND.iter().find(|(step, ..)| *step == book.step) {
            return Err(format!(
                "step {:?} {what}; `ezk {command} {}` runs it (and asks first)",
                s.req.step, s.req.cluster
            )
            .into());
        }
    }
    Ok(Flow::Next)
}

/// Certificates issued or reused, binaries found in the store, every template rendered for
/// every host. A binary not downloaded yet is shown by `--plan` as what will be installed; a
/// run stops here, before any step, naming the commands that fetch them. A step that reads
/// the cluster's nodes (the network) is planned with what the API says now, if it answers (a
/// cluster being set up from bare hosts has no nodes yet: that step is planned again, with
/// fresh facts, right before it runs).
fn plan_steps(s: &mut Setup) -> Step {
    s.plans = s.session.plan(&s.req.step, s.session.files()?)?;
    if s.plans.iter().any(|p| p.needs_nodes) {
        s.session.fetch_node_facts(None)?;
        s.plans = s.session.plan(&s.req.step, s.session.files()?)?;
    }
    let missing = crate::plan::action::not_downloaded(&s.plans);
    if !s.req.run.plan_only && !missing.is_empty() {
        return Err(format!(
            "the steps install binaries that are not downloaded yet, so nothing was run (`--plan` needs no download). Fetch them first:\n{}",
            crate::exec::runner::fetch_list(&missing)
        )
        .into());
    }
    let need_key = s.session.files()?.needs_ca_key();
    if !need_key.is_empty() {
        if !s.req.run.plan_only {
            return Err(need_key.join("\n").into());
        }
        for m in &need_key {
            eprintln!("note: {m}");
        }
    }
    Ok(Flow::Next)
}

fn keep_selected(s: &mut Setup) -> Step {
    let only = s.only.as_ref().expect("when: selected");
    for plan in &mut s.plans {
        keep_only(plan, only);
    }
    Ok(Flow::Next)
}

/// A change of whom etcd or kube-apiserver lets in (a trusted CA, a required client
/// certificate, a plaintext listener) is said in words before anything happens, with the
/// clients it refuses; it is applied only with `--allow-client-cutoff`.
fn client_cutoff(s: &mut Setup) -> Step {
    let found = super::client_cutoff::check(&s.session, &s.plans, &s.req.run)?;
    if found.is_empty() {
        return Ok(Flow::Next);
    }
    let mut text = String::from("this run changes who may connect; clients that had access lose it:\n");
    for f in &found {
        text.push_str(&format!("  - {f}\n"));
    }
    if s.req.run.plan_only || s.req.allow_client_cutoff {
        if !s.req.run.plan_only {
            text.push_str("applied as asked (--allow-client-cutoff)\n");
        }
        // On stdout with the plan; with --json, stdout is the JSON document.
        if s.req.run.json { eprint!("{text}") } else { print!("{text}") }
        return Ok(Flow::Next);
    }
    Err(format!(
        "{text}not applied: nothing was changed on any host. Move those clients first, or accept the cut-off with --allow-client-cutoff (README: \"Taking over a cluster kubeasz built\")"
    )
    .into())
}

/// Drop from `plan` the hosts `--limit` left out.
pub(super) fn keep_only(plan: &mut StepPlan, only: &[String]) {
    for wave in &mut plan.waves {
        wave.hosts.retain(|h| only.contains(&h.host));
    }
    plan.waves.retain(|w| !w.hosts.is_empty());
}

/// How long the network step waits for every node to have registered with a pod subnet.
pub(super) const NODE_FACTS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn connect(s: &mut Setup) -> Result<(), Error> {
    s.ready = Some(run_steps::prepare(&mut s.session)?);
    Ok(())
}

fn run_on_hosts(s: &mut Setup) -> Step {
    let ready = s.ready.as_ref().expect("prepared");
    let only = s.only.clone();
    let replan = move |session: &mut Session, plan: &StepPlan| -> Result<StepPlan, Error> {
        session.fetch_node_facts(Some(NODE_FACTS_WAIT))?;
        let mut fresh = session.planner(session.files()?)?.plan_step(&plan.step)?;
        if let Some(only) = &only {
            keep_only(&mut fresh, only);
        }
        Ok(fresh)
    };
    run_steps::run(&mut s.session, ready, &s.plans, &s.req.run, Some(&replan))
}
