//! One role on one host, through the pipeline the folders are named after: `gather` (round
//! trip 1: every target's state in one command) → `decide` (local, pure) → `apply` (round trip
//! 2, only when something differs) → `report` (the outcome and its events). Plan mode stops
//! after deciding and reports what would change: this is the one place `--plan` differs from a
//! run, so what it shows is what the run would do.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::apply::{ApplyScript, apply_script, body, parse_trace, traced};
use super::decide::{Decided, decide};
use super::desired::Desired;
use super::gather::checksums::Checksums;
use super::gather::{Facts, gather_body, gather_script, gather_script_many, parse_facts, parse_facts_many, probes};
use super::report::{self, RoleEvents, RoleOutcome};
use super::transport::{CmdOutput, Transport};
use crate::plan::action::{Action, HostRolePlan, Task};
use crate::ui::events::Event;

/// How a role runs on a host.
#[derive(Debug, Clone, Copy)]
pub struct RoleRun {
    /// Gather and decide only, then describe (`--plan`).
    pub plan_only: bool,
    /// Time each task of the apply (`-vv`).
    pub trace: bool,
    /// Per round trip (a wait_for's own timeout is added to the apply's).
    pub timeout: Duration,
}

/// A `serial` role's restarts in one wave (`meta.yml` `serial`): its places, shared by its
/// hosts, and which of them are settled, for a host that restarts last.
pub struct Serial {
    places: tokio::sync::Semaphore,
    /// How many hosts of the wave run the role.
    hosts: usize,
    settled: Mutex<HashSet<String>>,
    changed: tokio::sync::Notify,
}

impl Serial {
    pub fn new(places: u32, hosts: usize) -> Serial {
        Serial { places: tokio::sync::Semaphore::new(places as usize), hosts, settled: Mutex::default(), changed: Default::default() }
    }

    /// `host` is done with the role (or will not run it), or waits to restart last.
    pub fn settle(&self, host: &str) {
        if self.settled.lock().expect("not poisoned").insert(host.to_string()) {
            self.changed.notify_waiters();
        }
    }

    /// Until every other host of the role is settled: done, skipped, or itself waiting to go
    /// last (two hosts that both claim it then go one after the other, not wait for each other).
    async fn after_the_others(&self, host: &str) {
        self.settle(host);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.settled.lock().expect("not poisoned").len() >= self.hosts {
                return;
            }
            changed.await;
        }
    }
}

/// Whether a service of the role restarts last on this host: its `restart_last_if` holds now
/// (the etcd leader). Asked only of a host of a `serial` role that is about to restart
/// something, in a round trip of its own: a run that restarts nothing (every no-op) starts no
/// probe (for etcd, an `etcdctl` per member per run). A probe that cannot be run counts as
/// "not last": the restart keeps its place in the rolling order, as before this existed.
async fn restarts_last<T: Transport>(t: &T, host_role: &HostRolePlan, how: RoleRun) -> bool {
    let tasks = &host_role.tasks;
    let mut script = String::new();
    for (i, task) in tasks.iter().enumerate() {
        if let Action::Service { last_if: Some(cmd), .. } = &task.action {
            script.push_str(&probes::guard_line(i, &probes::guard_cond(None, Some(cmd)).expect("a command")));
        }
    }
    if script.is_empty() {
        return false;
    }
    script.push_str("echo @@end\n");
    let Ok(out) = t.run(&script, Vec::new(), how.timeout).await else { return false };
    let Ok(facts) = parse_facts(&out.stdout_text(), &out.stderr_text(), tasks) else { return false };
    tasks.iter().enumerate().any(|(i, task)| {
        matches!(task.action, Action::Service { last_if: Some(_), .. }) && facts.get(&i).and_then(|f| f.guard_met) == Some(true)
    })
}

/// Run one role on one host. `serial`: the role's places for restarts, shared by its hosts in
/// this wave; an apply that restarts a running service holds one until it is done, waits
/// included, so the next host restarts only once this one is healthy. A host whose
/// `restart_last_if` holds first lets every other host of the wave be done. `gathered`: the
/// role's facts from a gather shared with other roles ([`gather_together`]), still true of the
/// host (the caller's to know); None: the role gathers on its own.
#[allow(clippy::too_many_arguments)]
pub async fn run_role<T: Transport>(
    t: &T,
    host_role: &HostRolePlan,
    desired: &[Desired],
    checksums: &mut Checksums,
    how: RoleRun,
    serial: Option<&Serial>,
    events: &Sender<Event>,
    gathered: Option<Facts>,
) -> RoleOutcome {
    let ev = RoleEvents { events, host_role };
    let facts = match gathered {
        Some(facts) => facts,
        None => match gather(t, host_role, desired, checksums, how, &ev).await {
            Ok(facts) => facts,
            Err(outcome) => return outcome,
        },
    };
    let decided = decide(&host_role.tasks, desired, &facts);
    if how.plan_only {
        let last = serial.is_some() && decided.restarts() && restarts_last(t, host_role, how).await;
        return report::planned(host_role, desired, &decided, last, &ev);
    }
    if let Some(outcome) = report::refused(host_role, &decided, &ev) {
        return outcome;
    }
    if !decided.needs_apply() {
        return report::unchanged(&decided, &ev);
    }
    let _place = match serial {
        Some(s) if decided.restarts() => {
            if restarts_last(t, host_role, how).await {
                s.after_the_others(&host_role.host).await;
            }
            Some(s.places.acquire().await.expect("never closed"))
        }
        _ => None,
    };
    RoleOutcome { applied: true, ..apply(t, host_role, desired, &decided, how, &ev).await }
}

/// Round trip 1 for several roles of one host at once ([`gather_script_many`]): the facts of
/// each role whose part came back whole, by its place in `roles`. A role missing from the
/// answer (the round trip broke, or its part cannot be read) gathers again on its own in
/// [`run_role`], which then reports what is wrong as it always does: sharing the round trip
/// never changes an outcome, only how many there are.
pub async fn gather_together<T: Transport>(
    t: &T,
    roles: &[(&HostRolePlan, &[Desired])],
    checksums: &mut Checksums,
    how: RoleRun,
    events: &Sender<Event>,
) -> Vec<Option<Facts>> {
    let list: Vec<(&[Task], &[Desired])> = roles.iter().map(|(hr, d)| (hr.tasks.as_slice(), *d)).collect();
    let script = gather_script_many(&list, how.plan_only, checksums);
    // One command for all of them: shown once, under the first role.
    if let Some((hr, _)) = roles.first() {
        let others: Vec<&str> = roles[1..].iter().map(|(o, _)| o.role.as_str()).collect();
        let what = if others.is_empty() { "gather".to_string() } else { format!("gather (with {})", others.join(", ")) };
        RoleEvents { events, host_role: hr }.command(&what, gather_body(&script));
    }
    let started = Instant::now();
    // Each role's part may take what one role's gather may.
    let timeout = how.timeout * u32::try_from(roles.len()).unwrap_or(u32::MAX).max(1);
    let Ok(out) = t.run(&script, Vec::new(), timeout).await else {
        return vec![None; roles.len()];
    };
    if let Some((hr, _)) = roles.first() {
        RoleEvents { events, host_role: hr }.phase("gather".into(), started.elapsed().as_secs_f64());
    }
    let tasks: Vec<&[Task]> = list.iter().map(|(t, _)| *t).collect();
    parse_facts_many(&out.stdout_text(), &out.stderr_text(), &tasks)
        .into_iter()
        .zip(roles)
        .map(|(facts, (hr, d))| {
            let facts = facts.ok()?;
            checksums.learn(&hr.tasks, d, &facts);
            Some(facts)
        })
        .collect()
}

/// Round trip 1: the facts of every task (and, in plan mode, the content of differing text
/// files); what was hashed is remembered in `checksums`.
async fn gather<T: Transport>(
    t: &T,
    host_role: &HostRolePlan,
    desired: &[Desired],
    checksums: &mut Checksums,
    how: RoleRun,
    ev: &RoleEvents<'_>,
) -> Result<Facts, RoleOutcome> {
    let script = gather_script(&host_role.tasks, desired, how.plan_only, checksums);
    ev.command("gather", gather_body(&script));
    let started = Instant::now();
    let out = t
        .run(&script, Vec::new(), how.timeout)
        .await
        .map_err(|e| RoleOutcome::broken(e, 0, host_role.tasks.len() as u32))?;
    ev.phase("gather".into(), started.elapsed().as_secs_f64());
    let facts = parse_facts(&out.stdout_text(), &out.stderr_text(), &host_role.tasks)
        .map_err(|e| RoleOutcome::failed(format!("[{}] gathering facts: {e}", host_role.role)))?;
    checksums.learn(&host_role.tasks, desired, &facts);
    Ok(facts)
}

/// Round trip 2: one script with the changed files on stdin, then the report from its markers.
async fn apply<T: Transport>(
    t: &T,
    host_role: &HostRolePlan,
    desired: &[Desired],
    decided: &Decided,
    how: RoleRun,
    ev: &RoleEvents<'_>,
) -> RoleOutcome {
    let ApplyScript { script, stdin, handlers } = apply_script(&host_role.tasks, desired, &decided.decisions, &decided.handlers);
    let wait_secs: u64 = host_role
        .tasks
        .iter()
        .map(|t| match &t.action {
            Action::WaitFor { timeout_secs, .. } => *timeout_secs,
            _ => 0,
        })
        .sum();
    ev.command("apply", body(&script));
    let script = if how.trace { traced(&script) } else { script };
    let started = Instant::now();
    let out = t.run(&script, stdin, how.timeout + Duration::from_secs(wait_secs)).await;
    ev.phase("apply".into(), started.elapsed().as_secs_f64());
    match out {
        Ok(out) => {
            trace_phases(host_role, &out, ev);
            report::applied(host_role, decided, &handlers, &out, ev)
        }
        Err(e) => RoleOutcome::broken(e, 1, 0),
    }
}

/// `-vv`: the time from each trace mark to the next, as phases: "6 upload" → "  6 etcd
/// binary: upload".
fn trace_phases(host_role: &HostRolePlan, out: &CmdOutput, ev: &RoleEvents) {
    for (mark, secs) in parse_trace(&out.stdout_text()) {
        let (i, stage) = mark.split_once(' ').unwrap_or((&mark, ""));
        let name = i.parse::<usize>().ok().map(|i| host_role.tasks.get(i).map(|t| t.name.as_str()).unwrap_or("handler"));
        let phase = match (name, stage) {
            (Some(n), "") => format!("  {i} {n}"),
            (Some(n), st) => format!("  {i} {n}: {st}"),
            (None, _) => format!("  {mark}"),
        };
        ev.phase(phase, secs);
    }
}

#[cfg(test)]
mod serial_tests {
    use super::*;
    use std::sync::Arc;

    /// The host that goes last starts only once the others are settled, in whatever order
    /// they finish; two that both claim last go on instead of waiting for each other.
    #[tokio::test]
    async fn last_waits_for_the_others_and_two_claimants_do_not_deadlock() {
        let s = Arc::new(Serial::new(1, 3));
        let order = Arc::new(Mutex::new(Vec::new()));
        let last = {
            let (s, order) = (s.clone(), order.clone());
            tokio::spawn(async move {
                s.after_the_others("a").await;
                order.lock().unwrap().push("a");
            })
        };
        for h in ["b", "c"] {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!last.is_finished(), "a went before {h} was done");
            order.lock().unwrap().push(h);
            s.settle(h);
        }
        tokio::time::timeout(Duration::from_secs(5), last).await.expect("a goes once b and c are done").unwrap();
        assert_eq!(*order.lock().unwrap(), ["b", "c", "a"]);

        let s = Arc::new(Serial::new(1, 3));
        let both: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|h| {
                let s = s.clone();
                tokio::spawn(async move { s.after_the_others(h).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(both.iter().all(|j| !j.is_finished()), "went before c was done");
        s.settle("c");
        for j in both {
            tokio::time::timeout(Duration::from_secs(5), j).await.expect("no deadlock").unwrap();
        }
    }
}
