//! Fact kind: the kernel. Sysctl keys (one `sysctl` for every key, and whether each
//! /proc/sys file is writable: containers often are not) and modules (loaded, loadable, or
//! neither; the `ezk_m` helper of the gather prelude, builtins only).
//! (The other half of this kind, its changes, is `apply/kernel.rs`.)

use std::collections::{HashMap, HashSet};

use super::{Parsed, ReadLine, quoted_list};
use crate::exec::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// A sysctl key as read on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFact {
    pub key: String,
    /// Current value (whitespace-normalized); None when the kernel does not know the key.
    pub value: Option<String>,
    /// Whether /proc/sys/<key> is writable (containers often are not).
    pub writable: bool,
}

/// A kernel module's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    Loaded,
    /// Not loaded, `modprobe -n` finds it.
    Available,
    /// Not loaded and cannot be (not in this kernel's modules, or no permission).
    Unavailable,
}

/// The script part: every sysctl key of the role's tasks, then every module.
pub(super) fn script(s: &mut String, tasks: &[Task]) {
    let mut keys: Vec<&str> = Vec::new();
    let mut modules: Vec<&str> = Vec::new();
    for task in tasks {
        match &task.action {
            Action::Sysctl { entries, .. } => keys.extend(entries.iter().map(|(k, _)| k.as_str())),
            Action::Modprobe { modules: m, .. } => modules.extend(m.iter().map(String::as_str)),
            _ => {}
        }
    }
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        s.push_str(&format!("ezk_p @@s \"$(sysctl {} 2>/dev/null)\"\n", quoted_list(keys.iter().copied())));
        for k in &keys {
            let f = format!("/proc/sys/{}", k.replace('.', "/"));
            s.push_str(&format!("[ -w {} ] && echo {}\n", sh_quote(&f), sh_quote(&format!("@@sw {k}"))));
        }
    }
    modules.sort();
    modules.dedup();
    for m in &modules {
        s.push_str(&format!("ezk_m {}\n", sh_quote(m)));
    }
}

/// What the output said about sysctl keys and modules.
#[derive(Default)]
pub(super) struct Raw {
    sysctl: HashMap<String, String>,
    writable: HashSet<String>,
    modules: HashMap<String, ModuleState>,
}

impl ReadLine for Raw {
    fn line(&mut self, line: &str) -> Parsed {
        if let Some(rest) = line.strip_prefix("@@sw ") {
            self.writable.insert(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("@@s ") {
            let Some((k, v)) = rest.split_once(" = ") else { return Parsed::Bad };
            self.sysctl.insert(k.to_string(), v.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if let Some(rest) = line.strip_prefix("@@m ") {
            let Some((m, st)) = rest.split_once(' ') else { return Parsed::Bad };
            let st = match st {
                "loaded" => ModuleState::Loaded,
                "available" => ModuleState::Available,
                "unavailable" => ModuleState::Unavailable,
                _ => return Parsed::Bad,
            };
            self.modules.insert(m.to_string(), st);
        } else {
            return Parsed::NotMine;
        }
        Parsed::Ok
    }
}

impl Raw {
    /// The state of each key a sysctl task sets.
    pub(super) fn sysctl(&self, entries: &[(String, String)]) -> Vec<SysctlFact> {
        entries
            .iter()
            .map(|(k, _)| SysctlFact { key: k.clone(), value: self.sysctl.get(k).cloned(), writable: self.writable.contains(k) })
            .collect()
    }

    /// The state of each module a modprobe task loads (not reported: unavailable).
    pub(super) fn modules(&self, modules: &[String]) -> Vec<(String, ModuleState)> {
        modules.iter().map(|m| (m.clone(), self.modules.get(m).copied().unwrap_or(ModuleState::Unavailable))).collect()
    }
}
