//! The runner: a step's waves in order; within a wave every host at once (under `Limits`), each
//! host running its roles of that wave one after another. A host that fails or cannot be
//! reached stops its own work and is recorded; the other hosts finish; a failed host does
//! nothing in later waves. One connection per host for the whole run, every one opened before
//! the first wave: a host whose key is unknown or changed refuses the whole run untouched.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use indexmap::IndexMap;
use tokio::sync::Mutex;

use super::connection::Connection;
use super::desired::{Desired, desired_state};
use super::gather::Facts;
use super::gather::checksums::{Checksums, checksums_path};
use super::limits::Limits;
use super::pipeline::{RoleRun, Serial, gather_together, run_role};
use super::transport::{Connector, Transport};
use super::{ExecError, Options};
use crate::plan::action::{Action, HostRolePlan, StepPlan};
use crate::ui::events::Event;
use crate::ui::recap::{HostRecap, Recap};

/// The connections of one run, each host's opened once and kept for every step of the run;
/// [`Pool::close_all`] ends them (a master kept for the next run only lets go of it).
pub struct Pool<T> {
    open: Arc<std::sync::Mutex<HashMap<String, Arc<T>>>>,
}

impl<T: Transport> Default for Pool<T> {
    fn default() -> Self {
        Pool { open: Arc::default() }
    }
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool { open: self.open.clone() }
    }
}

impl<T: Transport> Pool<T> {
    fn take(&self, host: &str) -> Option<Arc<T>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(host)
    }

    fn put(&self, host: &str, t: Arc<T>) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_string(), t);
    }

    /// Close every connection (at the end of the run).
    pub async fn close_all(&self) {
        let all: Vec<Arc<T>> = self.open.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        let closing = all.into_iter().filter_map(|t| Arc::try_unwrap(t).ok()).map(|t| t.close());
        futures_util::future::join_all(closing).await;
    }
}

/// Per-host state across waves.
struct Slot<T> {
    transport: Option<Arc<T>>,
    /// The connection's round trips when this step took it (it may serve earlier steps too).
    trips_before: u64,
    /// Failed or unreachable: do nothing more.
    dead: bool,
    recap: HostRecap,
    /// Plan mode: what would change, prefixed by role.
    plan: Vec<String>,
    /// Known checksums of this host's files (loaded at connect, saved at the end).
    checksums: Checksums,
    /// Facts gathered ahead with another role's gather, by (wave, role): used while nothing
    /// could have changed them since (see `host_wave`).
    gathered: HashMap<(usize, String), Facts>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { transport: None, trips_before: 0, dead: false, recap: HostRecap::default(), plan: Vec::new(), checksums: Checksums::default(), gathered: HashMap::new() }
    }
}

/// A role of a later wave that a host's earlier gather may take along: one whose gather only
/// reads (paths, packages, units, kernel state, `creates`). A role with a command guard or a
/// wait probe is left to its own wave: those may ask a service an earlier wave starts (the
/// API of step 04), and on a first run they would only cost time to learn nothing.
fn gathers_ahead(host_role: &HostRolePlan) -> bool {
    !host_role.tasks.iter().any(|t| matches!(t.action, Action::WaitFor { .. } | Action::Command { unless: Some(_), .. }))
}

/// A host's roles of one wave, and of later waves that its gather takes along.
type HostRoles = Vec<(usize, HostRolePlan, Vec<Desired>)>;

/// Run a validated step plan with the given connector (SSH in production, a double in tests),
/// its connections opened for it and closed after it.
pub async fn run_plan<C: Connector>(
    connector: Arc<C>,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
    events: Sender<Event>,
) -> Result<Recap, ExecError> {
    let pool = Pool::default();
    let r = run_plan_in(&pool, connector, plan, conns, opts, events, &[]).await;
    pool.close_all().await;
    r
}

/// Run one step of a run whose connections are in `pool`: a host already connected by an
/// earlier step keeps its connection (when it still answers); the others are connected now,
/// and so are the hosts of the run's later steps (`later`), so that an unknown or changed
/// host key anywhere refuses the run before its first change. Connections stay in `pool`.
pub async fn run_plan_in<C: Connector>(
    pool: &Pool<C::T>,
    connector: Arc<C>,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
    events: Sender<Event>,
    later: &[String],
) -> Result<Recap, ExecError> {
    let started = Instant::now();
    // Validate before the first connection: every host has connection data, every local file
    // to upload exists (and, unless this is a plan, is in the store at all).
    let missing = crate::plan::action::not_downloaded(std::slice::from_ref(plan));
    if !opts.plan_only && !missing.is_empty() {
        return Err(ExecError::NotDownloaded { step: plan.step.clone(), list: fetch_list(&missing) });
    }
    let mut host_order: Vec<String> = Vec::new();
    let mut all_desired: Vec<Vec<Vec<Desired>>> = Vec::new();
    for wave in &plan.waves {
        let mut ws = Vec::new();
        for host_role in &wave.hosts {
            if !conns.contains_key(&host_role.host) {
                return Err(ExecError::NoConnection { host: host_role.host.clone() });
            }
            if !host_order.contains(&host_role.host) {
                host_order.push(host_role.host.clone());
            }
            ws.push(desired_state(&host_role.tasks)?);
        }
        all_desired.push(ws);
    }
    let limits = Arc::new(Limits::new(opts.forks));
    for h in later {
        if !conns.contains_key(h) {
            return Err(ExecError::NoConnection { host: h.clone() });
        }
    }
    let slots: IndexMap<String, Arc<Mutex<Slot<C::T>>>> = host_order
        .iter()
        .map(|h| (h.clone(), Arc::new(Mutex::new(Slot::default()))))
        .collect();

    // Every connection is opened before the first change, so a host-key refusal anywhere stops
    // the run while no host has been touched.
    let refused = connect_all(pool, &slots, later, conns, &connector, &limits, &events, opts).await;
    if let Some(why) = &refused {
        let _ = events.send(Event::Note(why.clone()));
        for slot in slots.values() {
            let mut s = slot.lock().await;
            if !s.dead {
                s.dead = true;
                s.recap.errors.push(why.clone());
            }
        }
    }

    // Whether any host was sent an apply in this step so far: until then, what a host's
    // gather found for a later wave's role is still what that wave would find.
    let applied = Arc::new(AtomicBool::new(false));
    let mut looked_ahead: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (wi, wave) in plan.waves.iter().enumerate() {
        let _ = events.send(Event::WaveStart { index: wi, roles: wave.roles.clone(), units: wave.hosts.len() });
        // Group this wave's host-roles by host, keeping plan order.
        let mut by_host: IndexMap<String, (HostRoles, HostRoles)> = IndexMap::new();
        for (host_role, w) in wave.hosts.iter().zip(&all_desired[wi]) {
            by_host.entry(host_role.host.clone()).or_default().0.push((wi, host_role.clone(), w.clone()));
        }
        // The later waves' roles a host's gather takes along: in the first wave the host is in.
        if !applied.load(Ordering::SeqCst) {
            for (lwi, later) in plan.waves.iter().enumerate().skip(wi + 1) {
                for (host_role, w) in later.hosts.iter().zip(&all_desired[lwi]) {
                    if let Some((_, ahead)) = by_host.get_mut(&host_role.host)
                        && !looked_ahead.contains(&host_role.host)
                        && gathers_ahead(host_role)
                    {
                        ahead.push((lwi, host_role.clone(), w.clone()));
                    }
                }
            }
        }
        looked_ahead.extend(by_host.keys().cloned());
        // One set of places per role with a `serial` limit, shared by its hosts in this wave.
        let serial: Arc<HashMap<String, Serial>> = Arc::new(
            wave.serial
                .iter()
                .map(|(r, n)| (r.clone(), Serial::new(*n, wave.hosts.iter().filter(|h| &h.role == r).count())))
                .collect(),
        );
        let mut jobs = tokio::task::JoinSet::new();
        for (host, (roles, ahead)) in by_host {
            let slot = slots[&host].clone();
            let limits = limits.clone();
            let events = events.clone();
            let opts = opts.clone();
            let serial = serial.clone();
            let applied = applied.clone();
            jobs.spawn(async move {
                let _permit = limits.hosts.acquire().await.expect("never closed");
                let mut slot = slot.lock().await;
                host_wave(&mut slot, &host, roles, ahead, &opts, &serial, &applied, &events).await;
            });
        }
        while let Some(r) = jobs.join_next().await {
            if let Err(e) = r {
                // A panic in one host's task must not hide the others' results.
                let _ = events.send(Event::Note(format!("internal error in a host task: {e}")));
            }
        }
    }

    let mut recap = Recap { step: plan.step.clone(), plan_only: opts.plan_only, refused, ..Default::default() };
    for (host, slot) in slots {
        let mut s = slot.lock().await;
        if let Some(t) = s.transport.take() {
            s.recap.round_trips = t.round_trips() - s.trips_before;
            // Kept for the run's later steps, also when this host failed: a failed step ends
            // the run, and the pool closes it then.
            pool.put(&host, t);
        }
        if let Some(dir) = &opts.checksums_dir
            && s.recap.round_trips > 0
            && let Err(e) = s.checksums.save(&checksums_path(dir, &host))
        {
            // Only a cache: the next run hashes again.
            let _ = events.send(Event::Note(format!("{host}: cannot save known checksums under {}: {e}", dir.display())));
        }
        if opts.plan_only {
            recap.plan.insert(host.clone(), s.plan.clone());
        }
        recap.hosts.insert(host.clone(), s.recap.clone());
    }
    recap.seconds = started.elapsed().as_secs_f64();
    Ok(recap)
}

/// `  <name> <version>: <command>` lines, one per binary.
pub fn fetch_list(missing: &[(String, String)]) -> String {
    missing.iter().map(|(what, fetch)| format!("  {what}: {fetch}")).collect::<Vec<_>>().join("\n")
}

/// Open every host's connection (handshakes under `limits`). A host that cannot be reached is
/// marked dead and reported, and the run goes on without it (as Ansible does). A host whose key
/// is unknown or changed refuses the whole run: the returned reason names the host(s), and no
/// host gets any change — a possibly intercepted host is a problem for the operator to settle
/// before anything is deployed, not something to work around.
#[allow(clippy::too_many_arguments)]
async fn connect_all<C: Connector>(
    pool: &Pool<C::T>,
    slots: &IndexMap<String, Arc<Mutex<Slot<C::T>>>>,
    later: &[String],
    conns: &IndexMap<String, Connection>,
    connector: &Arc<C>,
    limits: &Arc<Limits>,
    events: &Sender<Event>,
    opts: &Options,
) -> Option<String> {
    let mut jobs = tokio::task::JoinSet::new();
    for (host, slot) in slots {
        let (host, slot, conn) = (host.clone(), slot.clone(), conns[host].clone());
        let (connector, limits, events) = (connector.clone(), limits.clone(), events.clone());
        let checksums_dir = opts.checksums_dir.clone();
        let kept = pool.take(&host);
        jobs.spawn(async move {
            let tc = Instant::now();
            let res = match kept {
                // Connected by an earlier step of this run and still answering: no handshake.
                Some(t) if t.alive().await => Ok((t, false)),
                _ => {
                    let _hs = limits.handshakes.acquire().await.expect("never closed");
                    connector.connect(&host, &conn).await.map(|t| {
                        let fresh = !t.reused();
                        (Arc::new(t), fresh)
                    })
                }
            };
            let mut slot = slot.lock().await;
            slot.recap.connect_seconds = tc.elapsed().as_secs_f64();
            slot.recap.seconds += slot.recap.connect_seconds;
            let _ = events.send(Event::Phase { host: host.clone(), role: None, phase: "connect".into(), seconds: slot.recap.connect_seconds });
            match res {
                Ok((t, fresh)) => {
                    slot.recap.handshakes = u32::from(fresh);
                    slot.trips_before = t.round_trips();
                    slot.transport = Some(t);
                    if let Some(dir) = &checksums_dir {
                        slot.checksums = Checksums::load(&checksums_path(dir, &host));
                    }
                    None
                }
                Err(e) => {
                    slot.dead = true;
                    slot.recap.unreachable = 1;
                    if !e.is_unreachable() {
                        slot.recap.failed += 1;
                    }
                    slot.recap.errors.push(e.to_string());
                    let _ = events.send(Event::HostFailed { host: host.clone(), error: e.to_string(), unreachable: true });
                    e.is_host_key().then_some(host)
                }
            }
        });
    }
    // The hosts of later steps: connected now into the pool; only a refused key matters here
    // (a host that is down is that step's to report).
    for host in later.iter().filter(|h| !slots.contains_key(*h)) {
        if let Some(t) = pool.take(host) {
            pool.put(host, t);
            continue;
        }
        let (host, conn) = (host.clone(), conns[host].clone());
        let (connector, limits, pool) = (connector.clone(), limits.clone(), pool.clone());
        jobs.spawn(async move {
            let _hs = limits.handshakes.acquire().await.expect("never closed");
            match connector.connect(&host, &conn).await {
                Ok(t) => {
                    pool.put(&host, Arc::new(t));
                    None
                }
                Err(e) => e.is_host_key().then_some(host),
            }
        });
    }
    let mut refused = Vec::new();
    while let Some(r) = jobs.join_next().await {
        refused.extend(r.ok().flatten());
    }
    if refused.is_empty() {
        return None;
    }
    // Inventory order, not completion order.
    let bad: Vec<&str> = slots.keys().map(String::as_str).filter(|h| refused.iter().any(|r| r == h)).collect();
    Some(format!(
        "run refused: the host key of {} was not accepted (see above); nothing was changed on any host",
        bad.join(", ")
    ))
}

/// One host's roles of one wave, one after another. Their gathers are one round trip
/// (`gather_together`), which also takes along the host's roles of later waves that only read
/// (`gathers_ahead`): a step that changes nothing anywhere costs each host one round trip.
/// Facts gathered together are used only while they are still what the role's own gather
/// would find: a role's are dropped once an earlier role of the wave applied something on this
/// host, and a later wave's once any host of the step was sent an apply (roles of one wave are
/// independent, so only an apply on the same host in the same wave can touch another's
/// targets, but a later wave may read what an earlier one changed anywhere).
#[allow(clippy::too_many_arguments)]
async fn host_wave<T: Transport>(
    slot: &mut Slot<T>,
    host: &str,
    roles: HostRoles,
    ahead: HostRoles,
    opts: &Options,
    serial: &HashMap<String, Serial>,
    applied: &AtomicBool,
    events: &Sender<Event>,
) {
    // Done with a role (or skipping it): the UI hears it, and so does a `serial` role's host
    // that waits to restart last.
    let role_done = |role: &str| {
        if let Some(s) = serial.get(role) {
            s.settle(host);
        }
        let _ = events.send(Event::HostRoleDone { host: host.into(), role: role.to_string() });
    };
    let t0 = Instant::now();
    let ntasks: u32 = roles.iter().map(|(_, h, _)| h.tasks.len() as u32).sum();
    // Dead (failed, unreachable, or the run was refused) hosts skip; `connect_all` connected
    // every other one.
    let t = match (&slot.transport, slot.dead) {
        (Some(t), false) => t.clone(),
        _ => {
            slot.dead = true;
            slot.recap.skipped += ntasks;
            for (_, host_role, _) in &roles {
                role_done(&host_role.role);
            }
            return;
        }
    };
    let mut rt: HashMap<String, u64> = HashMap::new();
    let how = RoleRun { plan_only: opts.plan_only, trace: opts.verbose >= 2, timeout: opts.command_timeout };
    if applied.load(Ordering::SeqCst) {
        slot.gathered.clear();
    }
    let together: Vec<&(usize, HostRolePlan, Vec<Desired>)> =
        roles.iter().chain(&ahead).filter(|(wi, hr, _)| !slot.gathered.contains_key(&(*wi, hr.role.clone()))).collect();
    if together.len() >= 2 {
        let before = t.round_trips();
        let list: Vec<(&HostRolePlan, &[Desired])> = together.iter().map(|(_, hr, d)| (hr, d.as_slice())).collect();
        let found = gather_together(&*t, &list, &mut slot.checksums, how, events).await;
        for ((wi, hr, _), facts) in together.iter().zip(found) {
            if let Some(facts) = facts {
                slot.gathered.insert((*wi, hr.role.clone()), facts);
            }
        }
        *rt.entry(together[0].1.role.clone()).or_default() += t.round_trips() - before;
    }
    // Something of this wave applied on this host: the rest of the wave gathers again.
    let mut changed_here = false;
    for (wi, host_role, desired) in &roles {
        let gathered = slot.gathered.remove(&(*wi, host_role.role.clone())).filter(|_| !changed_here);
        if slot.dead {
            slot.recap.skipped += host_role.tasks.len() as u32;
            role_done(&host_role.role);
            continue;
        }
        let before = t.round_trips();
        let places = serial.get(&host_role.role);
        let o = run_role(&*t, host_role, desired, &mut slot.checksums, how, places, events, gathered).await;
        if o.applied {
            changed_here = true;
            applied.store(true, Ordering::SeqCst);
        }
        *rt.entry(host_role.role.clone()).or_default() += t.round_trips() - before;
        let r = &mut slot.recap;
        r.ok += o.ok;
        r.changed += o.changed;
        r.failed += o.failed;
        r.skipped += o.skipped;
        r.warnings += o.warnings;
        if let Some(e) = o.error {
            slot.dead = true;
            let unreachable = o.transport.as_ref().is_some_and(|t| t.is_unreachable());
            if unreachable {
                r.unreachable = 1;
            } else if r.failed == 0 {
                r.failed = 1;
            }
            r.errors.push(e.clone());
            let _ = events.send(Event::HostFailed { host: host.into(), error: e, unreachable });
        }
        if opts.plan_only {
            slot.plan.extend(o.plan.iter().map(|l| format!("[{}] {l}", host_role.role)));
        }
        role_done(&host_role.role);
    }
    for (role, n) in rt {
        *slot.recap.round_trips_by_role.entry(role).or_default() += n;
    }
    slot.recap.round_trips = t.round_trips() - slot.trips_before;
    slot.recap.seconds += t0.elapsed().as_secs_f64();
}
