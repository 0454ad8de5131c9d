//! The recap: per-host counts after a run (ok, changed, failed, unreachable, skipped, seconds),
//! as a table for people and JSON for machines. Also the exit-code rule.

use indexmap::IndexMap;
use serde::Serialize;

/// Counts for one host.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostRecap {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    /// 1 when the host could not be reached (then nothing ran on it).
    pub unreachable: u32,
    pub skipped: u32,
    pub warnings: u32,
    pub seconds: f64,
    /// Of which: opening the SSH connection (handshake + auth).
    pub connect_seconds: f64,
    /// SSH handshakes made for this host: 0 when its connection was kept from an earlier step
    /// of the run or from an earlier run (a kept master).
    pub handshakes: u32,
    /// Remote commands run on this host (each is one round trip).
    pub round_trips: u64,
    /// Round trips per role (role → count), for the ≤3-per-role budget.
    pub round_trips_by_role: IndexMap<String, u64>,
    /// What went wrong, with the task and its origin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recap {
    pub step: String,
    pub plan_only: bool,
    pub seconds: f64,
    pub hosts: IndexMap<String, HostRecap>,
    /// Plan mode: per host, the lines saying what would change (empty when nothing would).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub plan: IndexMap<String, Vec<String>>,
    /// Where the run log was written.
    pub log: Option<std::path::PathBuf>,
    /// Set when the run was refused before any change (a host key not accepted): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A run of several steps (`all`): each step's own recap, in order; the fields above are
    /// their sums.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Recap>,
}

impl Recap {
    /// True when the run was not refused and no host failed or was unreachable.
    pub fn success(&self) -> bool {
        self.refused.is_none() && self.hosts.values().all(|h| h.failed == 0 && h.unreachable == 0)
    }
    /// 0 on success, 2 when some host failed or was unreachable.
    pub fn exit_code(&self) -> i32 {
        if self.success() { 0 } else { 2 }
    }
    /// Sum of changed over hosts.
    pub fn total_changed(&self) -> u32 {
        self.hosts.values().map(|h| h.changed).sum()
    }
    /// One recap for a run of several steps (`name`, e.g. `all`): per host, the counters,
    /// seconds and round trips summed and the plan lines and errors in step order; the steps'
    /// own recaps inside (`steps`). The log is the last step's.
    pub fn combine(name: &str, steps: Vec<Recap>) -> Recap {
        let mut all = Recap { step: name.to_string(), ..Default::default() };
        for r in &steps {
            all.plan_only = r.plan_only;
            all.seconds += r.seconds;
            all.log = r.log.clone().or(all.log.take());
            if all.refused.is_none() {
                all.refused = r.refused.clone();
            }
            for (h, x) in &r.hosts {
                let a = all.hosts.entry(h.clone()).or_default();
                a.ok += x.ok;
                a.changed += x.changed;
                a.failed += x.failed;
                a.unreachable = a.unreachable.max(x.unreachable);
                a.skipped += x.skipped;
                a.warnings += x.warnings;
                a.seconds += x.seconds;
                a.connect_seconds += x.connect_seconds;
                a.handshakes += x.handshakes;
                a.round_trips += x.round_trips;
                for (role, n) in &x.round_trips_by_role {
                    *a.round_trips_by_role.entry(role.clone()).or_default() += n;
                }
                a.errors.extend(x.errors.iter().cloned());
            }
            for (h, lines) in &r.plan {
                all.plan.entry(h.clone()).or_default().extend(lines.iter().cloned());
            }
        }
        all.steps = steps;
        all
    }
    /// JSON text of the recap.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("recap serializes")
    }
    /// The recap table.
    pub fn table(&self) -> String {
        let w = self.hosts.keys().map(|h| h.len()).max().unwrap_or(4).max(4);
        let mut s = format!(
            "{:<w$}  {:>5} {:>7} {:>6} {:>11} {:>7} {:>8} {:>7}\n",
            "HOST", "ok", "changed", "failed", "unreachable", "skipped", "seconds", "trips"
        );
        for (h, r) in &self.hosts {
            s.push_str(&format!(
                "{h:<w$}  {:>5} {:>7} {:>6} {:>11} {:>7} {:>8.2} {:>7}\n",
                r.ok, r.changed, r.failed, r.unreachable, r.skipped, r.seconds, r.round_trips
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_host_makes_the_run_fail() {
        let mut r = Recap::default();
        r.hosts.insert("a".into(), HostRecap { ok: 3, ..Default::default() });
        assert_eq!(r.exit_code(), 0);
        r.hosts.insert("b".into(), HostRecap { unreachable: 1, ..Default::default() });
        assert_eq!(r.exit_code(), 2);
        let t = r.table();
        assert!(t.lines().nth(2).unwrap().starts_with("b "), "{t}");
    }
}
