//! `ezk del-master <cluster> <ip>` as phases (kubeasz's `ezctl del-master`; arguments in
//! `cli/del_master.rs`), add-master in reverse, ordered so the API never goes through the
//! master being removed once it stops:
//!
//! 1. the node is cordoned and drained (as del-node: bounded by `--drain-timeout`, `--force`);
//! 2. the load balancers drop it: kube-lb's upstream list on every other node (05 kube-node)
//!    and the ex_lb hosts' backend list (10 ex-lb), each LB reloaded, not restarted — run with
//!    the inventory without the host, before that inventory is written;
//! 3. the host is cleaned as `ezk destroy` cleans it (99.clean on that host only): its
//!    apiserver stops with nothing sent to it any more;
//! 4. the Node object is deleted;
//! 5. its lines go from `[kube_master]` (and `[kube_node]`) of `clusters/<name>/hosts`;
//! 6. on the other hosts, what listed it: its `/etc/hosts` line (01 prepare) and the route to
//!    its pod subnet (06 network, planned with the API's node list after the delete).
//!
//! The last master is refused, and so is a host that is also an etcd member, an ex_lb or a
//! chrony host (as del-node refuses them: the clean would reach what it serves). The
//! `kubernetes` certificate on the deploy machine is issued again without the host's address;
//! the other masters keep theirs, and no old apiserver, etcd or kubelet restarts. Asks first (the cluster's name) unless
//! `--yes`; `--plan` says what each phase would do and changes nothing. A run stopped halfway
//! is finished by running del-master again (the inventory changes last).

use super::Error;
use super::node_change::{self, Removal, Target};
use super::phase::{Flow, Phase, Step, skip};
use super::del_node::Request;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::session::Session;

struct DelMaster {
    req: Request,
    home: Home,
    /// The cluster as it is (the host in it): drains, cleans, deletes the Node.
    before: Option<Session>,
    /// The cluster without the host: the others' steps.
    after: Option<Session>,
    node: String,
    new_text: String,
    clean: Vec<StepPlan>,
    lb_targets: Vec<Target>,
    lbs: Vec<StepPlan>,
    list_targets: Vec<Target>,
    lists: Vec<StepPlan>,
}

impl DelMaster {
    fn before(&mut self) -> &mut Session {
        self.before.as_mut().expect("opened")
    }
    fn after(&mut self) -> &mut Session {
        self.after.as_mut().expect("opened")
    }
}

const MASTER: Removal = Removal {
    command: "del-master",
    group: "kube_master",
    what: "a master",
    last: "the last master",
    why_last: "a cluster without one has no API; add another with `ezk add-master` first",
    refuse: &["etcd", "ex_lb", "chrony"],
};

const PHASES: &[Phase<DelMaster>] = &[
    Phase::new("take the host out of [kube_master] (checked, not written yet)", edit_inventory),
    Phase::new("plan 99.clean on the host, 05/10 and 01/06 on the others", plan),
    Phase::new("ask for the cluster's name", ask).when(|d| !d.req.yes).dry_run(skip),
    Phase::new("cordon and drain the node", drain).dry_run(say_drain),
    Phase::new("take it out of kube-lb and ex-lb (reloaded)", run_lbs),
    Phase::new("clean the host", clean_host),
    Phase::new("delete the Node", delete_node).dry_run(skip),
    Phase::new("write the inventory", write).dry_run(skip),
    Phase::new("run 01/06 on the other hosts", run_lists),
    Phase::new("say what was done", say_done).when(|d| !d.req.run.json).dry_run(skip),
];

/// Run `ezk del-master`; the exit code is 0, 1 (not confirmed, a drain that did not finish) or
/// the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = DelMaster {
        req,
        home: home.clone(),
        before: None,
        after: None,
        node: String::new(),
        new_text: String::new(),
        clean: Vec::new(),
        lb_targets: Vec::new(),
        lbs: Vec::new(),
        list_targets: Vec::new(),
        lists: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn edit_inventory(d: &mut DelMaster) -> Step {
    let host = d.req.host.clone();
    let before = super::open_or_report(&d.home, &d.req.cluster, &d.req.extra_vars).map_err(|_| "the inventory has problems (above); fix them first")?;
    MASTER.check(&before, &host)?;
    let hosts_file = before.dir().join("hosts");
    let text = node_change::hosts_text(before.dir())?;
    let (text, removed) = edit::remove_host(&text, "kube_master", &host);
    let (new_text, _) = edit::remove_host(&text, "kube_node", &host);
    let after = node_change::session_with(&d.home, &d.req.cluster, &d.req.extra_vars, &new_text, &format!("{host} removed from [kube_master]"))?;
    if removed == 0 || after.inventory.groups_of(&host).iter().any(|g| g == "kube_master" || g == "kube_node") {
        return Err(format!(
            "{host} is in [kube_master] or [kube_node] through a host range or a child group of {}: remove it there by hand",
            hosts_file.display()
        )
        .into());
    }
    d.node = before.node_name(&host);
    let nodes = node_change::hosts_in(&after, &["kube_master", "kube_node"]);
    d.lb_targets = vec![
        Target { step: "05.kube-node", hosts: nodes.clone() },
        Target { step: "10.ex-lb", hosts: node_change::hosts_in(&after, &["ex_lb"]) },
    ];
    d.lb_targets.retain(|t| !t.hosts.is_empty());
    d.list_targets = vec![
        Target { step: "01.prepare", hosts: node_change::hosts_in(&after, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]) },
        Target { step: "06.network", hosts: nodes },
    ];
    d.before = Some(before);
    d.after = Some(after);
    d.new_text = new_text;
    Ok(Flow::Next)
}

fn plan(d: &mut DelMaster) -> Step {
    d.clean = node_change::clean_plans(d.before.as_ref().expect("opened"), &d.req.host)?;
    let after = d.after.as_mut().expect("opened");
    d.lbs = node_change::plan_reaching(after, &d.lb_targets)?;
    d.lists = node_change::plan_reaching(after, &d.list_targets)?;
    Ok(Flow::Next)
}

fn ask(d: &mut DelMaster) -> Step {
    let what = format!(
        "This drains master {} ({}) of cluster {}, takes it out of the load balancers, stops and removes everything ezk set up on it, deletes its Node and takes it out of the inventory.",
        d.node, d.req.host, d.req.cluster
    );
    node_change::confirm("del-master", &d.req.cluster, &what)
}

fn say_drain(d: &mut DelMaster) -> Step {
    node_change::say_drain(d.before.as_ref().expect("opened"), &d.node, d.req.drain_timeout)
}

fn drain(d: &mut DelMaster) -> Step {
    let (node, force, timeout) = (d.node.clone(), d.req.force, d.req.drain_timeout);
    node_change::drain(d.before(), "del-master", &node, force, timeout)
}

/// The others' load balancers, run by the session without the host (the lock is one per
/// cluster: each session gives it up when its phase is done).
fn run_lbs(d: &mut DelMaster) -> Step {
    d.before().unlock();
    let (plans, targets, opts) = (std::mem::take(&mut d.lbs), std::mem::take(&mut d.lb_targets), d.req.run.clone());
    let flow = node_change::run_flow(d.after(), &plans, &targets, &opts)?;
    d.after().unlock();
    Ok(flow)
}

fn clean_host(d: &mut DelMaster) -> Step {
    let (plans, opts) = (std::mem::take(&mut d.clean), d.req.run.clone());
    let s = d.before();
    let ready = super::run_steps::prepare(s)?;
    super::run_steps::run(s, &ready, &plans, &opts, None)
}

fn delete_node(d: &mut DelMaster) -> Step {
    node_change::delete_node(d.before.as_ref().expect("opened"), &d.node)
}

fn write(d: &mut DelMaster) -> Step {
    d.before = None;
    let text = d.new_text.clone();
    node_change::write_hosts(d.after(), &text)?;
    Ok(Flow::Next)
}

/// Under `--plan` the others are shown as the inventory without the host makes them (the
/// route to the node still there: it goes once the Node is deleted).
fn run_lists(d: &mut DelMaster) -> Step {
    d.before = None;
    let (plans, targets, opts) = (std::mem::take(&mut d.lists), std::mem::take(&mut d.list_targets), d.req.run.clone());
    node_change::run_flow(d.after(), &plans, &targets, &opts)
}

fn say_done(d: &mut DelMaster) -> Step {
    println!("master {} ({}) removed from cluster {}", d.node, d.req.host, d.req.cluster);
    Ok(Flow::Next)
}
