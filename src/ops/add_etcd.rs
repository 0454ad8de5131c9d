//! `ezk add-etcd <cluster> <ip>` as phases (kubeasz's `ezctl add-etcd`; arguments in
//! `cli/add_etcd.rs`): a member joins the running etcd cluster, keeping its quorum:
//!
//! 1. the host goes into `[etcd]` of `clusters/<name>/hosts` (checked, written before any host
//!    changes: a run stopped halfway is finished by running add-etcd again);
//! 2. the members are read over TLS from this machine and checked (`etcd_change`): every one
//!    healthy, the inventory and etcd agreeing, no 1-member cluster, an even count only with
//!    `--allow-even`;
//! 3. 01 prepare on every host (the new host's OS base; on the others only the chrony server's
//!    `allow` list changes);
//! 4. `etcdctl member add etcd-<ip> --peer-urls=https://<ip>:<ETCD_PEER_PORT>` — from here the
//!    cluster counts the new member, and the others (all healthy) still make a majority;
//! 5. 02 etcd on the new host only, rendered with `CLUSTER_STATE=existing`: it starts with
//!    `--initial-cluster-state=existing` and an initial cluster of every member, itself too, and
//!    is healthy over TLS before the step ends;
//! 6. 04 kube-master on every master: `--etcd-servers` gains the member, each apiserver
//!    restarted and ready before the next (the role's `serial: 1`);
//! 7. the members read again: every one started and healthy.
//!
//! The old members are not touched: their `--initial-cluster` is read only when a member first
//! forms its data directory, and their `etcd.pem` names them, which is all their peers and
//! clients check — so nothing of theirs changes and none restarts. The `etcd` certificate on
//! this machine is issued again with the new address (the new member gets that one); a later
//! `ezk setup <c> 02` brings the old members' copy and unit text up to date with one rolling
//! restart, one member at a time, each healthy before the next. `--plan` writes nothing, adds no
//! member, and shows per host what would change.

use super::Error;
use super::etcd_change::{self, MemberState};
use super::etcd_tools::EtcdTools;
use super::node_change::{self, Target};
use super::phase::{Flow, Phase, Step, skip};
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The member to add.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// The new member's address, as the inventory names hosts.
    pub host: String,
    /// Accept an even member count (`--allow-even`).
    pub allow_even: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

struct AddEtcd {
    req: Request,
    home: Home,
    /// The new hosts file; None: the host is in `[etcd]` already (a re-run).
    new_text: Option<String>,
    /// The cluster with the host in `[etcd]`: 01, 04, the membership.
    session: Option<Session>,
    /// The same, with `CLUSTER_STATE=existing`: 02 on the new member.
    join: Option<Session>,
    tools: Option<EtcdTools>,
    /// `[etcd]` without the new host.
    old: Vec<String>,
    members: Vec<MemberState>,
    /// `member add` is needed (not a member yet).
    add: bool,
    targets: Vec<Vec<Target>>,
    plans: Vec<Vec<StepPlan>>,
}

impl AddEtcd {
    fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("opened in the first phase")
    }
}

const PHASES: &[Phase<AddEtcd>] = &[
    Phase::new("add the host to [etcd] (checked, not written yet)", edit_inventory),
    Phase::new("read the members over TLS and check the quorum", check_members),
    Phase::new("plan 01 on every host, 02 on the new member, 04 on the masters", plan),
    Phase::new("write the inventory", write).when(|a| a.new_text.is_some()).dry_run(skip),
    Phase::new("run 01 on every host", run_prepare),
    Phase::new("add the member (etcdctl member add)", member_add).dry_run(say_member_add),
    Phase::new("start it: 02 on the new member (initial-cluster-state=existing)", run_etcd),
    Phase::new("roll --etcd-servers of every apiserver (04, one master at a time)", run_masters),
    Phase::new("read the members again: every one healthy", verify).dry_run(skip),
    Phase::new("say what was done", say_done).when(|a| !a.req.run.json).dry_run(skip),
];

/// Run `ezk add-etcd`; the exit code is 0 or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = AddEtcd {
        req,
        home: home.clone(),
        new_text: None,
        session: None,
        join: None,
        tools: None,
        old: Vec::new(),
        members: Vec::new(),
        add: false,
        targets: Vec::new(),
        plans: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn edit_inventory(a: &mut AddEtcd) -> Step {
    let host = a.req.host.clone();
    if host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("add-etcd takes the new member's IP address (as ezctl does), got {host:?}; no host was contacted").into());
    }
    let text = node_change::hosts_text(&a.home.cluster_dir(&a.req.cluster))?;
    let current = node_change::etcd_session_with(&a.home, &a.req.cluster, &a.req.extra_vars, &text, "the inventory as it is")?;
    let join_vars: Vec<(String, String)> =
        a.req.extra_vars.iter().cloned().chain([("CLUSTER_STATE".to_string(), "existing".to_string())]).collect();
    // etcdctl and its client certificate, from the cluster as it is (the new address goes into
    // the `etcd` certificate only once the checks pass: the plan issues it).
    a.tools = Some(EtcdTools::for_cluster(&current)?);
    let text = if current.inventory.groups_of(&host).iter().any(|g| g == "etcd") {
        eprintln!("{host} is in [etcd] already: converging it");
        a.session = Some(current);
        text
    } else {
        let new_text = edit::add_host_line(&text, "etcd", &host);
        a.session = Some(node_change::etcd_session_with(&a.home, &a.req.cluster, &a.req.extra_vars, &new_text, &format!("host line `{host}` in [etcd]"))?);
        a.new_text = Some(new_text.clone());
        new_text
    };
    a.join = Some(node_change::etcd_session_with(&a.home, &a.req.cluster, &join_vars, &text, &format!("{host} joining [etcd]"))?);
    let s = a.session.as_ref().expect("opened above");
    let old = s.inventory.hosts_in("etcd").iter().filter(|h| **h != host).cloned().collect();
    let every = node_change::hosts_in(s, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]);
    let masters = node_change::hosts_in(s, &["kube_master"]);
    a.old = old;
    a.targets = vec![
        vec![Target { step: "01.prepare", hosts: every }],
        vec![Target { step: "02.etcd", hosts: vec![host] }],
        vec![Target { step: "04.kube-master", hosts: masters }],
    ];
    Ok(Flow::Next)
}

fn check_members(a: &mut AddEtcd) -> Step {
    let s = a.session.as_ref().expect("opened");
    let tools = a.tools.as_ref().expect("found");
    let mut read_from = a.old.clone();
    read_from.push(a.req.host.clone());
    a.members = etcd_change::read(s, tools, &read_from)?;
    let hosts_file = s.dir().join("hosts").display().to_string();
    a.add = etcd_change::may_add(&a.members, &a.old, &a.req.host, a.req.allow_even, &hosts_file)?;
    eprintln!("etcd members of cluster {}:\n{}", a.req.cluster, etcd_change::describe(&a.members));
    if !a.add {
        eprintln!("{} is a member already: starting it and rolling the apiservers only", a.req.host);
    }
    Ok(Flow::Next)
}

fn plan(a: &mut AddEtcd) -> Step {
    a.plans.clear();
    for (i, t) in a.targets.iter().enumerate() {
        let s = if i == 1 { a.join.as_mut().expect("opened") } else { a.session.as_mut().expect("opened") };
        a.plans.push(node_change::plan_reaching(s, t)?);
    }
    Ok(Flow::Next)
}

fn write(a: &mut AddEtcd) -> Step {
    let text = a.new_text.clone().expect("when: an edit");
    node_change::write_hosts(a.session(), &text)?;
    Ok(Flow::Next)
}

/// Run plan set `i` with session `session` (the join session for 02), under the cluster lock,
/// which the other session gives up meanwhile.
fn run_set(a: &mut AddEtcd, i: usize) -> Step {
    let (plans, targets, opts) = (std::mem::take(&mut a.plans[i]), std::mem::take(&mut a.targets[i]), a.req.run.clone());
    if plans.is_empty() {
        return Ok(Flow::Next);
    }
    let (run, other) = if i == 1 { (&mut a.join, &mut a.session) } else { (&mut a.session, &mut a.join) };
    other.as_mut().expect("opened").unlock();
    node_change::run_flow(run.as_mut().expect("opened"), &plans, &targets, &opts)
}

fn run_prepare(a: &mut AddEtcd) -> Step {
    run_set(a, 0)
}

fn say_member_add(a: &mut AddEtcd) -> Step {
    if a.add {
        let peer = etcd_change::peer_url(a.session.as_ref().expect("opened"), &a.req.host);
        eprintln!("would add member etcd-{} ({peer}) to the {} members", a.req.host, a.members.len());
    }
    Ok(Flow::Next)
}

fn member_add(a: &mut AddEtcd) -> Step {
    if !a.add {
        return Ok(Flow::Next);
    }
    let host = a.req.host.clone();
    let s = a.session.as_mut().expect("opened");
    s.lock()?;
    let peer = etcd_change::peer_url(s, &host);
    let tools = a.tools.as_ref().expect("found");
    let name = format!("etcd-{host}");
    let mut tried = Vec::new();
    for h in &a.old {
        let ep = etcd_change::client_url(s, h);
        let out = tools.etcdctl(&ep, &["--command-timeout=15s", "member", "add", &name, &format!("--peer-urls={peer}")])?;
        if out.status.success() {
            eprintln!("member {name} ({peer}) added through {ep}");
            return Ok(Flow::Next);
        }
        let said = super::etcd_tools::text(&out);
        if said.contains("Peer URLs already exists") {
            eprintln!("member {name} ({peer}) is in the cluster already");
            return Ok(Flow::Next);
        }
        tried.push(format!("{ep}: {said}"));
    }
    Err(format!("etcdctl member add {name} failed on every member:\n  {}", tried.join("\n  ")).into())
}

fn run_etcd(a: &mut AddEtcd) -> Step {
    run_set(a, 1)
}

fn run_masters(a: &mut AddEtcd) -> Step {
    run_set(a, 2)
}

fn verify(a: &mut AddEtcd) -> Step {
    let s = a.session.as_ref().expect("opened");
    let tools = a.tools.as_ref().expect("found");
    let group = s.inventory.hosts_in("etcd").to_vec();
    // The new member was healthy at the end of 02; the apiserver restarts do not touch etcd.
    a.members = etcd_change::read(s, tools, &group)?;
    let listed: Vec<&str> = a.members.iter().map(|m| m.host.as_str()).collect();
    let bad = a.members.iter().any(|m| m.health.is_err()) || group.iter().any(|h| !listed.contains(&h.as_str()));
    eprintln!("etcd members of cluster {}:\n{}", a.req.cluster, etcd_change::describe(&a.members));
    if bad {
        return Err(format!("after add-etcd the members are not every [etcd] host, each healthy (above); run add-etcd {} {} again", a.req.cluster, a.req.host).into());
    }
    Ok(Flow::Next)
}

fn say_done(a: &mut AddEtcd) -> Step {
    println!(
        "etcd member etcd-{} added to cluster {}: {} members, every one healthy, every apiserver using it",
        a.req.host,
        a.req.cluster,
        a.members.len()
    );
    Ok(Flow::Next)
}
