//! Emitters for the kernel: a sysctl task (its sysctl.d file, then each changed key with
//! `sysctl -w`) and a modprobe task (its modules-load.d file, then `modprobe` each module).
//! A key or module the kernel refuses is a warning; the task is "changed" only if something
//! took.
//! (The other half of this kind, its facts, is `gather/kernel.rs`.)

use super::{Ctx, Steps, changed_if_c, files};
use crate::exec::decide::Change;
use crate::exec::desired::Desired;
use crate::exec::transport::sh_quote;
use crate::plan::action::Task;

pub(super) fn sysctl(cx: &mut Ctx, i: usize, task: &Task, file: &str, changes: &[Change], want: &Desired) -> Steps {
    let mut body = file_first(cx, i, file, changes, want);
    for c in changes {
        if let Change::SysctlValue { key, to, .. } = c {
            let kv = sh_quote(&format!("{key}={to}"));
            body.push_str(&format!("if sysctl -w {kv} >/dev/null 2>&1; then c=1; else ezk_warn {i} {}; fi\n", sh_quote(&format!("sysctl {key}: the kernel refused {to}"))));
        }
    }
    body.push_str(&changed_if_c(i, task, cx.flags));
    Steps::own(body)
}

pub(super) fn modprobe(cx: &mut Ctx, i: usize, task: &Task, file: &str, changes: &[Change], want: &Desired) -> Steps {
    let mut body = file_first(cx, i, file, changes, want);
    for c in changes {
        if let Change::LoadModule(m) = c {
            body.push_str(&format!("if modprobe {} >/dev/null 2>&1; then c=1; else ezk_warn {i} {}; fi\n", sh_quote(m), sh_quote(&format!("module {m}: modprobe failed"))));
        }
    }
    body.push_str(&changed_if_c(i, task, cx.flags));
    Steps::own(body)
}

/// `c=0`, then the task's file (root-owned 0644); writing it counts as a change.
fn file_first(cx: &mut Ctx, i: usize, file: &str, changes: &[Change], want: &Desired) -> String {
    let put = files::file(cx, i, file, changes, want, 0o644, "root", "root");
    format!("c=0\n{put}{}", if put.is_empty() { "" } else { "c=1\n" })
}
