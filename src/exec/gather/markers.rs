//! Fact kind: restarts owed by an interrupted apply (see `exec::pending`): the marker files in
//! the pending directory, listed with a glob and builtins (no extra process), one `@@p` line each.

use std::collections::HashSet;

use super::{Parsed, ReadLine};
use crate::exec::pending::{PENDING_DIR, RELOAD_MARKER, marker_name};
use crate::plan::action::{Action, Task};

/// The script part, when any task could owe a restart or a reload.
pub(super) fn script(s: &mut String, tasks: &[Task]) {
    if tasks.iter().any(|t| !t.notify.is_empty() || matches!(t.action, Action::DaemonReload)) {
        s.push_str(&format!("for m in {PENDING_DIR}/*; do [ -e \"$m\" ] && echo \"@@p ${{m##*/}}\"; done\n"));
    }
}

/// The markers found.
#[derive(Default)]
pub(super) struct Raw {
    markers: HashSet<String>,
}

impl ReadLine for Raw {
    fn line(&mut self, line: &str) -> Parsed {
        let Some(rest) = line.strip_prefix("@@p ") else { return Parsed::NotMine };
        self.markers.insert(rest.to_string());
        Parsed::Ok
    }
}

impl Raw {
    /// The units `task` notifies whose restart is owed.
    pub(super) fn owed(&self, task: &Task) -> Vec<String> {
        task.notify.iter().filter(|u| self.markers.contains(&marker_name(u))).cloned().collect()
    }

    /// Whether a daemon-reload is owed.
    pub(super) fn reload_owed(&self) -> bool {
        self.markers.contains(RELOAD_MARKER)
    }
}
