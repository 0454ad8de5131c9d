//! `ezk del-node <cluster> <ip>` as phases (kubeasz's `ezctl del-node`; arguments in
//! `cli/del_node.rs`):
//!
//! 1. the node is cordoned and drained (`kubectl drain --ignore-daemonsets
//!    --delete-emptydir-data`, bounded by `--drain-timeout`); a drain that does not finish stops
//!    here, the node left cordoned (`kubectl uncordon` undoes it) — unless `--force`: then pods
//!    no controller manages are deleted too, and a drain that still does not finish in time
//!    (a PodDisruptionBudget, a pod that will not stop) is given up and its pods go with the host;
//! 2. the Node object is deleted;
//! 3. the host is cleaned as `ezk destroy` cleans it (99.clean on that host only);
//! 4. its line goes from `[kube_node]` of `clusters/<name>/hosts` (every other line kept);
//! 5. on the other hosts, what listed it: its `/etc/hosts` line (01 prepare) and the route to
//!    its pod subnet (06 network, planned with the API's node list after the delete).
//!
//! A master (`ezk del-master` removes one), an etcd member or an ex_lb/chrony host is refused
//! (it serves the cluster). Asks
//! first (the cluster's name) unless `--yes`; `--plan` says what each phase would do and
//! changes nothing. A run stopped halfway is finished by running del-node again.

use std::time::Duration;

use super::Error;
use super::node_change::{self, Target};
use super::phase::{Flow, Phase, Step, skip};
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The node to remove.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    pub host: String,
    /// Do not ask (`--yes`).
    pub yes: bool,
    /// Drain past pods no controller manages, and go on when the drain times out.
    pub force: bool,
    /// How long the drain may take.
    pub drain_timeout: Duration,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

struct DelNode {
    req: Request,
    home: Home,
    /// The cluster as it is (the host in it): drains and cleans.
    before: Option<Session>,
    /// The cluster without the host: the others' steps.
    after: Option<Session>,
    node: String,
    new_text: String,
    clean: Vec<StepPlan>,
    targets: Vec<Target>,
    others: Vec<StepPlan>,
}

const PHASES: &[Phase<DelNode>] = &[
    Phase::new("take the host out of the inventory (checked, not written yet)", edit_inventory),
    Phase::new("plan 99.clean on the host and 01/06 on the others", plan),
    Phase::new("ask for the cluster's name", ask).when(|d| !d.req.yes).dry_run(skip),
    Phase::new("cordon and drain the node", drain).dry_run(say_drain),
    Phase::new("delete the Node", delete_node).dry_run(skip),
    Phase::new("clean the host", clean_host),
    Phase::new("write the inventory", write).dry_run(skip),
    Phase::new("run 01/06 on the other hosts", run_on_others).dry_run(plan_on_others),
    Phase::new("say what was done", say_done).when(|d| !d.req.run.json).dry_run(skip),
];

/// Run `ezk del-node`; the exit code is 0, 1 (not confirmed, a drain that did not finish) or
/// the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = DelNode {
        req,
        home: home.clone(),
        before: None,
        after: None,
        node: String::new(),
        new_text: String::new(),
        clean: Vec::new(),
        targets: Vec::new(),
        others: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn edit_inventory(d: &mut DelNode) -> Step {
    let host = d.req.host.clone();
    let before = super::open_or_report(&d.home, &d.req.cluster, &d.req.extra_vars).map_err(|_| "the inventory has problems (above); fix them first")?;
    let hosts_file = before.dir().join("hosts");
    let groups = before.inventory.groups_of(&host);
    if let Some(g) = ["kube_master", "etcd", "ex_lb", "chrony"].into_iter().find(|g| groups.iter().any(|h| h == g)) {
        let master = if g == "kube_master" { format!("; a master leaves with `ezk del-master {} {host}`", d.req.cluster) } else { String::new() };
        return Err(format!(
            "{host} is in [{g}] of {}: del-node removes workers only; a host that serves the cluster as {g} stays{master} (no host was contacted)",
            hosts_file.display()
        )
        .into());
    }
    if !groups.iter().any(|g| g == "kube_node") {
        return Err(format!(
            "{host} is not in [kube_node] of {}: nothing to remove (a run that stopped after writing the inventory is finished by `ezk setup {} 06`)",
            hosts_file.display(),
            d.req.cluster
        )
        .into());
    }
    let text = node_change::hosts_text(before.dir())?;
    let (new_text, removed) = edit::remove_host(&text, "kube_node", &host);
    if removed == 0 {
        return Err(format!("{host} is in [kube_node] through a host range or a child group of {}: remove it there by hand", hosts_file.display()).into());
    }
    let after = node_change::session_with(&d.home, &d.req.cluster, &d.req.extra_vars, &new_text, &format!("{host} removed from [kube_node]"))?;
    d.node = before.node_name(&host);
    d.targets = vec![
        Target { step: "01.prepare", hosts: node_change::hosts_in(&after, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]) },
        Target { step: "06.network", hosts: node_change::hosts_in(&after, &["kube_master", "kube_node"]) },
    ];
    d.before = Some(before);
    d.after = Some(after);
    d.new_text = new_text;
    Ok(Flow::Next)
}

fn plan(d: &mut DelNode) -> Step {
    d.clean = node_change::clean_plans(d.before.as_ref().expect("opened"), &d.req.host)?;
    let after = d.after.as_mut().expect("opened");
    d.others = node_change::plan(after, &d.targets)?;
    Ok(Flow::Next)
}

fn ask(d: &mut DelNode) -> Step {
    let what = format!(
        "This drains node {} ({}) of cluster {}, deletes it, stops and removes everything ezk set up on it, and takes it out of the inventory.",
        d.node, d.req.host, d.req.cluster
    );
    node_change::confirm("del-node", &d.req.cluster, &what)
}

fn say_drain(d: &mut DelNode) -> Step {
    node_change::say_drain(d.before.as_ref().expect("opened"), &d.node, d.req.drain_timeout)
}

fn drain(d: &mut DelNode) -> Step {
    let s = d.before.as_mut().expect("opened");
    node_change::drain(s, "del-node", &d.node, d.req.force, d.req.drain_timeout)
}

fn delete_node(d: &mut DelNode) -> Step {
    node_change::delete_node(d.before.as_ref().expect("opened"), &d.node)
}

fn clean_host(d: &mut DelNode) -> Step {
    let s = d.before.as_mut().expect("opened");
    let ready = super::run_steps::prepare(s)?;
    super::run_steps::run(s, &ready, &d.clean, &d.req.run, None)
}

fn write(d: &mut DelNode) -> Step {
    // The lock is the file's, one per cluster: the session that drained gives it up for the
    // one that writes and runs the rest.
    d.before = None;
    let text = d.new_text.clone();
    node_change::write_hosts(d.after.as_mut().expect("opened"), &text)?;
    Ok(Flow::Next)
}

fn run_on_others(d: &mut DelNode) -> Step {
    node_change::run_flow(d.after.as_mut().expect("opened"), &d.others, &d.targets, &d.req.run)
}

/// Under `--plan` the others are shown as the inventory without the host makes them (the
/// route to the node still there: it goes once the Node is deleted).
fn plan_on_others(d: &mut DelNode) -> Step {
    d.before = None;
    run_on_others(d)
}

fn say_done(d: &mut DelNode) -> Step {
    println!("node {} ({}) removed from cluster {}", d.node, d.req.host, d.req.cluster);
    Ok(Flow::Next)
}
