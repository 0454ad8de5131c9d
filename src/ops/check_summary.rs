//! The human summary `ezk check` prints for a valid inventory: groups, the cluster-wide
//! variables that matter, and per host its node name, connection and groups. Here, not in
//! `inventory`, because a host's connection is the executor's reading of its variables.

use std::fmt::Write as _;

use crate::inventory::Inventory;
use crate::inventory::validate::SHOWN_VARS;

/// Render the summary of a resolved inventory.
pub fn summary(inv: &Inventory) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cluster {} ({}, {})",
        inv.cluster,
        inv.hosts_path().display(),
        inv.config_path().display()
    );
    let _ = writeln!(s, "\ngroups:");
    for (g, members) in &inv.groups {
        let list = if members.is_empty() {
            "(empty)".to_string()
        } else {
            members.join(", ")
        };
        let _ = writeln!(s, "  {g:<12} {list}");
    }
    if let Some(h) = inv.hosts.first() {
        let _ = writeln!(s, "\nvariables:");
        for v in SHOWN_VARS {
            let val = inv.var_str(h, v).unwrap_or_else(|| "(not set)".into());
            let _ = writeln!(s, "  {v:<20} {val}");
        }
    }
    let _ = writeln!(s, "\nhosts:");
    let _ = writeln!(
        s,
        "  {:<20} {:<24} {:<32} groups",
        "host", "K8S_NODENAME", "connection"
    );
    for h in &inv.hosts {
        let c = crate::session::connection(inv, h);
        let node = inv.var_str(h, "K8S_NODENAME").unwrap_or_else(|| "-".into());
        let mut conn = format!("{}@{}:{}", c.user, c.address, c.port);
        if c.become_root {
            conn.push_str(" (sudo)");
        }
        let _ = writeln!(
            s,
            "  {h:<20} {node:<24} {conn:<32} {}",
            inv.groups_of(h).join(",")
        );
        if let Some(k) = &c.key_file {
            let _ = writeln!(s, "  {:<20} key {}", "", k.display());
        }
    }
    s
}
