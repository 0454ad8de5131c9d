//! Restarts owed across runs. A handler restart is decided inside the running apply script (a
//! notifying task changed → restart at the unit's service task or the handler tail). If the
//! script dies after the change landed but before the restart (Ctrl-C, a killed session, a
//! lost connection), the next run finds the file already right and would never restart: the
//! service would keep its old config. So the apply records a durable marker per owed unit
//! on the host before the change, and removes it only after the restart succeeded; the gather
//! reads the markers (`gather::markers`), and `decide` turns one into "restart U" even when nothing
//! else changed.

use std::collections::BTreeSet;

use super::decide::{Change, Decision};
use super::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// Where apply scripts leave the markers: one empty file per unit, plus `RELOAD_MARKER`.
pub const PENDING_DIR: &str = "/var/lib/ezk/pending-restart";

/// The marker owing a `systemctl daemon-reload` after a unit file landed (no unit name
/// starts with `_`).
pub const RELOAD_MARKER: &str = "_daemon-reload";

/// How `decide` names a restart owed by an interrupted run (plan lines, recap).
pub const INTERRUPTED: &str = "owed by an interrupted run";

/// The marker file name for a unit (unit names never hold `/`; be safe anyway).
pub fn marker_name(unit: &str) -> String {
    unit.replace('/', "_")
}

/// The marker's path on the host.
pub fn marker_path(name: &str) -> String {
    format!("{PENDING_DIR}/{name}")
}

/// Apply-script line recording, durably, that task `i`'s change owes a restart of `units`
/// (and a daemon-reload when `reload`): empty when it owes nothing. Goes before the change.
pub fn pend_line(i: usize, units: &[String], reload: bool) -> String {
    let names: Vec<String> = units.iter().map(|u| sh_quote(&marker_name(u))).chain(reload.then(|| RELOAD_MARKER.to_string())).collect();
    if names.is_empty() { String::new() } else { format!("ezk_pend {i} {}\n", names.join(" ")) }
}

/// Apply-script command removing a marker (a unit name, or `RELOAD_MARKER`); it goes after
/// the restart or reload succeeded, where a failure has already ended the script.
pub fn clear_cmd(name: &str) -> String {
    format!("rm -f -- {}", sh_quote(&marker_path(&marker_name(name))))
}

/// Units whose restart `decide` planned because an interrupted run owes it (a service task's
/// restart or a handler, named `INTERRUPTED`): the apply starts with their flags raised.
pub fn owed_units(tasks: &[Task], decisions: &[Decision], handlers: &[(String, String)]) -> BTreeSet<String> {
    let owed = |by: &str| by.contains(INTERRUPTED);
    let mut units: BTreeSet<String> = handlers.iter().filter(|(_, by)| owed(by)).map(|(u, _)| u.clone()).collect();
    for (t, d) in tasks.iter().zip(decisions) {
        if let Action::Service { unit, .. } = &t.action
            && d.changes().iter().any(|c| matches!(c, Change::Restart { by } if owed(by)))
        {
            units.insert(unit.clone());
        }
    }
    units
}
