//! One role on one host: gather (round trip 1) → decide (local, pure) → apply (round trip 2,
//! only when something differs). Plan mode stops after deciding and describes.

use std::sync::mpsc::Sender;
use std::time::Duration;

use super::describe::describe;
use super::facts::{gather_body, gather_script, parse_facts};
use super::guard::{decide_role, pending_handlers, Verdict};
use super::script::{apply_script, body, parse_results, parse_trace, traced};
use super::transport::{Transport, TransportError};
use super::sums::Sums;
use super::want::Want;
use crate::plan::action::{Action, HostRolePlan};
use crate::ui::events::{Event, TaskStatus};

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
}

/// Run one role on one host. `trace`: time each task of the apply (`-vv`).
#[allow(clippy::too_many_arguments)]
pub async fn run_role<T: Transport>(
    t: &T,
    hrp: &HostRolePlan,
    wants: &[Want],
    sums: &mut Sums,
    plan_only: bool,
    trace: bool,
    timeout: Duration,
    events: &Sender<Event>,
) -> RoleOutcome {
    let mut o = RoleOutcome::default();
    let host = &hrp.host;
    let role = &hrp.role;
    let send = |ev| {
        let _ = events.send(ev);
    };
    let task_ev = |i: usize, status: TaskStatus, message: String| Event::Task {
        host: host.clone(),
        role: role.clone(),
        task: hrp.tasks.get(i).map(|t| t.name.clone()).unwrap_or_else(|| "handler".into()),
        status,
        message,
    };

    // Round trip 1: gather.
    let gs = gather_script(&hrp.tasks, wants, plan_only, sums);
    send(Event::Command { host: host.clone(), role: role.clone(), what: "gather".into(), script: gather_body(&gs).to_string() });
    let tg = std::time::Instant::now();
    let out = match t.run(&gs, Vec::new(), timeout).await {
        Ok(out) => out,
        Err(e) => {
            o.error = Some(e.to_string());
            o.transport = Some(e);
            o.skipped = hrp.tasks.len() as u32;
            return o;
        }
    };
    send(Event::Phase { host: host.clone(), role: Some(role.clone()), phase: "gather".into(), seconds: tg.elapsed().as_secs_f64() });
    let facts = match parse_facts(&out.stdout_text(), &out.stderr_text(), &hrp.tasks) {
        Ok(f) => f,
        Err(e) => {
            o.failed = 1;
            o.error = Some(format!("[{role}] gathering facts: {e}"));
            return o;
        }
    };
    sums.learn(&hrp.tasks, wants, &facts);
    let decisions = decide_role(&hrp.tasks, wants, &facts);
    let handlers = pending_handlers(&hrp.tasks, &decisions, &facts);

    if plan_only {
        for (i, (task, d)) in hrp.tasks.iter().zip(&decisions).enumerate() {
            let lines = describe(task, &wants[i], d);
            o.plan.extend(lines);
            match &d.verdict {
                Verdict::Change(_) => o.changed += 1,
                Verdict::Skip(_) => o.skipped += 1,
                Verdict::Fail(_) => o.failed += 1,
                Verdict::Ok | Verdict::Wait => o.ok += 1,
            }
            o.warnings += d.warnings.len() as u32;
        }
        for (unit, by) in &handlers {
            o.plan.push(format!("restart {unit} ({by})"));
        }
        send(Event::Plan { host: host.clone(), role: role.clone(), lines: o.plan.clone() });
        return o;
    }

    // A state ezk must not overwrite fails the host before anything is touched.
    let fails: Vec<String> = hrp
        .tasks
        .iter()
        .zip(&decisions)
        .filter_map(|(task, d)| match &d.verdict {
            Verdict::Fail(why) => Some(format!("{} ({}): {why}", task.name, task.origin)),
            _ => None,
        })
        .collect();
    if !fails.is_empty() {
        for f in &fails {
            send(task_ev(0, TaskStatus::Failed, f.clone()).with_task_name(f));
        }
        o.failed = fails.len() as u32;
        o.skipped = hrp.tasks.len() as u32 - o.failed;
        o.error = Some(fails.join("; "));
        return o;
    }

    // A handler with no changed task before it is a restart an interrupted run owes.
    let needs_apply = decisions.iter().any(|d| d.needs_apply()) || !handlers.is_empty();
    if !needs_apply {
        for (i, d) in decisions.iter().enumerate() {
            let (st, msg) = match &d.verdict {
                Verdict::Skip(why) => (TaskStatus::Skipped, why.clone()),
                _ if !d.warnings.is_empty() => (TaskStatus::Warning, d.warnings.join("; ")),
                _ => (TaskStatus::Ok, String::new()),
            };
            tally(&mut o, st, d.warnings.len());
            send(task_ev(i, st, msg));
        }
        return o;
    }

    // Round trip 2: apply.
    let a = apply_script(&hrp.tasks, wants, &decisions, &handlers);
    let wait_secs: u64 = hrp
        .tasks
        .iter()
        .map(|t| match &t.action {
            Action::WaitFor { timeout_secs, .. } => *timeout_secs,
            _ => 0,
        })
        .sum();
    send(Event::Command { host: host.clone(), role: role.clone(), what: "apply".into(), script: body(&a.script).to_string() });
    let script = if trace { traced(&a.script) } else { a.script };
    let ta = std::time::Instant::now();
    let out = t.run(&script, a.stdin, timeout + Duration::from_secs(wait_secs)).await;
    send(Event::Phase { host: host.clone(), role: Some(role.clone()), phase: "apply".into(), seconds: ta.elapsed().as_secs_f64() });
    if let Ok(out) = &out {
        for (mark, secs) in parse_trace(&out.stdout_text()) {
            // "6 upload" → "  6 etcd binary: upload" (the time from that mark to the next).
            let (i, stage) = mark.split_once(' ').unwrap_or((&mark, ""));
            let name = i.parse::<usize>().ok().map(|i| hrp.tasks.get(i).map(|t| t.name.as_str()).unwrap_or("handler"));
            let phase = match (name, stage) {
                (Some(n), "") => format!("  {i} {n}"),
                (Some(n), st) => format!("  {i} {n}: {st}"),
                (None, _) => format!("  {mark}"),
            };
            send(Event::Phase { host: host.clone(), role: Some(role.clone()), phase, seconds: secs });
        }
    }
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            o.error = Some(e.to_string());
            o.failed = 1;
            o.transport = Some(e);
            return o;
        }
    };
    let res = parse_results(&out.stdout_text());
    let mut stopped = false;
    for (i, d) in decisions.iter().enumerate() {
        let task = &hrp.tasks[i];
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
        tally(&mut o, st, warnings.len());
        send(task_ev(i, st, msg));
    }
    for (i, unit) in &a.handlers {
        if let Some(r) = res.tasks.get(i) {
            let st = if r.status == "changed" { TaskStatus::Changed } else { TaskStatus::Failed };
            if st == TaskStatus::Failed {
                o.error = Some(format!("restart {unit}: {}", r.message));
            }
            tally(&mut o, st, 0);
            send(task_ev(*i, st, format!("restart {unit}")));
        }
    }
    if !res.done && o.error.is_none() {
        o.failed += 1;
        o.error = Some(format!(
            "[{role}] apply stopped early (exit code {}): {}",
            out.code,
            out.stderr_text().trim().chars().take(500).collect::<String>()
        ));
    }
    o
}

fn tally(o: &mut RoleOutcome, st: TaskStatus, warnings: usize) {
    o.warnings += warnings as u32;
    match st {
        TaskStatus::Ok | TaskStatus::Warning => o.ok += 1,
        TaskStatus::Changed => o.changed += 1,
        TaskStatus::Failed => o.failed += 1,
        TaskStatus::Skipped => o.skipped += 1,
    }
}

trait WithName {
    fn with_task_name(self, n: &str) -> Self;
}
impl WithName for Event {
    fn with_task_name(self, n: &str) -> Self {
        match self {
            Event::Task { host, role, status, message, .. } => {
                Event::Task { host, role, task: n.split(" (").next().unwrap_or(n).to_string(), status, message }
            }
            e => e,
        }
    }
}
