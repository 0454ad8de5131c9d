//! `ezk del-etcd <cluster> <ip>` as phases (kubeasz's `ezctl del-etcd`; arguments in
//! `cli/del_etcd.rs`), add-etcd in reverse, ordered so no client is left pointing at a member
//! that is gone and the quorum holds at every moment:
//!
//! 1. the host comes out of `[etcd]` (checked, not written yet);
//! 2. the members are read over TLS from this machine and checked (`etcd_change`): never the
//!    last, a majority healthy now and a majority of those that stay healthy, an even count
//!    after only with `--allow-even` (not needed when the member removed is not healthy);
//! 3. 04 kube-master on every master with the inventory without the host: `--etcd-servers`
//!    loses it, each apiserver restarted and ready before the next;
//! 4. `etcdctl member remove` (through a member that stays): the cluster shrinks to the others;
//! 5. the host's etcd is cleaned: clean-etcd of 99.clean (what `ezk destroy` runs) on that host
//!    only, and only that role: etcd stops, its data, unit and server/peer certificate go;
//! 6. its line goes from `[etcd]` of `clusters/<name>/hosts`;
//! 7. 01 on the other hosts (the chrony server's `allow` list);
//! 8. the members read again: every one healthy.
//!
//! A host that serves the cluster otherwise too (kubeasz's default puts etcd on the masters)
//! keeps what it serves: only clean-etcd runs there. On a master, its kube-apiserver talks to
//! the other members with files of its own, which clean-etcd never touches (the kube-master
//! role's `apiserver-etcd-ca.pem`, `--etcd-cafile`, and `apiserver-etcd-client*.pem`; step 04
//! on the masters, before the removal, moves an apiserver set up before that file existed onto
//! it); the plan says so.
//!
//! A dead member (its etcd not answering) is removed through the others all the same. When its
//! host does not answer on SSH either, its clean is skipped and said so, with what is left there
//! and how to clean it once it is back; such a host that is also a master is refused (its
//! apiserver could not be rolled). The members that stay are not restarted (their copy of
//! `etcd.pem` still names them; a later `ezk setup <c> 02` brings it up to date, rolling). Asks
//! first (the cluster's name) unless `--yes`; `--plan` says what each phase would do and changes
//! nothing. A run stopped halfway is finished by running del-etcd again (the inventory changes
//! last).

use super::Error;
use super::etcd_change::{self, MemberState};
use super::etcd_tools::{EtcdTools, Member};
use super::node_change::{self, Removal, Target};
use super::phase::{Flow, Phase, Step, skip};
use crate::exec::Options;
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::{Action, StepPlan};
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
    /// The host is in `[kube_master]` too: its apiserver keeps the etcd CA.
    master: bool,
    /// Why the host's clean is skipped (its member is dead and SSH does not answer); None: cleaned.
    unreachable: Option<String>,
    /// What the full clean would remove and the clean of a master keeps.
    kept: Vec<String>,
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
    // Only the clean-etcd role runs on the host: what else it serves stays.
    refuse: &[],
};

/// The role of 99.clean that undoes the etcd role.
const CLEAN_ROLE: &str = "clean-etcd";

const PHASES: &[Phase<DelEtcd>] = &[
    Phase::new("take the host out of [etcd] (checked, not written yet)", edit_inventory),
    Phase::new("read the members over TLS and check the quorum", check_members),
    Phase::new("plan 04 on the masters, clean-etcd on the host, 01 on the others", plan),
    Phase::new("say what stays on the host", say_kept),
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
        master: false,
        unreachable: None,
        kept: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

fn edit_inventory(d: &mut DelEtcd) -> Step {
    let host = d.req.host.clone();
    let text = node_change::hosts_text(&d.home.cluster_dir(&d.req.cluster))?;
    let before = node_change::etcd_session_with(&d.home, &d.req.cluster, &d.req.extra_vars, &text, "the inventory as it is")?;
    ETCD.check(&before, &host)?;
    d.master = before.inventory.groups_of(&host).iter().any(|g| g == "kube_master");
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
    // A member that does not answer: is its host there at all (its clean needs SSH)?
    let dead = d.members.iter().find(|m| m.host == d.req.host).is_none_or(|m| m.health.is_err());
    if dead && let Err(why) = ssh_answers(before, &d.req.host, &d.req.run) {
        let others = other_groups(before, &d.req.host);
        if !others.is_empty() {
            return Err(format!(
                "{host}'s etcd member is not healthy and {why}; it is also in [{}] of {hosts_file}, where del-etcd would have to change it too (its kube-apiserver rolled, its lists). Bring the host back and run del-etcd again, or take it out of those groups first. Nothing was changed",
                others.join("], ["),
                host = d.req.host
            )
            .into());
        }
        d.unreachable = Some(why);
    }
    d.tools = Some(tools);
    Ok(Flow::Next)
}

/// Whether `host` answers on its SSH port from here (a TCP connect, at most 5 s): Err says
/// why not. A host reached through a jump host is taken as answering (the run says otherwise).
fn ssh_answers(s: &Session, host: &str, opts: &Options) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let conn = crate::session::connection(&s.inventory, host);
    if conn.jump.is_some() || !opts.jump_hosts.is_empty() {
        return Ok(());
    }
    let target = format!("{}:{}", conn.address, conn.port);
    let bracketed = if conn.address.contains(':') { format!("[{}]:{}", conn.address, conn.port) } else { target.clone() };
    let addrs = bracketed.to_socket_addrs().map_err(|e| format!("its SSH address {target} does not resolve ({e})"))?;
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("its SSH port {target} does not answer ({last})"))
}

/// The cluster groups `host` is in besides `[etcd]`.
fn other_groups(s: &Session, host: &str) -> Vec<String> {
    let groups = s.inventory.groups_of(host);
    ["kube_master", "kube_node", "ex_lb", "chrony"].iter().filter(|g| groups.iter().any(|h| h == *g)).map(|g| g.to_string()).collect()
}

/// clean-etcd of 99.clean for `host` alone (the other roles of the step left out: a host
/// that serves the cluster otherwise keeps it).
fn etcd_clean(s: &Session, host: &str) -> Result<Vec<StepPlan>, Error> {
    let mut plans = node_change::clean_plans(s, host)?;
    for p in &mut plans {
        for w in &mut p.waves {
            w.hosts.retain(|h| h.role == CLEAN_ROLE);
            w.roles.retain(|r| r == CLEAN_ROLE);
        }
        p.waves.retain(|w| !w.hosts.is_empty());
    }
    node_change::drop_empty(&mut plans);
    Ok(plans)
}

/// The paths `plans` remove, in order.
fn removed_paths(plans: &[StepPlan]) -> Vec<String> {
    plans
        .iter()
        .flat_map(|p| &p.waves)
        .flat_map(|w| &w.hosts)
        .flat_map(|h| &h.tasks)
        .filter_map(|t| match &t.action {
            Action::Absent { path } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn plan(d: &mut DelEtcd) -> Step {
    let before = d.before.as_ref().expect("opened");
    let clean = etcd_clean(before, &d.req.host)?;
    if d.unreachable.is_some() {
        d.kept = removed_paths(&clean);
    } else {
        d.clean = clean;
    }
    let after = d.after.as_mut().expect("opened");
    d.masters = node_change::plan_reaching(after, &d.master_targets)?;
    d.lists = node_change::plan_reaching(after, &d.list_targets)?;
    Ok(Flow::Next)
}

/// What stays on the host, and why: said in the plan and before the run.
fn say_kept(d: &mut DelEtcd) -> Step {
    let host = &d.req.host;
    if let Some(why) = &d.unreachable {
        eprintln!(
            "{host}: its etcd member is not healthy and {why}: it is removed through the other members, and its clean is skipped (what stays there is said at the end)"
        );
    } else if d.master {
        eprintln!(
            "{host} stays a master: only its etcd member is cleaned (clean-etcd: the etcd unit, data, the member's certificates and its copy of the etcd CA); its kube-apiserver keeps talking to the other members with its own files, which stay: apiserver-etcd-ca.pem (--etcd-cafile) and apiserver-etcd-client.pem (the kube-master role's); the etcd and etcdctl binaries stay as destroy leaves them"
        );
    } else {
        let others = other_groups(d.before.as_ref().expect("opened"), host);
        if !others.is_empty() {
            eprintln!("{host} stays in [{}]: only its etcd member is cleaned (clean-etcd), nothing it serves there", others.join("], ["));
        }
    }
    Ok(Flow::Next)
}

fn ask(d: &mut DelEtcd) -> Step {
    let clean = if d.unreachable.is_some() {
        "leaves the host as it is (it does not answer)"
    } else if d.master {
        "stops it and deletes its data (the host's kube-apiserver keeps running, on the other members)"
    } else {
        "stops it and deletes its data"
    };
    let what = format!(
        "This takes etcd member {} of cluster {} out of every apiserver's --etcd-servers (restarting them one at a time), removes it from the etcd cluster, {clean}, and takes it out of the inventory.",
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
    if d.unreachable.is_none() {
        hand_over_leadership(d, &m);
    }
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

/// A leader that is removed leaves the cluster without one until the others elect a new
/// leader, and a request in flight then fails (kube-apiserver passes etcd's "leader changed" on
/// to its client). So, as etcd's own guide advises, a leaving member that leads hands the
/// leadership to a healthy member that stays first: a planned transfer, over as soon as the new
/// leader takes it. When that cannot be done, the removal goes on (the others elect one).
fn hand_over_leadership(d: &DelEtcd, leaving: &Member) {
    let (Some(tools), Some(before)) = (d.tools.as_ref(), d.before.as_ref()) else { return };
    let ep = etcd_change::client_url(before, &d.req.host);
    let Ok(leader) = tools.leader(&ep) else { return };
    if leader != leaving.id {
        return;
    }
    let Some(to) = d.members.iter().find(|m| m.member.id != leaving.id && m.health.is_ok() && !m.member.name.is_empty()) else {
        return;
    };
    match tools.move_leader(&ep, to.member.id) {
        Ok(()) => eprintln!("member {} led the cluster: leadership handed to {} ({}) before its removal", leaving.name, to.member.name, to.host),
        Err(e) => eprintln!("note: member {} leads the cluster and could not hand the leadership over ({e}); the others elect a new leader once it is removed", leaving.name),
    }
}

fn clean_host(d: &mut DelEtcd) -> Step {
    if let Some(why) = &d.unreachable {
        say_left(d, why);
        return Ok(Flow::Next);
    }
    d.after().unlock();
    let (plans, opts) = (std::mem::take(&mut d.clean), d.req.run.clone());
    let s = d.before.as_mut().expect("opened");
    let ready = super::run_steps::prepare(s)?;
    let flow = super::run_steps::run(s, &ready, &plans, &opts, None)?;
    s.unlock();
    Ok(flow)
}

/// The clean skipped (the host does not answer): what stays on it, and how to clean it later.
fn say_left(d: &DelEtcd, why: &str) {
    let host = &d.req.host;
    let left = d.kept.join(" ");
    let verb = if d.req.run.plan_only { "would be" } else { "is" };
    eprintln!(
        "{host}: not cleaned ({why}). Its member {verb} out of the cluster, but the host keeps the etcd unit (enabled: if it boots again, etcd starts, is refused by the cluster as a removed member, and keeps restarting; harmless to the cluster) and {left}. Once it is back, clean it on the host: \
         `systemctl disable --now etcd; rm -rf {left}; systemctl daemon-reload` — its old data must be gone before it joins again with `ezk add-etcd {cluster} {host}`",
        cluster = d.req.cluster
    );
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
    let host_note = if d.unreachable.is_some() { " (the host was not cleaned: see above)" } else { "" };
    println!("etcd member {} removed from cluster {}: {} members, every one healthy{host_note}", d.req.host, d.req.cluster, d.members.len());
    Ok(Flow::Next)
}
