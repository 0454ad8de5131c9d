//! Emitter for packages: install the missing ones with apt (keeping a host's edited conffiles,
//! and with one `apt-get update` and a retry when the lists are missing or stale) or yum.
//! (The other half of this kind, its facts, is `gather/packages.rs`.)

use crate::exec::decide::Change;
use crate::exec::transport::sh_quote;

pub(super) fn install(i: usize, changes: &[Change]) -> String {
    let mut body = String::new();
    for c in changes {
        if let Change::Install(names) = c {
            let n: Vec<String> = names.iter().map(|x| sh_quote(x)).collect();
            let n = n.join(" ");
            // apt: keep a host's edited conffiles (no dpkg prompt); lists that are
            // missing or stale (a fresh host) get one `apt-get update` and a retry.
            body.push_str(&format!(
                "if command -v apt-get >/dev/null 2>&1; then A='apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold'; ezk_run {i} $A {n} || {{ ezk_run {i} apt-get update -q && ezk_run {i} $A {n}; }}; else ezk_run {i} yum install -y -q {n}; fi || ezk_fail {i} 'package install failed'\n"
            ));
        }
    }
    body
}
