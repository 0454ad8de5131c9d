//! Data-driven cases of the executor's pipeline without a host: `tests/fixtures/exec-guard/<case>/`
//! holds the input, `tasks.yml` (a role's tasks, in a compact form of `plan::action`) and
//! `facts.txt` (what the host's gather printed), and what must come out:
//! - `expected.txt`: the `--plan` lines, then `apply: yes|no`;
//! - `decisions.txt` (optional): each task's decision (`exec::decide`), one line per task;
//! - `apply.txt` (optional): the apply script after its fixed prelude, exactly, under a first
//!   line counting the stdin parts (changed files' bytes travel there, never in the script);
//! - `gather.txt` (optional): the gather script after its prelude (plan mode off, no known
//!   checksums).
//!
//! Adding a case adds no code. `EZK_UPDATE_FIXTURES=1` (re)writes `decisions.txt`,
//! `apply.txt` and `gather.txt` where a case has them, and `decisions.txt` plus `apply.txt`
//! (when the case applies) where it has none: review the diff!
//!
//! In `facts.txt`, `@@hash <path> <text>` stands for the `sha256sum` line of a file whose
//! content is `<text>` (with `\n` escapes), so cases need no precomputed hashes.

use std::path::Path;

use ezk::exec::apply::{apply_script, body};
use ezk::exec::decide::{Change, Decision, Verdict, decide_role, pending_handlers};
use ezk::exec::desired::desired_state;
use ezk::exec::gather::{gather_body, gather_script, parse_facts};
use ezk::exec::report::plan_lines::describe;
use ezk::plan::action::{Action, Content, FileSpec, Task, UnitState, WaitTarget};
use serde_yaml::Value;
use sha2::{Digest, Sha256};

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(String::from)
}

fn mode(v: &Value, default: u32) -> u32 {
    s(v, "mode").map(|m| u32::from_str_radix(&m, 8).expect("octal mode")).unwrap_or(default)
}

fn action(t: &Value) -> Action {
    if let Some(f) = t.get("file") {
        return Action::File(FileSpec {
            path: s(f, "path").unwrap(),
            content: Content::Inline(s(f, "content").unwrap().into_bytes().into()),
            mode: mode(f, 0o644),
            owner: s(f, "owner").unwrap_or("root".into()),
            group: s(f, "group").unwrap_or("root".into()),
            secret: f.get("secret").and_then(|x| x.as_bool()).unwrap_or(false),
        });
    }
    if let Some(d) = t.get("directory") {
        return Action::Directory { path: s(d, "path").unwrap(), mode: mode(d, 0o755), owner: "root".into(), group: "root".into() };
    }
    if let Some(l) = t.get("link") {
        return Action::Link { path: s(l, "path").unwrap(), target: s(l, "target").unwrap() };
    }
    if let Some(a) = t.get("absent") {
        return Action::Absent { path: s(a, "path").unwrap() };
    }
    if let Some(u) = t.get("service") {
        let state = match s(u, "state").as_deref() {
            Some("stopped") => UnitState::Stopped,
            Some("restarted") => UnitState::Restarted,
            _ => UnitState::Started,
        };
        return Action::Service { unit: s(u, "unit").unwrap(), enabled: u.get("enabled").and_then(|x| x.as_bool()).unwrap_or(true), state, last_if: s(u, "restart_last_if") };
    }
    if t.get("daemon_reload").is_some() {
        return Action::DaemonReload;
    }
    if let Some(c) = t.get("command") {
        return Action::Command { cmd: s(c, "cmd").unwrap().into(), creates: s(c, "creates"), unless: s(c, "unless").map(Into::into), unless_slow: c.get("unless_slow").and_then(|x| x.as_bool()).unwrap_or(false) };
    }
    if let Some(w) = t.get("wait_for") {
        let (host, port) = s(w, "tcp").unwrap().rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse().unwrap())).unwrap();
        return Action::WaitFor { target: WaitTarget::Tcp { host, port }, timeout_secs: 5, diagnose: None };
    }
    if let Some(p) = t.get("package") {
        let names = p.get("names").unwrap().as_sequence().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        return Action::Package { names, offline: p.get("offline").and_then(|x| x.as_bool()).unwrap_or(false) };
    }
    panic!("unknown task form: {t:?}");
}

fn tasks(path: &Path) -> Vec<Task> {
    let v: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|t| Task {
            name: s(t, "name").unwrap(),
            origin: format!("{}", path.display()),
            action: action(t),
            notify: t.get("notify").and_then(|n| n.as_sequence()).map(|n| n.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default(),
        })
        .collect()
}

fn facts_text(raw: &str) -> String {
    raw.lines()
        .map(|l| match l.strip_prefix("@@hash ") {
            Some(rest) => {
                let (path, text) = rest.split_once(' ').unwrap();
                let text = text.replace("\\n", "\n");
                format!("@@h {}  {path}\n", hex::encode(Sha256::digest(text.as_bytes())))
            }
            None => format!("{}\n", l.replace("\\t", "\t")),
        })
        .collect()
}

/// A decision on one line: the verdict (modes in octal, a gathered old content only named),
/// then any warnings.
fn decision_line(i: usize, task: &Task, d: &Decision) -> String {
    let change = |c: &Change| match c {
        Change::Content { old } => format!("Content {{ old: {} }}", if old.is_some() { "gathered" } else { "not gathered" }),
        Change::Mode { from, to } => format!("Mode {{ from: {from:04o}, to: {to:04o} }}"),
        other => format!("{other:?}"),
    };
    let verdict = match &d.verdict {
        Verdict::Change(cs) => format!("Change [{}]", cs.iter().map(change).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    };
    let warnings = if d.warnings.is_empty() { String::new() } else { format!("; warnings: {:?}", d.warnings) };
    format!("{i} {}: {verdict}{warnings}", task.name)
}

/// Compare `got` with the case's `file` (`required`: a case must have it); with
/// `EZK_UPDATE_FIXTURES`, write it instead (`always`: also when the case has none yet).
fn check(case: &Path, file: &str, got: &str, required: bool, always: bool, failures: &mut Vec<String>) {
    let path = case.join(file);
    if std::env::var_os("EZK_UPDATE_FIXTURES").is_some() && (always || path.exists()) {
        std::fs::write(&path, got).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(want) if want != got => failures.push(format!("{}:\n--- want\n{want}--- got\n{got}", path.display())),
        Err(e) if required => failures.push(format!("{}: {e}", path.display())),
        _ => {}
    }
}

#[test]
fn guard_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exec-guard");
    let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).collect();
    cases.sort();
    assert!(cases.len() >= 19, "fixtures missing under {}", root.display());
    let mut failures = Vec::new();
    for case in &cases {
        let tasks = tasks(&case.join("tasks.yml"));
        let w = desired_state(&tasks).unwrap();
        let facts = parse_facts(&facts_text(&std::fs::read_to_string(case.join("facts.txt")).unwrap()), "", &tasks).unwrap();
        let d = decide_role(&tasks, &w, &facts);
        let mut got: Vec<String> = tasks.iter().zip(&w).zip(&d).flat_map(|((t, w), d)| describe(t, w, d)).collect();
        let handlers = pending_handlers(&tasks, &d, &facts);
        for (unit, by) in &handlers {
            got.push(format!("restart {unit} ({by})"));
        }
        let applies = d.iter().any(|x| x.needs_apply()) || !handlers.is_empty();
        got.push(format!("apply: {}", if applies { "yes" } else { "no" }));
        let plan_lines: String = got.iter().map(|l| format!("{l}\n")).collect();
        check(case, "expected.txt", &plan_lines, true, true, &mut failures);
        let decisions: String = tasks.iter().zip(&d).enumerate().map(|(i, (t, d))| decision_line(i, t, d) + "\n").collect();
        check(case, "decisions.txt", &decisions, false, true, &mut failures);
        let a = apply_script(&tasks, &w, &d, &handlers);
        let apply = format!("stdin: {} part(s)\n{}", a.stdin.len(), body(&a.script));
        check(case, "apply.txt", &apply, false, applies, &mut failures);
        let gather = gather_body(&gather_script(&tasks, &w, false, &Default::default())).to_string();
        check(case, "gather.txt", &gather, false, false, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
