//! Progress events: the runner's host tasks send these on a channel; one monitor thread owns
//! the terminal and the run log, so concurrent hosts never interleave half-lines.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Outcome of one task on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TaskStatus {
    Ok,
    Changed,
    Warning,
    Failed,
    Skipped,
}

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    WaveStart { index: usize, roles: Vec<String>, units: usize },
    Task { host: String, role: String, task: String, status: TaskStatus, message: String },
    /// Plan mode: what would change on a host for a role.
    Plan { host: String, role: String, lines: Vec<String> },
    /// `-v`: a remote command (script text).
    Command { host: String, role: String, what: String, script: String },
    HostRoleDone { host: String, role: String },
    /// Timeline (`-v` and the run log): one phase of a host's work ended (`connect`, `gather`,
    /// `apply`, with the role; with `-vv` also each task of an apply) after `seconds`; where a
    /// slow run spends its time.
    Phase { host: String, role: Option<String>, phase: String, seconds: f64 },
    HostFailed { host: String, error: String, unreachable: bool },
    Note(String),
}

/// Where the monitor writes.
pub struct MonitorOptions {
    pub progress: bool,
    pub verbose: u8,
    /// Human output to stderr (stdout carries JSON).
    pub to_stderr: bool,
    pub log: Option<File>,
}

/// The monitor: a thread that drains events until every sender is dropped.
pub struct Monitor {
    handle: JoinHandle<()>,
}

impl Monitor {
    /// Start the monitor; send events on the returned sender.
    pub fn start(opts: MonitorOptions) -> (Sender<Event>, Monitor) {
        let (tx, rx) = channel();
        let handle = std::thread::spawn(move || monitor(rx, opts));
        (tx, Monitor { handle })
    }
    /// Wait for the monitor to drain (drop all senders first).
    pub fn finish(self) {
        let _ = self.handle.join();
    }
}

/// Whether progress bars suit the output (a terminal).
pub fn is_tty(to_stderr: bool) -> bool {
    if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() }
}

fn line_for(ev: &Event, verbose: u8) -> Option<String> {
    Some(match ev {
        Event::WaveStart { index, roles, units } => format!("wave {}: {} ({units} host-roles)", index + 1, roles.join(", ")),
        Event::Task { host, role, task, status, message } => {
            if *status == TaskStatus::Ok && verbose == 0 {
                return None;
            }
            let st = format!("{status:?}").to_lowercase();
            if message.is_empty() {
                format!("{host} [{role}] {task}: {st}")
            } else {
                format!("{host} [{role}] {task}: {st}: {message}")
            }
        }
        Event::Plan { host, role, lines } => {
            if lines.is_empty() {
                return None;
            }
            let mut s = format!("{host} [{role}] would change:");
            for l in lines {
                s.push_str("\n  ");
                s.push_str(l);
            }
            s
        }
        Event::Command { host, role, what, script } => {
            if verbose == 0 {
                return None;
            }
            format!("{host} [{role}] {what}:\n{script}")
        }
        Event::HostRoleDone { .. } => return None,
        Event::Phase { host, role, phase, seconds } => {
            if verbose == 0 {
                return None;
            }
            match role {
                Some(r) => format!("{host} [{r}] {phase} {:.0} ms", seconds * 1000.0),
                None => format!("{host} {phase} {:.0} ms", seconds * 1000.0),
            }
        }
        Event::HostFailed { host, error, unreachable } => {
            // Transport errors already start with the host name.
            let error = error.strip_prefix(&format!("{host}: ")).unwrap_or(error);
            format!("{host}: {} {error}", if *unreachable { "UNREACHABLE" } else { "FAILED" })
        }
        Event::Note(s) => s.clone(),
    })
}

fn monitor(rx: Receiver<Event>, mut opts: MonitorOptions) {
    let multi = MultiProgress::with_draw_target(if opts.progress {
        if opts.to_stderr { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::stdout() }
    } else {
        ProgressDrawTarget::hidden()
    });
    let mut bar: Option<ProgressBar> = None;
    let style = ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
        .expect("static template")
        .progress_chars("=> ");
    // Log lines carry the time since the run started, so the log is a per-host timeline.
    let t0 = std::time::Instant::now();
    for ev in rx {
        if let Some(log) = opts.log.as_mut()
            && let Some(l) = line_for(&ev, 2)
        {
            let _ = writeln!(log, "+{:.3}s {l}", t0.elapsed().as_secs_f64());
        }
        match &ev {
            Event::WaveStart { index, roles, units } if opts.progress => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
                let b = multi.add(ProgressBar::new(*units as u64));
                b.set_style(style.clone());
                b.set_prefix(format!("wave {} {}", index + 1, roles.join(",")));
                b.enable_steady_tick(Duration::from_millis(120));
                bar = Some(b);
                continue;
            }
            Event::HostRoleDone { host, role } => {
                if let Some(b) = &bar {
                    b.inc(1);
                    b.set_message(format!("{host} {role}"));
                }
                continue;
            }
            _ => {}
        }
        if let Some(l) = line_for(&ev, opts.verbose) {
            if opts.progress {
                let _ = multi.println(l);
            } else if opts.to_stderr {
                eprintln!("{l}");
            } else {
                println!("{l}");
            }
        }
    }
    if let Some(b) = bar.take() {
        b.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_only_with_verbose_and_ok_tasks_quiet() {
        let cmd = Event::Command { host: "h".into(), role: "r".into(), what: "apply".into(), script: "systemctl restart etcd".into() };
        assert_eq!(line_for(&cmd, 0), None);
        assert!(line_for(&cmd, 1).unwrap().contains("systemctl restart etcd"));
        let ok = Event::Task { host: "h".into(), role: "r".into(), task: "t".into(), status: TaskStatus::Ok, message: String::new() };
        assert_eq!(line_for(&ok, 0), None);
        let changed = Event::Task { host: "h".into(), role: "r".into(), task: "t".into(), status: TaskStatus::Changed, message: String::new() };
        assert_eq!(line_for(&changed, 0).unwrap(), "h [r] t: changed");
    }

    #[test]
    fn monitor_writes_every_event_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.log");
        let (tx, m) = Monitor::start(MonitorOptions { progress: false, verbose: 0, to_stderr: true, log: Some(File::create(&path).unwrap()) });
        tx.send(Event::HostFailed { host: "h1".into(), error: "h1: unreachable: refused".into(), unreachable: true }).unwrap();
        tx.send(Event::Plan { host: "h2".into(), role: "etcd".into(), lines: vec!["restart etcd (conf)".into()] }).unwrap();
        drop(tx);
        m.finish();
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(log.contains("h1: UNREACHABLE unreachable: refused"), "{log}");
        assert!(log.starts_with("+0.0"), "log lines carry the time since the start: {log}");
        assert!(log.contains("h2 [etcd] would change:\n  restart etcd (conf)"), "{log}");
    }
}
