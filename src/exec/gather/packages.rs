//! Fact kind: OS packages. One `dpkg-query` (or `rpm -q` per package) for every package of the
//! role's tasks; a package counts as installed when dpkg says `ii`.
//!
//! dpkg's database is two paths: `status` (rewritten by a rename, so a new inode) and the
//! `updates/` journal (a file per change, so the directory's mtime moves). `paths` reads their
//! signatures with everything else; when both are the ones recorded while every package of
//! the role was installed (`checksums`, key [`cache_key`]), nothing can have been removed since
//! and the gather echoes that answer instead of starting `dpkg-query` (a fifth of a no-op
//! prepare gather's host CPU).
//! (The other half of this kind, its changes, is `apply/packages.rs`.)

use std::collections::HashSet;

use super::checksums::Checksums;
use super::{Parsed, ReadLine, quoted_list};
use crate::exec::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// dpkg's database, as `paths` finds it (sorted: `status` is printed before `updates`).
pub const DPKG_DB: [&str; 2] = ["/var/lib/dpkg/status", "/var/lib/dpkg/updates"];

/// Every package the role's tasks name, sorted, once.
pub(super) fn role_packages(tasks: &[Task]) -> Vec<&str> {
    let mut packages: Vec<&str> = Vec::new();
    for task in tasks {
        if let Action::Package { names, .. } = &task.action {
            packages.extend(names.iter().map(String::as_str));
        }
    }
    packages.sort();
    packages.dedup();
    packages
}

/// The `checksums` key under which "these packages were all installed when dpkg's database
/// had this signature" is recorded.
pub fn cache_key(packages: &[&str]) -> String {
    format!("dpkg-installed:{}", packages.join(","))
}

/// The script part.
pub(super) fn script(s: &mut String, tasks: &[Task], checksums: &Checksums) {
    let packages = role_packages(tasks);
    if packages.is_empty() {
        return;
    }
    let list = quoted_list(packages.iter().copied());
    let query = format!(
        "if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='@@k ${{Package}} ${{db:Status-Abbrev}}\\n' {list} 2>/dev/null; \
         elif command -v rpm >/dev/null 2>&1; then for p in {list}; do rpm -q \"$p\" >/dev/null 2>&1 && echo \"@@k $p ii\"; done; fi"
    );
    match checksums.get(&cache_key(&packages)).and_then(|(sig, _)| sig.split_once('|')) {
        Some((status, updates)) => {
            let known: Vec<String> = packages.iter().map(|p| sh_quote(&format!("@@k {p} ii"))).collect();
            s.push_str(&format!(
                "case \"$F\" in *{}*{}*) printf '%s\\n' {};; *) {query};; esac\n",
                sh_quote(&format!("\n@@i\t{status}\t{}\n", DPKG_DB[0])),
                sh_quote(&format!("\n@@i\t{updates}\t{}\n", DPKG_DB[1])),
                known.join(" ")
            ));
        }
        None => {
            s.push_str(&query);
            s.push('\n');
        }
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
