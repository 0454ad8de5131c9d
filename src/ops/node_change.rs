//! What the operations that add or remove a host share (add-node, del-node, add-master,
//! del-master, add-etcd, del-etcd): the INI inventory edited as text and checked as a whole
//! inventory before it is written (so bad input touches no host), each step planned for the
//! hosts it must reach only, those plans run, and the question before a removal.

use std::path::Path;

use super::Error;
use super::confirm::confirmed;
use super::phase::{Flow, Step};
use super::setup::{NODE_FACTS_WAIT, keep_only};
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::{Inventory, validate};
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The text of `clusters/<name>/hosts`: the operations edit the INI inventory only.
pub fn hosts_text(dir: &Path) -> Result<String, Error> {
    let path = dir.join("hosts");
    if !path.is_file() {
        return Err(format!(
            "{}: no INI inventory; add-node and del-node edit clusters/<name>/hosts (a hosts.yml is edited by hand, then `ezk setup --limit`)",
            path.display()
        )
        .into());
    }
    Ok(std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// A session over the inventory that `text` (an edit of the hosts file, not written yet)
/// makes, validated as `ezk check` does: `what` names the edit in the error.
pub fn session_with(home: &Home, cluster: &str, extra: &[(String, String)], text: &str, what: &str) -> Result<Session, Error> {
    checked_session(home, cluster, extra, text, what, validate::validate)
}

/// As [`session_with`] for add-etcd and del-etcd: an even `[etcd]` count is theirs to judge
/// (`validate::validate_etcd_change`).
pub fn etcd_session_with(home: &Home, cluster: &str, extra: &[(String, String)], text: &str, what: &str) -> Result<Session, Error> {
    checked_session(home, cluster, extra, text, what, validate::validate_etcd_change)
}

fn checked_session(
    home: &Home,
    cluster: &str,
    extra: &[(String, String)],
    text: &str,
    what: &str,
    check: fn(&Inventory) -> Vec<crate::inventory::InventoryError>,
) -> Result<Session, Error> {
    let dir = home.cluster_dir(cluster);
    let inv = Inventory::from_dir_with(&dir, cluster, extra, Some(text))
        .map_err(|e| format!("with {what}, {e}nothing was written and no host was contacted"))?;
    let errors = check(&inv);
    if !errors.is_empty() {
        return Err(format!(
            "with {what}, {}nothing was written and no host was contacted",
            crate::inventory::InventoryErrors(errors)
        )
        .into());
    }
    Ok(Session::with_inventory(home, inv))
}

/// Write `text` as the session's hosts file, under the cluster lock (taken here), atomically,
/// keeping the file's mode.
pub fn write_hosts(session: &mut Session, text: &str) -> Result<(), Error> {
    session.lock()?;
    let path = session.dir().join("hosts");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644)
    };
    crate::pki::ssl_dir::write_atomic(&path, text.as_bytes(), mode)?;
    Ok(())
}

/// One step for a set of hosts: its plans, keeping only `hosts`.
pub struct Target {
    pub step: &'static str,
    pub hosts: Vec<String>,
}

/// Plan every target in order (a step that reads the nodes is planned with what the API says
/// now, and again right before it runs: `run`).
pub fn plan(session: &mut Session, targets: &[Target]) -> Result<Vec<StepPlan>, Error> {
    let mut plans = Vec::new();
    let mut fetched = false;
    for t in targets {
        let mut ps = session.plan(t.step, session.files()?)?;
        if ps.iter().any(|p| p.needs_nodes) && !fetched {
            session.fetch_node_facts(None)?;
            fetched = true;
            ps = session.plan(t.step, session.files()?)?;
        }
        for mut p in ps {
            keep_only(&mut p, &t.hosts);
            plans.push(p);
        }
    }
    Ok(plans)
}

/// `plan`, without the plans that reach no host (a step whose hosts were all left out, an
/// empty `[ex_lb]`): those are not run.
pub fn plan_reaching(session: &mut Session, targets: &[Target]) -> Result<Vec<StepPlan>, Error> {
    let mut plans = plan(session, targets)?;
    drop_empty(&mut plans);
    Ok(plans)
}

/// Run `plans` (made by `plan` from `targets`) on their hosts, under the cluster lock; a step
/// that reads the nodes is planned again first, once every inventory node has registered. A
/// step that fails on a host stops the operation with its exit code.
pub fn run_flow(session: &mut Session, plans: &[StepPlan], targets: &[Target], opts: &Options) -> Step {
    let ready = super::run_steps::prepare(session)?;
    let hosts_of = |step: &str| -> Vec<String> {
        targets.iter().filter(|t| step.starts_with(t.step) || step.ends_with(t.step)).flat_map(|t| t.hosts.clone()).collect()
    };
    let replan = |session: &mut Session, plan: &StepPlan| -> Result<StepPlan, Error> {
        session.fetch_node_facts(Some(NODE_FACTS_WAIT))?;
        let mut fresh = session.planner(session.files()?)?.plan_step(&plan.step)?;
        keep_only(&mut fresh, &hosts_of(&plan.step));
        Ok(fresh)
    };
    super::run_steps::run(session, &ready, plans, opts, Some(&replan))
}

/// Ask before `op` changes cluster `cluster` (`what` says how): the cluster's name typed back
/// goes on; anything else stops the operation (exit code 1) with nothing changed.
pub fn confirm(op: &str, cluster: &str, what: &str) -> Step {
    if confirmed(op, cluster, what)? {
        return Ok(Flow::Next);
    }
    eprintln!("{op} cancelled: nothing was changed");
    Ok(Flow::Stop(1))
}

/// The hosts of `groups` in the session's inventory, in inventory order, each once.
pub fn hosts_in(session: &Session, groups: &[&str]) -> Vec<String> {
    let inv = &session.inventory;
    inv.hosts.iter().filter(|h| groups.iter().any(|g| inv.hosts_in(g).contains(h))).cloned().collect()
}

/// Is Node `node` registered? (A re-run after the delete finds it gone.)
pub fn registered(s: &Session, node: &str) -> Result<bool, Error> {
    let out = s.kubectl(&["--request-timeout=10s", "get", "node", node, "--ignore-not-found", "-o", "name"])?;
    Ok(!out.trim().is_empty())
}

/// Cordon and drain `node` (`kubectl drain --ignore-daemonsets --delete-emptydir-data`, at most
/// `timeout`; `force`: pods no controller manages go too, and a drain that does not finish is
/// given up). A drain that does not finish without `force` stops the operation (`command`
/// names it) with the node cordoned and nothing else changed.
pub fn drain(s: &mut Session, command: &str, node: &str, force: bool, timeout: std::time::Duration) -> Step {
    s.lock()?;
    if !registered(s, node)? {
        eprintln!("node {node} is not registered: nothing to drain");
        return Ok(Flow::Next);
    }
    s.kubectl(&["--request-timeout=10s", "cordon", node])?;
    let timeout_arg = format!("--timeout={}s", timeout.as_secs());
    let mut args = vec!["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", timeout_arg.as_str()];
    if force {
        args.push("--force");
    }
    eprintln!("draining node {node} (at most {}s)", timeout.as_secs());
    match s.kubectl(&args) {
        Ok(_) => Ok(Flow::Next),
        Err(e) if force => {
            eprintln!("drain did not finish ({e}); --force: going on, the pods left go with the host");
            Ok(Flow::Next)
        }
        Err(e) => {
            eprintln!(
                "{e}\n{command} stopped: node {node} is cordoned and nothing else changed. Fix what the drain names and run {command} again, pass --force to delete the pods left, or `kubectl uncordon {node}` to keep the node"
            );
            Ok(Flow::Stop(1))
        }
    }
}

/// What a removal (`del-master`, `del-etcd`) checks before it plans: the host is in `group`,
/// is not its last host, and serves the cluster in none of `refuse` (its clean would reach it).
pub struct Removal {
    pub command: &'static str,
    pub group: &'static str,
    /// "a master": what the host serves as.
    pub what: &'static str,
    /// "the last master": what the last host of the group is.
    pub last: &'static str,
    /// Why the last is refused, and what to do instead (before "or take the whole cluster
    /// down with `ezk destroy`").
    pub why_last: &'static str,
    pub refuse: &'static [&'static str],
}

impl Removal {
    /// Check `host` of the cluster as it is (`before`); an error touches no host.
    pub fn check(&self, before: &Session, host: &str) -> Result<(), Error> {
        let (group, file) = (self.group, before.dir().join("hosts"));
        let file = file.display();
        let groups = before.inventory.groups_of(host);
        if !groups.iter().any(|g| g == group) {
            return Err(format!("{host} is not in [{group}] of {file}: nothing to remove (no host was contacted)").into());
        }
        if before.inventory.hosts_in(group).len() == 1 {
            return Err(format!(
                "{host} is {} of cluster {} ([{group}] of {file}): {}, or take the whole cluster down with `ezk destroy` (no host was contacted)",
                self.last,
                before.name(),
                self.why_last
            )
            .into());
        }
        if let Some(g) = self.refuse.iter().find(|g| groups.iter().any(|h| h == *g)) {
            return Err(format!(
                "{host} is also in [{g}] of {file}: {} removes a host that serves the cluster as {} only (its clean would reach what it serves as {g}); it stays (no host was contacted)",
                self.command, self.what
            )
            .into());
        }
        Ok(())
    }
}

/// Plans that reach no host (a step whose hosts were all left out, an empty `[ex_lb]`) are not
/// run.
pub fn drop_empty(plans: &mut Vec<StepPlan>) {
    plans.retain(|p| !p.waves.is_empty());
}

/// 99.clean for `host` alone, as `ezk destroy` cleans it (planned with the host still in the
/// inventory: `before`).
pub fn clean_plans(before: &Session, host: &str) -> Result<Vec<StepPlan>, Error> {
    let mut clean = before.plan(super::setup::DESTROY_STEP, &crate::session::NoFiles)?;
    for p in &mut clean {
        keep_only(p, &[host.to_string()]);
    }
    Ok(clean)
}

/// `--plan` of a drain: what it would do.
pub fn say_drain(s: &Session, node: &str, timeout: std::time::Duration) -> Step {
    if registered(s, node)? {
        println!("would cordon, drain (at most {}s) and delete node {node}", timeout.as_secs());
    } else {
        println!("node {node} is not registered: nothing to drain");
    }
    Ok(Flow::Next)
}

/// Delete Node `node` (gone already: nothing to do).
pub fn delete_node(s: &Session, node: &str) -> Step {
    s.kubectl(&["--request-timeout=30s", "delete", "node", node, "--ignore-not-found"])?;
    Ok(Flow::Next)
}
