//! `ezk add-node <cluster> <ip> [k=v ...]` as phases (kubeasz's `ezctl add-node`; arguments in
//! `cli/add_node.rs`): the host goes into `[kube_node]` of `clusters/<name>/hosts` (every other
//! line kept), and only what must change runs:
//!
//! | step | hosts | why |
//! |---|---|---|
//! | 01 prepare | every host of the play | the new host's OS base; on the others only the node-name lines of `/etc/hosts` and the chrony server's `allow` list change |
//! | 03 runtime | the new host | |
//! | 05 kube-node | the new host, and the first master | kubelet, kube-proxy, kube-lb on the new host; its role label from the first master |
//! | 06 network | every node | the new host's CNI and routes; on the others one route more |
//!
//! No other file on the old hosts changes, so nothing of theirs restarts but the one-shot that
//! applies the routes (and chrony on its server). The host line is written before the first
//! host is contacted: a run stopped halfway is finished by running add-node again (a host
//! already in `[kube_node]` is not added twice). `--plan` writes nothing and shows per host
//! what would change.

pub(super) use super::node_change::Target;
use super::node_change;
use super::phase::{Flow, Phase, Step, skip};
use super::Error;
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The node to add.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// The host's address, as the inventory names hosts.
    pub host: String,
    /// Host variables for its line (`k8s_nodename=…`).
    pub vars: Vec<(String, String)>,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

/// What differs between add-node and add-master: the group the host joins, the groups it may
/// not be in already, the steps per host, the closing line.
pub(super) struct Kind {
    pub command: &'static str,
    pub group: &'static str,
    /// Groups a new host may not be in (it serves the cluster as it is).
    pub refuse: &'static [&'static str],
    /// The steps and the hosts each must reach, in run order (the session has the host in).
    pub targets: fn(&Session, &str) -> Vec<Target>,
    /// The closing line: (node name, request).
    pub done: fn(&str, &Request) -> String,
}

const NODE: Kind = Kind {
    command: "add-node",
    group: "kube_node",
    refuse: &[],
    targets: node_targets,
    done: |name, req| format!("node {name} ({}) added to cluster {} and Ready", req.host, req.cluster),
};

struct AddNode {
    kind: &'static Kind,
    req: Request,
    home: Home,
    /// The new hosts file; None: the host is in `[kube_node]` already (a re-run).
    new_text: Option<String>,
    session: Option<Session>,
    targets: Vec<Target>,
    plans: Vec<StepPlan>,
}

impl AddNode {
    fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("opened in the first phase")
    }
}

const PHASES: &[Phase<AddNode>] = &[
    Phase::new("add the host to the inventory (checked, not written yet)", edit_inventory),
    Phase::new("plan the steps for the hosts that change", plan),
    Phase::new("write the inventory", write).when(|a| a.new_text.is_some()).dry_run(skip),
    Phase::new("run the steps on the hosts", run_on_hosts),
    Phase::new("say what was done", say_done).when(|a| !a.req.run.json).dry_run(skip),
];

/// Run `ezk add-node`; the exit code is 0 or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    run_kind(home, req, &NODE)
}

/// Run add-node or add-master (`kind`).
pub(super) fn run_kind(home: &Home, req: Request, kind: &'static Kind) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = AddNode { kind, req, home: home.clone(), new_text: None, session: None, targets: Vec::new(), plans: Vec::new() };
    super::phase::run(PHASES, &mut state, plan_only)
}

/// The host must be an address, not in the kind's group already with other variables (a
/// re-run converges it), nor in a group the kind refuses. Variables with upper case
/// K8S_NODENAME are written as kubeasz's `k8s_nodename`, which config.yml's K8S_NODENAME reads.
fn edit_inventory(a: &mut AddNode) -> Step {
    let (host, kind) = (a.req.host.clone(), a.kind);
    let (command, group) = (kind.command, kind.group);
    if host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("{command} takes the new host's IP address (as ezctl does), got {host:?}; no host was contacted").into());
    }
    let current = super::open_or_report(&a.home, &a.req.cluster, &a.req.extra_vars).map_err(|_| "the inventory has problems (above); fix them first")?;
    let dir = current.dir().to_path_buf();
    let text = node_change::hosts_text(&dir)?;
    let groups = current.inventory.groups_of(&host);
    let vars: Vec<(String, String)> = a
        .req
        .vars
        .iter()
        .map(|(k, v)| (if k == "K8S_NODENAME" { "k8s_nodename".to_string() } else { k.clone() }, v.clone()))
        .collect();
    if groups.iter().any(|g| g == group) {
        if !vars.is_empty() {
            return Err(format!(
                "{host} is in [{group}] of {} already: change its variables there, then run `ezk {command} {} {host}` again",
                dir.join("hosts").display(),
                a.req.cluster
            )
            .into());
        }
        eprintln!("{host} is in [{group}] already: converging it");
        a.session = Some(current);
    } else if let Some(g) = groups.iter().find(|g| kind.refuse.contains(&g.as_str())) {
        return Err(format!(
            "{host} is in [{g}] of {} already: {command} brings in a new host (a worker leaves with `ezk del-node` first); no host was contacted",
            dir.join("hosts").display()
        )
        .into());
    } else {
        let line = edit::host_line(&host, &vars).map_err(|e| format!("{command} {host}: {e}; no host was contacted"))?;
        let new_text = edit::add_host_line(&text, group, &line);
        a.session = Some(node_change::session_with(&a.home, &a.req.cluster, &a.req.extra_vars, &new_text, &format!("host line `{line}` in [{group}]"))?);
        a.new_text = Some(new_text);
    }
    a.targets = (kind.targets)(a.session(), &host);
    a.targets.retain(|t| !t.hosts.is_empty());
    Ok(Flow::Next)
}

/// add-node's steps: the new host's, and on the others what lists the nodes.
fn node_targets(s: &Session, host: &str) -> Vec<Target> {
    let every = node_change::hosts_in(s, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]);
    let nodes = node_change::hosts_in(s, &["kube_master", "kube_node"]);
    let first_master = s.inventory.hosts_in("kube_master").first().cloned();
    let new_and_first: Vec<String> = std::iter::once(host.to_string()).chain(first_master).collect();
    vec![
        Target { step: "01.prepare", hosts: every },
        Target { step: "03.runtime", hosts: vec![host.to_string()] },
        Target { step: "05.kube-node", hosts: new_and_first },
        Target { step: "06.network", hosts: nodes },
    ]
}

fn plan(a: &mut AddNode) -> Step {
    a.plans = node_change::plan_reaching(a.session.as_mut().expect("opened"), &a.targets)?;
    Ok(Flow::Next)
}

fn write(a: &mut AddNode) -> Step {
    let text = a.new_text.clone().expect("when: an edit");
    node_change::write_hosts(a.session(), &text)?;
    Ok(Flow::Next)
}

fn run_on_hosts(a: &mut AddNode) -> Step {
    let session = a.session.as_mut().expect("opened");
    node_change::run_flow(session, &a.plans, &a.targets, &a.req.run)
}

fn say_done(a: &mut AddNode) -> Step {
    let name = a.session.as_ref().expect("opened").node_name(&a.req.host);
    println!("{}", (a.kind.done)(&name, &a.req));
    Ok(Flow::Next)
}
