//! `ezk del-etcd <cluster> <ip>` as phases (kubeasz's `ezctl del-etcd`; arguments in
//! `cli/del_etcd.rs`), add-etcd in reverse, ordered so no client is left pointing at a member
//! that is gone and the quorum holds at every moment:
//!
//! 1. the host comes out of `[etcd]` (checked, not written yet);
//! 2. the members are read over TLS from this machine and checked (`etcd_change`): never the
//!    last, a majority healthy now and a majority of those that stay healthy, an even count
//!    after only with `--allow-even`;
//! 3. 04 kube-master on every master with the inventory without the host: `--etcd-servers`
//!    loses it, each apiserver restarted and ready before the next;
//! 4. `etcdctl member remove` (through a member that stays): the cluster shrinks to the others;
//! 5. the host is cleaned as `ezk destroy` cleans it (99.clean on that host only): etcd stops,
//!    its data, unit and certificates go;
//! 6. its line goes from `[etcd]` of `clusters/<name>/hosts`;
//! 7. 01 on the other hosts (the chrony server's `allow` list);
//! 8. the members read again: every one healthy.
//!
//! A host that serves the cluster otherwise too (a master, a node, an ex_lb or chrony host) is
//! refused: its clean would reach what it serves (the etcd CA an apiserver reads among them).
//! The members that stay are not restarted (their copy of `etcd.pem` still names them; a later
//! `ezk setup <c> 02` brings it up to date, rolling). Asks first (the cluster's name) unless
//! `--yes`; `--plan` says what each phase would do and changes nothing. A run stopped halfway
//! is finished by running del-etcd again (the inventory changes last).

use super::Error;
use super::etcd_change::{self, MemberState};
use super::etcd_tools::{EtcdTools, Member};
use super::node_change::{self, Removal, Target};
use super::phase::{Flow, Phase, Step, skip};
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::session::Session;

/// The member to remove.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    pub host: String,
    /// Do not ask (`--yes`).
    pub yes: bool,
    /// Accept an even member count (`--allow-even`).
    pub allow_even: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

struct DelEtcd {
    req: Request,
    home: Home,
    /// The cluster as it is (the host in it): the clean.
    before: Option<Session>,
    /// The cluster without the host: the apiservers, the others' lists, the membership.
    after: Option<Session>,
    tools: Option<EtcdTools>,
    members: Vec<MemberState>,
    /// The member to remove; None: it is none any more (a re-run).
    member: Option<Member>,
    new_text: String,
    master_targets: Vec<Target>,
    masters: Vec<StepPlan>,
    clean: Vec<StepPlan>,
    list_targets: Vec<Target>,
    lists: Vec<StepPlan>,
}

impl DelEtcd {
    fn after(&mut self) -> &mut Session {
        self.after.as_mut().expect("opened")
    }
}

const ETCD: Removal = Removal {
    command: "del-etcd",
    group: "etcd",
    what: "an etcd member",
    last: "the last etcd member",
    why_last: "without it there is no cluster data (`ezk backup` keeps a snapshot)",
    refuse: &["kube_master", "kube_node", "ex_lb", "chrony"],
};

const PHASES: &[Phase<DelEtcd>] = &[
    Phase::new("take the host out of [etcd] (checked, not written yet)", edit_inventory),
    Phase::new("read the members over TLS and check the quorum", check_members),
    Phase::new("plan 04 on the masters, 99.clean on the host, 01 on the others", plan),
    Phase::new("ask for the cluster's name", ask).when(|d| !d.req.yes).dry_run(skip),
    Phase::new("roll --etcd-servers of every apiserver without it (04, one master at a time)", run_masters),
    Phase::new("remove the member (etcdctl member remove)", member_remove).dry_run(say_member_remove),
    Phase::new("clean the host", clean_host),
    Phase::new("write the inventory", write).dry_run(skip),
    Phase::new("run 01 on the other hosts", run_lists),
    Phase::new("read the members again: every one healthy", verify).dry_run(skip),
    Phase::new("say what was done", say_done).when(|d| !d.req.run.json).dry_run(skip),
];

/// Run `ezk del-etcd`; the exit code is 0, 1 (not confirmed) or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = DelEtcd {
        req,
        home: home.clone(),
        before: None,
        after: None,
        tools: None,
        members: Vec::new(),
        member: None,
        new_text: String::new(),
        master_targets: Vec::new(),
        masters: Vec::new(),
        clean: Vec::new(),
        list_targets: Vec::new(),
        lists: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn edit_inventory(d: &mut DelEtcd) -> Step {
    let host = d.req.host.clone();
    let text = node_change::hosts_text(&d.home.cluster_dir(&d.req.cluster))?;
    let before = node_change::etcd_session_with(&d.home, &d.req.cluster, &d.req.extra_vars, &text, "the inventory as it is")?;
    ETCD.check(&before, &host)?;
    let hosts_file = before.dir().join("hosts");
    let (new_text, removed) = edit::remove_host(&text, "etcd", &host);
    let after = node_change::etcd_session_with(&d.home, &d.req.cluster, &d.req.extra_vars, &new_text, &format!("{host} removed from [etcd]"))?;
    if removed == 0 || after.inventory.groups_of(&host).iter().any(|g| g == "etcd") {
        return Err(format!("{host} is in [etcd] through a host range or a child group of {}: remove it there by hand", hosts_file.display()).into());
    }
    d.master_targets = vec![Target { step: "04.kube-master", hosts: node_change::hosts_in(&after, &["kube_master"]) }];
    d.list_targets = vec![Target { step: "01.prepare", hosts: node_change::hosts_in(&after, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]) }];
    d.before = Some(before);
    d.after = Some(after);
    d.new_text = new_text;
    Ok(Flow::Next)
}

fn check_members(d: &mut DelEtcd) -> Step {
    let before = d.before.as_ref().expect("opened");
    // From the cluster as it is: the `etcd` certificate loses the address only in the plan.
    let tools = EtcdTools::for_cluster(before)?;
    let group = before.inventory.hosts_in("etcd").to_vec();
    // Read through the members that stay first: the one leaving may be the one that is down.
    let mut read_from: Vec<String> = group.iter().filter(|h| **h != d.req.host).cloned().collect();
    read_from.push(d.req.host.clone());
    d.members = etcd_change::read(before, &tools, &read_from)?;
    let hosts_file = before.dir().join("hosts").display().to_string();
    d.member = etcd_change::may_remove(&d.members, &group, &d.req.host, d.req.allow_even, &hosts_file)?;
    eprintln!("etcd members of cluster {}:\n{}", d.req.cluster, etcd_change::describe(&d.members));
    if d.member.is_none() {
        eprintln!("{} is no etcd member any more: finishing what a stopped del-etcd left", d.req.host);
    }
    d.tools = Some(tools);
    Ok(Flow::Next)
}

fn plan(d: &mut DelEtcd) -> Step {
    d.clean = node_change::clean_plans(d.before.as_ref().expect("opened"), &d.req.host)?;
    let after = d.after.as_mut().expect("opened");
    d.masters = node_change::plan_reaching(after, &d.master_targets)?;
    d.lists = node_change::plan_reaching(after, &d.list_targets)?;
    Ok(Flow::Next)
}

fn ask(d: &mut DelEtcd) -> Step {
    let what = format!(
        "This takes etcd member {} of cluster {} out of every apiserver's --etcd-servers (restarting them one at a time), removes it from the etcd cluster, stops it and deletes its data, and takes it out of the inventory.",
        d.req.host, d.req.cluster
    );
    node_change::confirm("del-etcd", &d.req.cluster, &what)
}

/// The apiservers, run by the session without the host (the lock is one per cluster: each
/// session gives it up when its phase is done).
fn run_masters(d: &mut DelEtcd) -> Step {
    d.before.as_mut().expect("opened").unlock();
    let (plans, targets, opts) = (std::mem::take(&mut d.masters), std::mem::take(&mut d.master_targets), d.req.run.clone());
    node_change::run_flow(d.after(), &plans, &targets, &opts)
}

fn say_member_remove(d: &mut DelEtcd) -> Step {
    if let Some(m) = &d.member {
        eprintln!("would remove member {} ({}, ID {}) from the {} members", m.name, d.req.host, m.hex_id(), d.members.len());
    }
    Ok(Flow::Next)
}

fn member_remove(d: &mut DelEtcd) -> Step {
    let Some(m) = d.member.clone() else {
        return Ok(Flow::Next);
    };
    let host = d.req.host.clone();
    let s = d.after.as_mut().expect("opened");
    s.lock()?;
    let tools = d.tools.as_ref().expect("found");
    let mut tried = Vec::new();
    for h in s.inventory.hosts_in("etcd") {
        let ep = etcd_change::client_url(s, h);
        let out = tools.etcdctl(&ep, &["--command-timeout=15s", "member", "remove", &m.hex_id()])?;
        let said = super::etcd_tools::text(&out);
        if out.status.success() || said.contains("member not found") {
            eprintln!("member {} ({host}) removed through {ep}", m.name);
            return Ok(Flow::Next);
        }
        tried.push(format!("{ep}: {said}"));
    }
    Err(format!("etcdctl member remove {} failed on every member that stays:\n  {}", m.hex_id(), tried.join("\n  ")).into())
}

fn clean_host(d: &mut DelEtcd) -> Step {
    d.after().unlock();
    let (plans, opts) = (std::mem::take(&mut d.clean), d.req.run.clone());
    let s = d.before.as_mut().expect("opened");
    let ready = super::run_steps::prepare(s)?;
    let flow = super::run_steps::run(s, &ready, &plans, &opts, None)?;
    s.unlock();
    Ok(flow)
}

fn write(d: &mut DelEtcd) -> Step {
    d.before = None;
    let text = d.new_text.clone();
    node_change::write_hosts(d.after(), &text)?;
    Ok(Flow::Next)
}

fn run_lists(d: &mut DelEtcd) -> Step {
    d.before = None;
    let (plans, targets, opts) = (std::mem::take(&mut d.lists), std::mem::take(&mut d.list_targets), d.req.run.clone());
    node_change::run_flow(d.after(), &plans, &targets, &opts)
}

fn verify(d: &mut DelEtcd) -> Step {
    let s = d.after.as_ref().expect("opened");
    let tools = d.tools.as_ref().expect("found");
    let group = s.inventory.hosts_in("etcd").to_vec();
    d.members = etcd_change::read(s, tools, &group)?;
    eprintln!("etcd members of cluster {}:\n{}", d.req.cluster, etcd_change::describe(&d.members));
    let listed: Vec<&str> = d.members.iter().map(|m| m.host.as_str()).collect();
    if d.members.iter().any(|m| m.health.is_err()) || listed.contains(&d.req.host.as_str()) || group.iter().any(|h| !listed.contains(&h.as_str())) {
        return Err(format!("after del-etcd the members are not the [etcd] hosts, each healthy (above); run `ezk setup {} 02` to see why", d.req.cluster).into());
    }
    Ok(Flow::Next)
}

fn say_done(d: &mut DelEtcd) -> Step {
    println!("etcd member {} removed from cluster {}: {} members, every one healthy", d.req.host, d.req.cluster, d.members.len());
    Ok(Flow::Next)
}
