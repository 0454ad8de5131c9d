//! Plan mode: the guard's decisions as human lines. Text diffs come from the content gather
//! sent back; secret files never show content, only that it changed.

use super::diff::unified;
use super::guard::{Change, Decision, Verdict};
use super::want::Want;
use crate::plan::action::{Action, Task};

fn target(task: &Task) -> String {
    match &task.action {
        Action::File(f) => f.path.clone(),
        Action::Directory { path, .. } | Action::Link { path, .. } | Action::Absent { path } => path.clone(),
        Action::Sysctl { file, .. } | Action::Modprobe { file, .. } => file.clone(),
        Action::Package { names, .. } => names.join(" "),
        Action::Service { unit, .. } => unit.clone(),
        Action::DaemonReload => "systemd".into(),
        Action::Command { cmd, .. } => cmd.clone(),
        Action::WaitFor { target, .. } => format!("{target:?}"),
    }
}

/// Lines saying what would change for one task (empty when nothing would).
pub fn describe(task: &Task, want: &Want, d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    let t = target(task);
    let secret = matches!(&task.action, Action::File(f) if f.secret);
    match &d.verdict {
        Verdict::Ok | Verdict::Skip(_) => {}
        Verdict::Fail(why) => out.push(format!("FAIL {why}")),
        Verdict::Wait => out.push(format!("wait for {t} (not answering now)")),
        Verdict::Change(changes) => {
            for c in changes {
                match c {
                    Change::NewFile { size } => out.push(format!("new {t} ({size} bytes)")),
                    Change::Content { old } => {
                        if secret {
                            out.push(format!("changed {t}: secret content changed"));
                            continue;
                        }
                        out.push(format!("changed {t}"));
                        match (old.as_deref().and_then(|o| std::str::from_utf8(o).ok()), want.inline_bytes().and_then(|n| std::str::from_utf8(n).ok())) {
                            (Some(o), Some(n)) => out.extend(unified(o, n, 3).into_iter().map(|l| format!("    {l}"))),
                            _ => out.push("    (binary or large content changed)".into()),
                        }
                    }
                    Change::Mode { from, to } => out.push(format!("mode {from:04o}→{to:04o} {t}")),
                    Change::Owner { from, to } => out.push(format!("owner {from}→{to} {t}")),
                    Change::CreateDir => out.push(format!("new directory {t}")),
                    Change::Link { from, to } => out.push(format!("link {t} → {to}{}", from.as_ref().map(|f| format!(" (was → {f})")).unwrap_or_default())),
                    Change::Remove => out.push(format!("remove {t}")),
                    Change::SysctlValue { key, from, to } => out.push(format!("sysctl {key} {from}→{to}")),
                    Change::LoadModule(m) => out.push(format!("load module {m}")),
                    Change::Install(p) => out.push(format!("install packages {}", p.join(" "))),
                    Change::Enable => out.push(format!("enable {t}")),
                    Change::Disable => out.push(format!("disable {t}")),
                    Change::Start => out.push(format!("start {t}")),
                    Change::Stop => out.push(format!("stop {t}")),
                    Change::Restart { by } => out.push(format!("restart {t} ({by})")),
                    Change::DaemonReload => out.push("systemctl daemon-reload".into()),
                    Change::Run => out.push(format!("run: {t}")),
                }
            }
        }
    }
    for w in &d.warnings {
        out.push(format!("warning: {w}"));
    }
    out
}
