//! Plan mode: the decisions (`decide`) as human lines, what `--plan` prints per task. Text diffs come from the content gather
//! sent back; secret files never show content, only that it changed.

use super::diff::unified;
use crate::exec::decide::{Change, Decision, Verdict};
use crate::exec::desired::{Desired, looks_secret};
use crate::plan::action::{Action, Task};

fn target(task: &Task) -> String {
    match &task.action {
        Action::File(f) => f.path.clone(),
        Action::Directory { path, .. } | Action::Link { path, .. } | Action::Absent { path } => path.clone(),
        Action::Sysctl { file, .. } | Action::Modprobe { file, .. } => file.clone(),
        Action::Package { names, .. } => names.join(" "),
        Action::Service { unit, .. } => unit.clone(),
        Action::DaemonReload => "systemd".into(),
        Action::Command { cmd, .. } => cmd.to_string(),
        Action::WaitFor { target, .. } => format!("{target:?}"),
    }
}

/// Lines saying what would change for one task (empty when nothing would).
pub fn describe(task: &Task, want: &Desired, d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    let t = target(task);
    let flagged = matches!(&task.action, Action::File(f) if f.secret);
    let new_secret = want.inline_bytes().is_some_and(looks_secret);
    match &d.verdict {
        Verdict::Ok | Verdict::Skip(_) => {}
        Verdict::Fail(why) => out.push(format!("FAIL {why}")),
        Verdict::Wait => out.push(format!("wait for {t} (not answering now)")),
        Verdict::Change(changes) => {
            for c in changes {
                match c {
                    Change::NewFile { .. } | Change::Content { .. } if want.not_downloaded().is_some() => {
                        let verb = if matches!(c, Change::NewFile { .. }) { "new" } else { "changed" };
                        out.push(format!("{verb} {t}: {}", want.not_downloaded().expect("matched")));
                    }
                    Change::NewFile { size } => out.push(format!("new {t} ({size} bytes)")),
                    Change::Content { old } => {
                        // The host's copy counts too: a key there must not show as `-` lines.
                        if flagged || new_secret || old.as_deref().is_some_and(looks_secret) {
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
                    Change::Recheck { path } => {
                        out.push(format!("run unless its guard still holds once {path} is changed: {t}"))
                    }
                }
            }
        }
    }
    for w in &d.warnings {
        out.push(format!("warning: {w}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::desired::desired_state;
    use crate::plan::action::{Content, FileSpec};

    fn file_task(content: &str, secret: bool) -> Task {
        Task {
            name: "conf".into(),
            origin: "roles/x/tasks.yml:1".into(),
            action: Action::File(FileSpec {
                path: "/etc/x.conf".into(),
                content: Content::Inline(content.as_bytes().into()),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                secret,
            }),
            notify: vec![],
        }
    }

    fn changed(old: &str) -> Decision {
        Decision { verdict: Verdict::Change(vec![Change::Content { old: Some(old.as_bytes().to_vec()) }]), warnings: vec![] }
    }

    /// Regression: a key on the host (or in a template whose task lacks `secret: true`) must
    /// never be printed as diff lines by `--plan`.
    #[test]
    fn key_material_is_masked_whichever_side_holds_it() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n";
        let cases = [
            (file_task("a = 1\n", false), key),   // the host's copy holds a key
            (file_task(key, false), "a = 1\n"),   // unflagged template renders a key
            (file_task("a = 2\n", true), "a = 1\n"), // flagged secret
        ];
        for (task, old) in cases {
            let w = desired_state(std::slice::from_ref(&task)).unwrap();
            let lines = describe(&task, &w[0], &changed(old));
            assert_eq!(lines, vec!["changed /etc/x.conf: secret content changed".to_string()]);
        }
        // A plain text file still shows its diff.
        let task = file_task("a = 2\n", false);
        let w = desired_state(std::slice::from_ref(&task)).unwrap();
        let lines = describe(&task, &w[0], &changed("a = 1\n"));
        assert!(lines.iter().any(|l| l.trim() == "-a = 1") && lines.iter().any(|l| l.trim() == "+a = 2"), "{lines:?}");
    }
}
