//! Fact kind: OS packages. One `dpkg-query` (or `rpm -q` per package) for every package of the
//! role's tasks; a package counts as installed when dpkg says `ii`.
//! (The other half of this kind, its changes, is `apply/packages.rs`.)

use std::collections::HashSet;

use super::{Parsed, ReadLine, quoted_list};
use crate::plan::action::{Action, Task};

/// The script part.
pub(super) fn script(s: &mut String, tasks: &[Task]) {
    let mut packages: Vec<&str> = Vec::new();
    for task in tasks {
        if let Action::Package { names, .. } = &task.action {
            packages.extend(names.iter().map(String::as_str));
        }
    }
    packages.sort();
    packages.dedup();
    if !packages.is_empty() {
        let list = quoted_list(packages.iter().copied());
        s.push_str(&format!(
            "if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='@@k ${{Package}} ${{db:Status-Abbrev}}\\n' {list} 2>/dev/null; \
             elif command -v rpm >/dev/null 2>&1; then for p in {list}; do rpm -q \"$p\" >/dev/null 2>&1 && echo \"@@k $p ii\"; done; fi\n"
        ));
    }
}

/// The installed packages the output named.
#[derive(Default)]
pub(super) struct Raw {
    installed: HashSet<String>,
}

impl ReadLine for Raw {
    fn line(&mut self, line: &str) -> Parsed {
        let Some(rest) = line.strip_prefix("@@k ") else { return Parsed::NotMine };
        let Some((p, st)) = rest.split_once(' ') else { return Parsed::Bad };
        if st.starts_with("ii") {
            self.installed.insert(p.to_string());
        }
        Parsed::Ok
    }
}

impl Raw {
    /// Package → installed?, for a package task's names.
    pub(super) fn packages(&self, names: &[String]) -> Vec<(String, bool)> {
        names.iter().map(|n| (n.clone(), self.installed.contains(n))).collect()
    }
}
