//! Decide, the pure step between the two round trips: the ONE place that compares gathered
//! facts with a task's desired state and decides "already so → ok/skip", "change → these
//! changes", or "cannot → fail". Apply mode turns the changes into script steps (`apply`); plan
//! mode describes the very same changes (`report::plan_lines`), so `--plan` cannot claim
//! something the run would not do, or hide what it would.
//!
//! One file by design: it is the one place that decides, so plan and apply cannot disagree (its
//! tests close the file).

use super::desired::Desired;
use super::gather::{Facts, ModuleState, PathFact, PathKind, TaskFacts};
use super::pending::INTERRUPTED;
use crate::plan::action::{Action, Task, UnitState};

/// One difference the apply will remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The file does not exist (or is a link): write it.
    NewFile { size: u64 },
    /// The content differs: write it. `old` is the current text when gathered (plan mode).
    Content { old: Option<Vec<u8>> },
    Mode { from: u32, to: u32 },
    Owner { from: String, to: String },
    CreateDir,
    Link { from: Option<String>, to: String },
    Remove,
    SysctlValue { key: String, from: String, to: String },
    LoadModule(String),
    Install(Vec<String>),
    Enable,
    Disable,
    Start,
    Stop,
    /// Restart: `by` names the task(s) whose change notified it, "state: restarted", or
    /// `pending::INTERRUPTED` (a marker left by an apply that died before restarting).
    Restart { by: String },
    DaemonReload,
    Run,
    /// Run, though the guard was met when gathered: the guard names `path`, which a task
    /// before it in the role changes first, so that answer is stale (the apply checks the
    /// guard again and reports `skipped` when it still holds).
    Recheck { path: String },
}

/// The verdict for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Already as wanted.
    Ok,
    /// A guard (`creates`/`unless`) says it is done.
    Skip(String),
    /// These differences will be (or, in plan mode, would be) applied.
    Change(Vec<Change>),
    /// A wait_for whose target does not answer yet: runs in apply, changes nothing.
    Wait,
    /// The host is in a state ezk must not overwrite (names why).
    Fail(String),
}

/// The verdict plus non-fatal warnings (refused sysctl keys, unavailable modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub warnings: Vec<String>,
}

impl Decision {
    fn ok() -> Self {
        Decision { verdict: Verdict::Ok, warnings: Vec::new() }
    }
    /// The changes (empty unless `Verdict::Change`).
    pub fn changes(&self) -> &[Change] {
        match &self.verdict {
            Verdict::Change(c) => c,
            _ => &[],
        }
    }
    /// Whether this task makes the apply round trip necessary.
    pub fn needs_apply(&self) -> bool {
        matches!(self.verdict, Verdict::Change(_) | Verdict::Wait)
    }
}

/// Whether a path is a systemd unit file (its change requires daemon-reload).
pub fn is_unit_path(path: &str) -> bool {
    path.contains("/systemd/system/") || path.starts_with("/lib/systemd/") || path.starts_with("/usr/lib/systemd/")
}

/// Whether changing this action changes what systemd loads: a unit file or drop-in written
/// or removed (a removed drop-in stays in force until the next daemon-reload).
pub fn touches_unit(action: &Action) -> bool {
    match action {
        Action::File(f) => is_unit_path(&f.path),
        Action::Absent { path } => is_unit_path(path),
        _ => false,
    }
}

fn file_changes(fact: &PathFact, want: &Desired, mode: u32, owner: &str, group: &str, tf: &TaskFacts) -> Result<Vec<Change>, String> {
    let mut ch = Vec::new();
    let (sha, size) = match want {
        Desired::File { sha256, size, .. } => (sha256.as_str(), *size),
        Desired::Nothing => ("", 0),
    };
    match fact.kind {
        PathKind::None | PathKind::Link => return Ok(vec![Change::NewFile { size }]),
        PathKind::Dir | PathKind::Other => return Err("exists and is not a regular file".into()),
        PathKind::File => {}
    }
    if fact.sha256.as_deref() != Some(sha) {
        ch.push(Change::Content { old: tf.content.clone() });
    }
    if fact.mode != mode {
        ch.push(Change::Mode { from: fact.mode, to: mode });
    }
    if fact.owner != owner || fact.group != group {
        ch.push(Change::Owner { from: format!("{}:{}", fact.owner, fact.group), to: format!("{owner}:{group}") });
    }
    Ok(ch)
}

/// A certificate file must be valid by the clock of the host it goes to: one whose clock is
/// hours behind would refuse it as "not yet valid" (its not-before is backdated one hour only,
/// see `pki`), one far ahead as expired, and each service using it would fail with a TLS error
/// far from the cause. Refused here, before anything changes, naming both times and the fix.
fn cert_valid_on_host(want: &Desired, host_clock: Option<i64>) -> Result<(), String> {
    let (Some(bytes), Some(now)) = (want.inline_bytes(), host_clock) else { return Ok(()) };
    if !bytes.starts_with(b"-----BEGIN CERTIFICATE-----") {
        return Ok(());
    }
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes).flatten() {
        let Ok(cert) = pem.parse_x509() else { continue };
        let (from, until) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
        let subject = cert.subject().to_string();
        if now < from {
            return Err(format!(
                "certificate {subject} is valid from {} but this host's clock reads {} ({} behind): it would be refused here as not yet valid. Set the host's clock (NTP, chrony) and run again",
                utc(from),
                utc(now),
                span(from - now)
            ));
        }
        if now > until {
            return Err(format!(
                "certificate {subject} expires {} but this host's clock reads {} ({} past it): it would be refused here as expired. Set the host's clock (NTP, chrony) and run again",
                utc(until),
                utc(now),
                span(now - until)
            ));
        }
    }
    Ok(())
}

/// `2026-12-06 14:03:10 UTC`.
fn utc(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", d.year(), u8::from(d.month()), d.day(), d.hour(), d.minute(), d.second()))
        .unwrap_or_else(|_| format!("@{t}"))
}

/// `2h 58m`, `12m 5s`, `3d 4h`.
fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

fn norm(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unit_enabled(word: &str) -> bool {
    matches!(word, "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated")
}

/// Units of this role whose restart an interrupted apply still owes (markers on the host),
/// each once, in task order: they count as notified from the role's start.
fn owed_restarts(tasks: &[Task], facts: &Facts) -> Vec<(String, String)> {
    let mut owed: Vec<(String, String)> = Vec::new();
    for i in 0..tasks.len() {
        for u in facts.get(&i).map(|f| f.pending_restarts.as_slice()).unwrap_or_default() {
            if !owed.iter().any(|(x, _)| x == u) {
                owed.push((u.clone(), INTERRUPTED.to_string()));
            }
        }
    }
    owed
}

/// Decide every task of a role on one host from its facts. Pure: same input, same decisions.
pub fn decide_role(tasks: &[Task], desired: &[Desired], facts: &Facts) -> Vec<Decision> {
    let empty = TaskFacts::default();
    let mut out: Vec<Decision> = Vec::with_capacity(tasks.len());
    // Units notified by tasks predicted to change, with the names of those tasks; restarts
    // owed by an interrupted run come first.
    let mut notified: Vec<(String, String)> = owed_restarts(tasks, facts);
    // A unit file that landed without the daemon-reload that should have followed it.
    let mut unit_file_changed = facts.values().any(|f| f.pending_reload);
    // Paths that tasks predicted to change write or remove, in task order.
    let mut written: Vec<&str> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let tf = facts.get(&i).unwrap_or(&empty);
        let none = PathFact::none();
        let path = tf.path.as_ref().unwrap_or(&none);
        let mut d = Decision::ok();
        let mut changes = Vec::new();
        let mut fail = None;
        match &task.action {
            Action::File(f) => match file_changes(path, &desired[i], f.mode, &f.owner, &f.group, tf)
                .and_then(|c| cert_valid_on_host(&desired[i], tf.host_clock).map(|()| c))
            {
                Ok(c) => {
                    if !c.is_empty() && touches_unit(&task.action) {
                        unit_file_changed = true;
                    }
                    changes = c;
                }
                Err(e) => fail = Some(format!("{}: {e}", f.path)),
            },
            Action::Directory { path: p, mode, owner, group } => match path.kind {
                PathKind::None => changes.push(Change::CreateDir),
                PathKind::Dir => {
                    if path.mode != *mode {
                        changes.push(Change::Mode { from: path.mode, to: *mode });
                    }
                    if path.owner != *owner || path.group != *group {
                        changes.push(Change::Owner { from: format!("{}:{}", path.owner, path.group), to: format!("{owner}:{group}") });
                    }
                }
                _ => fail = Some(format!("{p}: exists and is not a directory")),
            },
            Action::Link { path: p, target } => match path.kind {
                PathKind::Link if path.link_target.as_deref() == Some(target.as_str()) => {}
                PathKind::Link | PathKind::None | PathKind::File => {
                    changes.push(Change::Link { from: path.link_target.clone(), to: target.clone() })
                }
                _ => fail = Some(format!("{p}: exists and is a directory, not a link")),
            },
            Action::Absent { path: p } => {
                if path.kind != PathKind::None {
                    changes.push(Change::Remove);
                    if is_unit_path(p) {
                        unit_file_changed = true;
                    }
                }
            }
            Action::Sysctl { file, entries } => {
                match file_changes(path, &desired[i], 0o644, "root", "root", tf) {
                    Ok(c) => changes = c,
                    Err(e) => fail = Some(format!("{file}: {e}")),
                }
                for (k, v) in entries {
                    match tf.sysctl.iter().find(|s| &s.key == k) {
                        Some(s) => match &s.value {
                            None => d.warnings.push(format!("sysctl {k}: unknown to this kernel")),
                            Some(cur) if norm(cur) == norm(v) => {}
                            Some(cur) if s.writable => {
                                changes.push(Change::SysctlValue { key: k.clone(), from: cur.clone(), to: norm(v) })
                            }
                            Some(cur) => d.warnings.push(format!("sysctl {k}: is {cur}, wanted {v}, but it is read-only here")),
                        },
                        None => d.warnings.push(format!("sysctl {k}: not gathered")),
                    }
                }
            }
            Action::Modprobe { file, modules } => {
                match file_changes(path, &desired[i], 0o644, "root", "root", tf) {
                    Ok(c) => changes = c,
                    Err(e) => fail = Some(format!("{file}: {e}")),
                }
                for m in modules {
                    match tf.modules.iter().find(|(n, _)| n == m).map(|x| x.1) {
                        Some(ModuleState::Loaded) => {}
                        Some(ModuleState::Available) => changes.push(Change::LoadModule(m.clone())),
                        _ => d.warnings.push(format!("module {m}: not loaded and cannot be loaded here")),
                    }
                }
            }
            Action::Package { names, offline } => {
                let missing: Vec<String> = names
                    .iter()
                    .filter(|n| !tf.packages.iter().any(|(p, ok)| p == *n && *ok))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    if *offline {
                        fail = Some(format!("packages missing and INSTALL_SOURCE is offline (install them first): {}", missing.join(" ")));
                    } else {
                        changes.push(Change::Install(missing));
                    }
                }
            }
            Action::Service { unit, enabled, state, .. } => {
                let (en, act) = tf.unit.clone().unwrap_or_default();
                if *enabled && !unit_enabled(&en) {
                    changes.push(Change::Enable);
                }
                if !*enabled && en == "enabled" {
                    changes.push(Change::Disable);
                }
                let active = act == "active";
                match state {
                    UnitState::Started if !active => changes.push(Change::Start),
                    UnitState::Stopped if active => changes.push(Change::Stop),
                    UnitState::Restarted => changes.push(Change::Restart { by: "state: restarted".into() }),
                    UnitState::Started => {
                        let by: Vec<&str> = notified.iter().filter(|(u, _)| u == unit).map(|(_, t)| t.as_str()).collect();
                        if !by.is_empty() {
                            changes.push(Change::Restart { by: by.join(", ") });
                        }
                    }
                    UnitState::Stopped => {}
                }
                notified.retain(|(u, _)| u != unit);
            }
            Action::DaemonReload => {
                if unit_file_changed {
                    changes.push(Change::DaemonReload);
                    unit_file_changed = false;
                }
            }
            Action::Command { creates, unless, .. } => match tf.guard_met {
                Some(true) => match stale_guard(&written, creates.as_deref(), unless.as_deref()) {
                    Some(p) => changes.push(Change::Recheck { path: p.to_string() }),
                    None => d.verdict = Verdict::Skip("guard: already done".into()),
                },
                _ => changes.push(Change::Run),
            },
            Action::WaitFor { .. } => {
                if tf.probe_ok != Some(true) {
                    d.verdict = Verdict::Wait;
                }
            }
        }
        if let Some(f) = fail {
            d.verdict = Verdict::Fail(f);
        } else if !changes.is_empty() {
            if let Some(p) = written_path(&task.action) {
                written.push(p);
            }
            for u in &task.notify {
                notified.push((u.clone(), task.name.clone()));
            }
            d.verdict = Verdict::Change(changes);
        }
        out.push(d);
    }
    out
}

/// The path a file-like task writes or removes (what a later guard may read).
fn written_path(action: &Action) -> Option<&str> {
    match action {
        Action::File(f) => Some(&f.path),
        Action::Absent { path } | Action::Link { path, .. } => Some(path),
        Action::Sysctl { file, .. } | Action::Modprobe { file, .. } => Some(file),
        _ => None,
    }
}

/// The first of `written` that a command's guard names: its gathered answer predates that
/// change (guards are gathered in the role's first round trip, before its uploads).
fn stale_guard<'a>(written: &[&'a str], creates: Option<&str>, unless: Option<&str>) -> Option<&'a str> {
    written
        .iter()
        .copied()
        .find(|p| [creates, unless].into_iter().flatten().any(|g| g.contains(p)))
}

/// Units still notified after the last task (no `Service` task of theirs followed the change,
/// or the restart an interrupted run owes): restarted at the end, as Ansible handlers are.
pub fn pending_handlers(tasks: &[Task], decisions: &[Decision], facts: &Facts) -> Vec<(String, String)> {
    let mut pending: Vec<(String, String)> = owed_restarts(tasks, facts);
    for (task, d) in tasks.iter().zip(decisions) {
        if let Action::Service { unit, .. } = &task.action {
            pending.retain(|(u, _)| u != unit);
        }
        if !d.changes().is_empty() {
            for u in &task.notify {
                match pending.iter_mut().find(|(x, _)| x == u) {
                    Some((_, by)) => {
                        by.push_str(", ");
                        by.push_str(&task.name);
                    }
                    None => pending.push((u.clone(), task.name.clone())),
                }
            }
        }
    }
    pending
}

/// Every decision of a role on one host, and the handler restarts due after its last task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub decisions: Vec<Decision>,
    pub handlers: Vec<(String, String)>,
}

impl Decided {
    /// Whether round trip 2 is needed. A handler with no changed task before it is a restart
    /// an interrupted run owes: it needs the apply too.
    pub fn needs_apply(&self) -> bool {
        self.decisions.iter().any(|d| d.needs_apply()) || !self.handlers.is_empty()
    }

    /// Whether the apply restarts a service that runs now (a task's restart, or a handler):
    /// what a role's `serial` limit counts. A first start is not a restart.
    pub fn restarts(&self) -> bool {
        !self.handlers.is_empty()
            || self
                .decisions
                .iter()
                .any(|d| d.changes().iter().any(|c| matches!(c, Change::Restart { .. })))
    }
}

/// Decide a role's tasks and its handler restarts (`decide_role`, `pending_handlers`).
pub fn decide(tasks: &[Task], desired: &[Desired], facts: &Facts) -> Decided {
    let decisions = decide_role(tasks, desired, facts);
    let handlers = pending_handlers(tasks, &decisions, facts);
    Decided { decisions, handlers }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use crate::exec::desired::FileSource;

    fn cert_from(not_before: i64) -> Desired {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["etcd".to_string()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_before + 86400).unwrap();
        let pem = p.self_signed(&key).unwrap().pem().into_bytes();
        Desired::File { sha256: String::new(), size: pem.len() as u64, source: FileSource::Inline(pem.into()), diffable: true }
    }

    #[test]
    fn a_certificate_not_yet_valid_by_the_hosts_clock_is_refused_naming_both_times() {
        let t = 1_780_000_000;
        let want = cert_from(t);
        let err = cert_valid_on_host(&want, Some(t - 3 * 3600 - 120)).unwrap_err();
        assert!(err.contains("3h 2m behind") && err.contains("not yet valid") && err.contains("Set the host's clock"), "{err}");
        assert!(cert_valid_on_host(&want, Some(t + 60)).is_ok());
        let err = cert_valid_on_host(&want, Some(t + 2 * 86400)).unwrap_err();
        assert!(err.contains("expired") && err.contains("1d 0h past it"), "{err}");
        // No clock gathered (a date without %N), or not a certificate: nothing to say.
        assert!(cert_valid_on_host(&want, None).is_ok());
        let plain = Desired::File { sha256: String::new(), size: 1, source: FileSource::Inline(b"x".as_slice().into()), diffable: true };
        assert!(cert_valid_on_host(&plain, Some(0)).is_ok());
    }
}
