//! Emitters for systemd: a service task (enable/disable without the implicit reload, one
//! daemon-reload when a unit file or an enable calls for it, start/stop, and the notified
//! restart decided at run time by the `N<n>` flag), a daemon-reload task, and the handler
//! restarts after the last task. Each clears the restart-owed marker once its restart is done.
//! (The other half of this kind, its facts, is `gather/units.rs`.)

use super::{Ctx, Steps};
use crate::exec::decide::Change;
use crate::exec::pending::clear_cmd;
use crate::exec::transport::sh_quote;
use crate::plan::action::{Action, Task};

pub(super) fn service(cx: &mut Ctx, i: usize, unit: &str, changes: &[Change]) -> Steps {
    let rm = &cx.rm_reload;
    let u = sh_quote(unit);
    let mut body = String::new();
    // `systemctl enable` reloads systemd by itself, and a changed unit file needs a
    // reload too: enable without it, then reload once (~0.1-0.4 s each on a host).
    for c in changes {
        let cmd = match c {
            Change::Enable => "enable",
            Change::Disable => "disable",
            _ => continue,
        };
        let msg = sh_quote(&format!("systemctl {cmd} {unit} failed"));
        body.push_str(&format!("ezk_run {i} systemctl {cmd} --no-reload {u} || ezk_fail {i} {msg}\nEZK_UNITS=1\n"));
    }
    body.push_str(&format!("if [ \"$EZK_UNITS\" = 1 ]; then ezk_run {i} systemctl daemon-reload || ezk_fail {i} 'daemon-reload failed'; EZK_UNITS=0; {rm}; fi\n"));
    let mut started = false;
    for c in changes {
        let cmd = match c {
            Change::Start => {
                started = true;
                "start"
            }
            Change::Stop => "stop",
            Change::Restart { by } if by.starts_with("state:") => "restart",
            _ => continue,
        };
        let msg = sh_quote(&format!("systemctl {cmd} {unit} failed"));
        body.push_str(&format!("ezk_run {i} systemctl {cmd} {u} || ezk_unit_fail {i} {u} {msg}\n"));
    }
    // Only a notified restart is decided at run time; everything else is certain.
    let always_changed = changes.iter().any(|c| !matches!(c, Change::Restart { by } if !by.starts_with("state:")));
    body.push_str("c=0\n");
    if let Some(n) = cx.flags.get(unit) {
        if !started {
            // A notified restart happens only if a notifying task really changed.
            body.push_str(&format!(
                "if [ \"${{N{n}:-0}}\" = 1 ]; then ezk_run {i} systemctl restart {u} || ezk_unit_fail {i} {u} {}; c=1; fi\n",
                sh_quote(&format!("systemctl restart {unit} failed"))
            ));
        }
        body.push_str(&format!("N{n}=0\n"));
        // Restarted (or freshly started, or nothing owed after all): settled.
        if cx.marked.remove(unit) || started {
            body.push_str(&format!("{}\n", clear_cmd(unit)));
        }
    }
    if always_changed {
        Steps::changed(body)
    } else {
        body.push_str(&format!("if [ $c = 1 ]; then echo '@@r {i} changed'; else echo '@@r {i} ok'; fi\n"));
        Steps::own(body)
    }
}

/// Right before a service (where the planner puts it), the service task reloads, after its
/// own `enable`: one reload for both. A reload owed by an interrupted run (no unit file
/// changed now) raises the flag.
pub(super) fn daemon_reload(cx: &Ctx, i: usize, changes: &[Change], next: Option<&Task>) -> String {
    let raise = if changes.is_empty() { "" } else { "EZK_UNITS=1\n" };
    if matches!(next.map(|t| &t.action), Some(Action::Service { .. })) {
        return raise.to_string();
    }
    format!(
        "{raise}if [ \"$EZK_UNITS\" = 1 ]; then ezk_run {i} systemctl daemon-reload || ezk_fail {i} 'daemon-reload failed'; EZK_UNITS=0; {}; fi\n",
        cx.rm_reload
    )
}

/// A handler restart after the last task (result index `i`), when a notifying task changed.
pub(super) fn handler(cx: &mut Ctx, i: usize, unit: &str) -> String {
    let n = cx.flags[unit];
    let u = sh_quote(unit);
    let mut s = format!(
        "ezk_t {i}\nif [ \"$EZK_UNITS\" = 1 ]; then systemctl daemon-reload && {}; EZK_UNITS=0; fi\nif [ \"${{N{n}:-0}}\" = 1 ]; then ezk_run {i} systemctl restart {u} || ezk_unit_fail {i} {u} {}; echo '@@r {i} changed'; fi\n",
        cx.rm_reload,
        sh_quote(&format!("systemctl restart {unit} failed"))
    );
    if cx.marked.remove(unit) {
        s.push_str(&format!("{}\n", clear_cmd(unit)));
    }
    s
}
