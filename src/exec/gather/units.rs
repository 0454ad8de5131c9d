//! Fact kind: systemd units. One `systemctl show` for every service task's unit, in task order;
//! its answer is one block of `UnitFileState=`/`ActiveState=` lines per unit, blocks separated
//! by an empty line, so the n-th block is the n-th service task's.
//! (The other half of this kind, its changes, is `apply/units.rs`.)

use super::{Parsed, ReadLine, quoted_list};
use crate::plan::action::{Action, Task};

/// The script part.
pub(super) fn script(s: &mut String, tasks: &[Task]) {
    let units: Vec<&str> = tasks
        .iter()
        .filter_map(|t| match &t.action {
            Action::Service { unit, .. } => Some(unit.as_str()),
            _ => None,
        })
        .collect();
    if !units.is_empty() {
        // One block per unit, in argument order, separated by empty lines.
        s.push_str(&format!(
            "ezk_p @@u \"$(systemctl show -p UnitFileState -p ActiveState -- {} 2>/dev/null)\"\n",
            quoted_list(units.iter().copied())
        ));
    }
}

/// The (UnitFileState, ActiveState) blocks, in order.
#[derive(Default)]
pub(super) struct Raw {
    blocks: Vec<(String, String)>,
    current: Option<(String, String)>,
}

impl ReadLine for Raw {
    fn line(&mut self, line: &str) -> Parsed {
        let Some(rest) = line.strip_prefix("@@u") else { return Parsed::NotMine };
        let rest = rest.trim_start();
        if rest.is_empty() {
            self.blocks.extend(self.current.take());
        } else {
            let u = self.current.get_or_insert_with(Default::default);
            if let Some(v) = rest.strip_prefix("UnitFileState=") {
                u.0 = v.to_string();
            } else if let Some(v) = rest.strip_prefix("ActiveState=") {
                u.1 = v.to_string();
            }
        }
        Parsed::Ok
    }
}

impl Raw {
    /// Every block, in task order: `is-enabled` and `is-active` words (`not-found` for a
    /// unit systemd does not know).
    pub(super) fn into_states(mut self) -> impl Iterator<Item = (String, String)> {
        self.blocks.extend(self.current.take());
        self.blocks.into_iter().map(|(e, a)| (if e.is_empty() { "not-found".into() } else { e }, a))
    }
}
