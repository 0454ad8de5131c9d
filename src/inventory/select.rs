//! `--limit`: which of a cluster's hosts a run touches, as Ansible's `--limit` picks them — a
//! comma-separated list of group names and host names (inventory names), `all`, and `!name` to
//! leave a group or host out. Everything is resolved against the inventory before any
//! connection; a name that matches nothing is an error that lists what exists.

use super::Inventory;

impl Inventory {
    /// The hosts `patterns` (each possibly comma-separated) select, in inventory order.
    pub fn select(&self, patterns: &[String]) -> Result<Vec<String>, String> {
        let mut take: Vec<&str> = Vec::new();
        let mut drop: Vec<&str> = Vec::new();
        for p in patterns.iter().flat_map(|p| p.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
            match p.strip_prefix('!') {
                Some(x) => drop.push(x),
                None => take.push(p),
            }
        }
        if take.is_empty() && !drop.is_empty() {
            take.push("all");
        }
        let members = |name: &str| -> Result<Vec<&String>, String> {
            if let Some(g) = self.groups.get(name) {
                return Ok(g.iter().collect());
            }
            if let Some(h) = self.hosts.iter().find(|h| *h == name) {
                return Ok(vec![h]);
            }
            Err(format!(
                "--limit {name:?} names no group or host of cluster {} (groups: {}; hosts: {})",
                self.cluster,
                self.groups.keys().cloned().collect::<Vec<_>>().join(", "),
                self.hosts.join(", ")
            ))
        };
        let mut chosen: Vec<&String> = Vec::new();
        for t in take {
            chosen.extend(members(t)?);
        }
        let mut out_of: Vec<&String> = Vec::new();
        for d in drop {
            out_of.extend(members(d)?);
        }
        let picked: Vec<String> =
            self.hosts.iter().filter(|h| chosen.contains(h) && !out_of.contains(h)).cloned().collect();
        if picked.is_empty() {
            return Err(format!("--limit {} selects no host of cluster {}", patterns.join(","), self.cluster));
        }
        Ok(picked)
    }
}
