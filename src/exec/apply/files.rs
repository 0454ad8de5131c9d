//! Emitters for files: a file's content (`ezk_put`: temp file, size and sha256 checked,
//! fsync, rename) or only its mode/owner; a directory; a link; a removal. Also the sweep of
//! temp files a killed run left.

use super::{Ctx, mode_s};
use crate::exec::decide::Change;
use crate::exec::desired::Desired;
use crate::exec::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// Stale temp files from a run that was killed mid-upload (the trap could not run), in every
/// directory a file task writes to.
pub(super) fn sweep_stale_temps(tasks: &[Task]) -> String {
    let mut dirs: Vec<String> = tasks
        .iter()
        .filter_map(|t| match &t.action {
            Action::File(f) => Some(f.path.rsplit_once('/').map(|x| x.0).unwrap_or(".").to_string()),
            _ => None,
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut s = String::new();
    for d in &dirs {
        s.push_str(&format!("rm -f -- {}/.ezk-tmp.* 2>/dev/null\n", sh_quote(if d.is_empty() { "/" } else { d })));
    }
    s
}

/// The whole file from stdin (its bytes go onto the script's stdin, in task order).
fn put(cx: &mut Ctx, i: usize, path: &str, want: &Desired, mode: u32, owner: &str, group: &str) -> String {
    let Desired::File { sha256, size, .. } = want else { return String::new() };
    cx.stdin.push(want.stdin_part().expect("file want has bytes"));
    format!(
        "ezk_put {i} {} {size} {sha256} {} {} {}{}\n",
        sh_quote(path),
        mode_s(mode),
        sh_quote(owner),
        sh_quote(group),
        if cx.stage { " 1" } else { "" }
    )
}

/// Whether the changes put new bytes in place (a new file, or new content).
pub(super) fn changes_content(changes: &[Change]) -> bool {
    changes.iter().any(|c| matches!(c, Change::NewFile { .. } | Change::Content { .. }))
}

/// A file task (and the file of a sysctl or modprobe task): new or changed content is put
/// whole; otherwise only its mode and owner are fixed in place.
#[allow(clippy::too_many_arguments)]
pub(super) fn file(cx: &mut Ctx, i: usize, path: &str, changes: &[Change], want: &Desired, mode: u32, owner: &str, group: &str) -> String {
    if changes_content(changes) {
        return put(cx, i, path, want, mode, owner, group);
    }
    let mut s = String::new();
    let p = sh_quote(path);
    for c in changes {
        match c {
            Change::Mode { to, .. } => s.push_str(&format!("chmod {} {p} || ezk_fail {i} 'chmod failed'\n", mode_s(*to))),
            Change::Owner { to, .. } => s.push_str(&format!("chown {} {p} || ezk_fail {i} 'chown failed'\n", sh_quote(to))),
            _ => {}
        }
    }
    s
}

pub(super) fn directory(i: usize, path: &str, mode: u32, owner: &str, group: &str, changes: &[Change]) -> String {
    let p = sh_quote(path);
    let mut body = String::new();
    for c in changes {
        match c {
            Change::CreateDir => body.push_str(&format!(
                "mkdir -p -- {p} && chmod {} {p} && chown {} {p} || ezk_fail {i} 'cannot create directory'\n",
                mode_s(mode),
                sh_quote(&format!("{owner}:{group}"))
            )),
            Change::Mode { to, .. } => body.push_str(&format!("chmod {} {p} || ezk_fail {i} 'chmod failed'\n", mode_s(*to))),
            Change::Owner { to, .. } => body.push_str(&format!("chown {} {p} || ezk_fail {i} 'chown failed'\n", sh_quote(to))),
            _ => {}
        }
    }
    body
}

pub(super) fn link(i: usize, path: &str, target: &str) -> String {
    format!(
        "mkdir -p -- \"$(dirname -- {p})\" && ln -sfn -- {} {p} || ezk_fail {i} 'cannot create link'\n",
        sh_quote(target),
        p = sh_quote(path)
    )
}

pub(super) fn absent(i: usize, path: &str) -> String {
    format!("rm -rf -- {} || ezk_fail {i} 'cannot remove'\n", sh_quote(path))
}
