//! The last phase of every operation that changes hosts (setup, destroy, restore): run the
//! planned steps in order on every host over SSH (`exec::Run`: one connection per host for the
//! whole run, opened before the first step), under the session's cluster lock, and print each
//! step's recap (a table per step, or JSON: one document for the run, with the steps inside
//! when there are several). A step that fails on a host stops the run.

use indexmap::IndexMap;

use super::Error;
use super::phase::{Flow, Step};
use crate::exec::{self, Connection, Options};
use crate::plan::action::StepPlan;
use crate::session::Session;

/// What running needs beyond the plans: the lock, taken now, and every host's connection.
pub struct Ready {
    conns: IndexMap<String, Connection>,
}

/// Take the cluster lock (held to the end of the operation) and build the connections.
pub fn prepare(session: &mut Session) -> Result<Ready, Error> {
    session.lock()?;
    Ok(Ready { conns: session.connections()? })
}

/// Makes a step's plan again right before it runs (for steps that read the running cluster,
/// `StepPlan::needs_nodes`), from the session as the earlier steps left the cluster.
pub type Replan<'a> = &'a dyn Fn(&mut Session, &StepPlan) -> Result<StepPlan, Error>;

/// Run `plans` in order on the inventory's hosts; a step that fails on a host stops the run
/// with that step's exit code. A step that reads the cluster's nodes is planned again by
/// `replan`, when given, right before it runs.
pub fn run(session: &mut Session, ready: &Ready, plans: &[StepPlan], opts: &Options, replan: Option<Replan>) -> Step {
    // `--json` of several steps: one document for the run, printed at its end (see
    // `Recap::combine`), also when a step stops it.
    let mut recaps = Vec::new();
    let mut flow = Flow::Next;
    let run = exec::Run::new(session.lock()?, &ready.conns, opts)?;
    // Every host of the run, for the first step to connect (a step planned again keeps the
    // hosts it was planned for).
    let all_hosts: Vec<String> = plans
        .iter()
        .flat_map(|p| p.waves.iter().flat_map(|w| &w.hosts))
        .map(|h| h.host.clone())
        .collect::<indexmap::IndexSet<String>>()
        .into_iter()
        .collect();
    for (i, plan) in plans.iter().enumerate() {
        if plans.len() > 1 && !opts.json {
            println!("== step {}", plan.step);
        }
        let fresh;
        let plan = match replan {
            Some(f) if plan.needs_nodes && !opts.plan_only => {
                fresh = f(session, plan)?;
                &fresh
            }
            _ => plan,
        };
        let lock = session.lock()?;
        let later: &[String] = if i == 0 { &all_hosts } else { &[] };
        let recap = run.step(lock, plan, &ready.conns, opts, later)?;
        let code = recap.exit_code();
        if opts.json && plans.len() > 1 {
            recaps.push(recap);
        } else {
            report(&recap, opts);
        }
        if code != 0 {
            // A later step builds on this one (etcd before the masters, …): stop here.
            if plans.len() > 1 {
                eprintln!("step {} did not complete on every host; later steps not started", plan.step);
            }
            flow = Flow::Stop(code);
            break;
        }
    }
    run.finish();
    if !recaps.is_empty() {
        let name = recaps.iter().map(|r| r.step.as_str()).collect::<Vec<_>>().join(",");
        println!("{}", crate::ui::recap::Recap::combine(&name, recaps).to_json());
    }
    Ok(flow)
}

/// Report one step: its recap table (or JSON).
fn report(recap: &crate::ui::recap::Recap, opts: &Options) {
    if opts.json {
        println!("{}", recap.to_json());
    } else {
        if opts.plan_only && recap.plan.values().all(|l| l.is_empty()) {
            println!("nothing to change");
        }
        print!("\n{}", recap.table());
        if let Some(why) = &recap.refused {
            println!("{why}");
        }
        if let Some(log) = &recap.log {
            println!("log: {}", log.display());
        }
    }
}
