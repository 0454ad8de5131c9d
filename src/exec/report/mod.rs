//! Report, the last step of the pipeline: how one role ended on one host (`RoleOutcome`, the
//! counts the recap adds up) and the progress events that say it, task by task. From the
//! decisions alone when nothing is applied (plan mode, a refusal, nothing to do), from the
//! host's result markers after an apply. `plan_lines` turns decisions into `--plan` lines,
//! with text diffs from `diff`.

pub mod diff;
pub mod plan_lines;

use std::sync::mpsc::Sender;

use super::apply::parse_results;
use super::decide::{Decided, Verdict};
use super::desired::Desired;
use super::transport::{CmdOutput, TransportError};
use crate::plan::action::HostRolePlan;
use crate::ui::events::{Event, TaskStatus};
use plan_lines::describe;

/// How one role ended on one host.
#[derive(Debug, Default)]
pub struct RoleOutcome {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub warnings: u32,
    /// Plan mode lines.
    pub plan: Vec<String>,
    /// Set when the host must stop (failed task, broken connection).
    pub error: Option<String>,
    /// The transport error, when the connection itself broke.
    pub transport: Option<TransportError>,
    /// An apply was sent (something on the host may have changed, whatever its outcome).
    pub applied: bool,
}

impl RoleOutcome {
    /// The connection broke during a round trip: the host stops.
    pub fn broken(e: TransportError, failed: u32, skipped: u32) -> RoleOutcome {
        RoleOutcome { error: Some(e.to_string()), transport: Some(e), failed, skipped, ..Default::default() }
    }

    /// The host answered, but not as expected: the host stops.
    pub fn failed(error: String) -> RoleOutcome {
        RoleOutcome { failed: 1, error: Some(error), ..Default::default() }
    }

    fn tally(&mut self, st: TaskStatus, warnings: usize) {
        self.warnings += warnings as u32;
        match st {
            TaskStatus::Ok | TaskStatus::Warning => self.ok += 1,
            TaskStatus::Changed => self.changed += 1,
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::Skipped => self.skipped += 1,
        }
    }
}

/// Progress events of one role on one host.
pub struct RoleEvents<'a> {
    pub events: &'a Sender<Event>,
    pub host_role: &'a HostRolePlan,
}

impl RoleEvents<'_> {
    pub fn send(&self, ev: Event) {
        let _ = self.events.send(ev);
    }

    /// The event of task `i` (past the last task: a handler restart).
    fn task(&self, i: usize, status: TaskStatus, message: String) -> Event {
        self.task_named(self.host_role.tasks.get(i).map(|t| t.name.clone()).unwrap_or_else(|| "handler".into()), status, message)
    }

    fn task_named(&self, task: String, status: TaskStatus, message: String) -> Event {
        Event::Task { host: self.host_role.host.clone(), role: self.host_role.role.clone(), task, status, message }
    }

    /// A round trip's duration (`-v`), or a stage of it.
    pub fn phase(&self, phase: String, seconds: f64) {
        self.send(Event::Phase { host: self.host_role.host.clone(), role: Some(self.host_role.role.clone()), phase, seconds });
    }

    /// A command sent to the host (`-v`).
    pub fn command(&self, what: &str, script: &str) {
        self.send(Event::Command {
            host: self.host_role.host.clone(),
            role: self.host_role.role.clone(),
            what: what.into(),
            script: script.to_string(),
        });
    }
}

/// Plan mode: what would change, as lines per task (then the handler restarts), counted as the
/// run would count them.
/// `last`: the host's restart waits for the other hosts of the wave (`restart_last_if` holds).
pub fn planned(hr: &HostRolePlan, desired: &[Desired], decided: &Decided, last: bool, ev: &RoleEvents) -> RoleOutcome {
    let mut o = RoleOutcome::default();
    for (i, (task, d)) in hr.tasks.iter().zip(&decided.decisions).enumerate() {
        o.plan.extend(describe(task, &desired[i], d));
        match &d.verdict {
            Verdict::Change(_) => o.changed += 1,
            Verdict::Skip(_) => o.skipped += 1,
            Verdict::Fail(_) => o.failed += 1,
            Verdict::Ok | Verdict::Wait => o.ok += 1,
        }
        o.warnings += d.warnings.len() as u32;
    }
    for (unit, by) in &decided.handlers {
        o.plan.push(format!("restart {unit} ({by})"));
    }
    if last {
        o.plan.push("restarts after the other hosts of this role (its restart_last_if holds: for etcd, it leads)".into());
    }
    ev.send(Event::Plan { host: hr.host.clone(), role: hr.role.clone(), lines: o.plan.clone() });
    o
}

/// A state ezk must not overwrite fails the host before anything is touched: the outcome when
/// any task was refused, else None.
pub fn refused(hr: &HostRolePlan, decided: &Decided, ev: &RoleEvents) -> Option<RoleOutcome> {
    let fails: Vec<String> = hr
        .tasks
        .iter()
        .zip(&decided.decisions)
        .filter_map(|(task, d)| match &d.verdict {
            Verdict::Fail(why) => Some(format!("{} ({}): {why}", task.name, task.origin)),
            _ => None,
        })
        .collect();
    if fails.is_empty() {
        return None;
    }
    for f in &fails {
        // Named after the task: the text before its origin.
        ev.send(ev.task_named(f.split(" (").next().unwrap_or(f).to_string(), TaskStatus::Failed, f.clone()));
    }
    let failed = fails.len() as u32;
    Some(RoleOutcome {
        failed,
        skipped: hr.tasks.len() as u32 - failed,
        error: Some(fails.join("; ")),
        ..Default::default()
    })
}

/// Why an apply script ends without its end marker, from its exit code (the script's traps
/// exit 129 on a hang-up, interrupt, terminate or broken pipe).
fn early_stop_cause(code: i32) -> &'static str {
    match code {
        129 => ": interrupted on the host by a signal: the host shutting down or rebooting, or its SSH session cut",
        -1 => ": the SSH session ended without an exit status: the connection was cut or the remote shell killed",
        137 => ": killed on the host (SIGKILL: by hand or by the out-of-memory killer)",
        _ => "",
    }
}

/// Nothing to apply: every task ok, skipped by its guard, or ok with warnings.
pub fn unchanged(decided: &Decided, ev: &RoleEvents) -> RoleOutcome {
    let mut o = RoleOutcome::default();
    for (i, d) in decided.decisions.iter().enumerate() {
        let (st, msg) = match &d.verdict {
            Verdict::Skip(why) => (TaskStatus::Skipped, why.clone()),
            _ if !d.warnings.is_empty() => (TaskStatus::Warning, d.warnings.join("; ")),
            _ => (TaskStatus::Ok, String::new()),
        };
        o.tally(st, d.warnings.len());
        ev.send(ev.task(i, st, msg));
    }
    o
}

/// After an apply: each task's result marker (a task without one was not reached, or had
/// nothing to do), the handler restarts (`handlers`: their result index and unit), and whether
/// the script reached its end.
pub fn applied(hr: &HostRolePlan, decided: &Decided, handlers: &[(usize, String)], out: &CmdOutput, ev: &RoleEvents) -> RoleOutcome {
    let mut o = RoleOutcome::default();
    let res = parse_results(&out.stdout_text());
    let mut stopped = false;
    for (i, d) in decided.decisions.iter().enumerate() {
        let task = &hr.tasks[i];
        let mut warnings = d.warnings.clone();
        let (st, msg) = match (res.tasks.get(&i), &d.verdict) {
            (Some(r), _) => {
                warnings.extend(r.warnings.iter().cloned());
                match r.status.as_str() {
                    "changed" => (TaskStatus::Changed, String::new()),
                    "skipped" => (TaskStatus::Skipped, "guard: already done".into()),
                    "failed" => {
                        stopped = true;
                        let mut m = format!("{} ({}): {}", task.name, task.origin, r.message);
                        for l in &r.output {
                            m.push_str("\n    ");
                            m.push_str(l);
                        }
                        o.error = Some(m.clone());
                        (TaskStatus::Failed, m)
                    }
                    _ if !warnings.is_empty() => (TaskStatus::Warning, String::new()),
                    _ => (TaskStatus::Ok, String::new()),
                }
            }
            (None, _) if stopped || (!res.done && d.needs_apply()) => {
                stopped = true;
                (TaskStatus::Skipped, "not reached".into())
            }
            (None, Verdict::Skip(why)) => (TaskStatus::Skipped, why.clone()),
            (None, _) => (TaskStatus::Ok, String::new()),
        };
        let st = if st == TaskStatus::Ok && !warnings.is_empty() { TaskStatus::Warning } else { st };
        let msg = if msg.is_empty() { warnings.join("; ") } else { msg };
        o.tally(st, warnings.len());
        ev.send(ev.task(i, st, msg));
    }
    for (i, unit) in handlers {
        if let Some(r) = res.tasks.get(i) {
            let st = if r.status == "changed" { TaskStatus::Changed } else { TaskStatus::Failed };
            if st == TaskStatus::Failed {
                o.error = Some(format!("restart {unit}: {}", r.message));
            }
            o.tally(st, 0);
            ev.send(ev.task(*i, st, format!("restart {unit}")));
        }
    }
    if !res.done && o.error.is_none() {
        o.failed += 1;
        let stderr: String = out.stderr_text().trim().chars().take(500).collect();
        o.error = Some(format!(
            "[{}] apply stopped early (exit code {}{}){}; every file is the old or the new one (never a part), what ran later did not: run again to finish",
            hr.role,
            out.code,
            early_stop_cause(out.code),
            if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
        ));
    }
    o
}
