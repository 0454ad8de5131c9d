//! Phases: an operation is an ordered list of named steps over its own state, run by [`run`].
//!
//! Each phase has a title and a `run`; optionally
//! - `prepare`: gathers what the phase needs (before `should_run` decides);
//! - `should_run` (set with `.when(…)`): false skips the phase (an option not given);
//! - `dry_run`: what the phase does under `--plan` instead of `run` (asking for confirmation
//!   and closing messages do nothing). Work on hosts has none: it runs the same way, and the
//!   executor's pipeline is the one place that says "would" (`exec::pipeline`: gather and decide
//!   as for real, then describe the decisions instead of applying them), so `--plan` cannot
//!   claim what the run would not do;
//! - `cleanup`: runs when the operation ends, however it ends, for every phase that started,
//!   last first.
//!
//! A phase returns [`Flow::Next`] to go on, or [`Flow::Stop`] with the exit code the
//! operation ends with (a cancelled confirmation, a step that failed on a host). An error ends
//! the operation too; `main` reports it.

use super::Error;

/// What the operation does after a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Next,
    /// End the operation with this exit code.
    Stop(i32),
}

/// A phase's result.
pub type Step = Result<Flow, Error>;

/// A `prepare` hook.
type Prepare<S> = fn(&mut S) -> Result<(), Error>;

/// One named phase of an operation whose state is `S`.
pub struct Phase<S> {
    pub title: &'static str,
    run: fn(&mut S) -> Step,
    prepare: Option<Prepare<S>>,
    should_run: Option<fn(&S) -> bool>,
    dry_run: Option<fn(&mut S) -> Step>,
    cleanup: Option<fn(&mut S)>,
}

impl<S> Phase<S> {
    pub const fn new(title: &'static str, run: fn(&mut S) -> Step) -> Self {
        Phase { title, run, prepare: None, should_run: None, dry_run: None, cleanup: None }
    }
    pub const fn prepare(mut self, f: Prepare<S>) -> Self {
        self.prepare = Some(f);
        self
    }
    pub const fn when(mut self, f: fn(&S) -> bool) -> Self {
        self.should_run = Some(f);
        self
    }
    pub const fn dry_run(mut self, f: fn(&mut S) -> Step) -> Self {
        self.dry_run = Some(f);
        self
    }
    pub const fn cleanup(mut self, f: fn(&mut S)) -> Self {
        self.cleanup = Some(f);
        self
    }
}

/// A `dry_run` for phases that do nothing under `--plan`.
pub fn skip<S>(_: &mut S) -> Step {
    Ok(Flow::Next)
}

/// Run `phases` in order on `state` (`plan_only`: `--plan`, see the module doc). Returns the
/// exit code: the first `Stop`'s, else 0.
pub fn run<S>(phases: &[Phase<S>], state: &mut S, plan_only: bool) -> Result<i32, Error> {
    let mut ran: Vec<&Phase<S>> = Vec::new();
    let result = run_each(phases, state, plan_only, &mut ran);
    for p in ran.iter().rev() {
        if let Some(cleanup) = p.cleanup {
            cleanup(state);
        }
    }
    result
}

fn run_each<'p, S>(
    phases: &'p [Phase<S>],
    state: &mut S,
    plan_only: bool,
    ran: &mut Vec<&'p Phase<S>>,
) -> Result<i32, Error> {
    for p in phases {
        if let Some(prepare) = p.prepare {
            prepare(state)?;
        }
        if p.should_run.is_some_and(|should| !should(state)) {
            continue;
        }
        ran.push(p);
        let run = match p.dry_run {
            Some(dry) if plan_only => dry,
            _ => p.run,
        };
        if let Flow::Stop(code) = run(state)? {
            return Ok(code);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<&'static str>);

    const PHASES: &[Phase<Log>] = &[
        Phase::new("a", |l: &mut Log| {
            l.0.push("a");
            Ok(Flow::Next)
        })
        .cleanup(|l: &mut Log| l.0.push("clean a")),
        Phase::new("b", |l: &mut Log| {
            l.0.push("b");
            Ok(Flow::Next)
        })
        .dry_run(|l: &mut Log| {
            l.0.push("would b");
            Ok(Flow::Next)
        }),
        Phase::new("skipped", |l: &mut Log| {
            l.0.push("never");
            Ok(Flow::Next)
        })
        .when(|_| false),
        Phase::new("stop", |l: &mut Log| {
            l.0.push("stop");
            Ok(Flow::Stop(2))
        }),
        Phase::new("after stop", |l: &mut Log| {
            l.0.push("never");
            Ok(Flow::Next)
        }),
    ];

    #[test]
    fn phases_run_in_order_plan_takes_dry_run_stop_ends_and_cleanup_runs_last() {
        let mut l = Log::default();
        assert_eq!(run(PHASES, &mut l, false).unwrap(), 2);
        assert_eq!(l.0, ["a", "b", "stop", "clean a"]);
        let mut l = Log::default();
        assert_eq!(run(PHASES, &mut l, true).unwrap(), 2);
        assert_eq!(l.0, ["a", "would b", "stop", "clean a"]);
    }

    #[test]
    fn an_error_ends_the_operation_and_still_cleans_up() {
        let phases: &[Phase<Log>] = &[
            Phase::new("a", |l: &mut Log| {
                l.0.push("a");
                Ok(Flow::Next)
            })
            .cleanup(|l: &mut Log| l.0.push("clean a")),
            Phase::new("fails", |_| Err("boom".into())),
        ];
        let mut l = Log::default();
        assert_eq!(run(phases, &mut l, false).unwrap_err().to_string(), "boom");
        assert_eq!(l.0, ["a", "clean a"]);
    }
}
