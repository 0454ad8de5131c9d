//! `ezk upgrade <cluster> [--to VER]` as phases (kubeasz's `ezctl upgrade`; arguments in
//! `cli/upgrade.rs`): the Kubernetes binaries of another artifact set, host by host, in
//! kubeasz's order — the masters one at a time, then the other nodes in batches of `--batch`:
//!
//! 1. the node is cordoned (marked with the annotation [`ANNOTATION`], in the same patch, so a
//!    later run knows the cordon is the upgrade's) and drained as del-node drains
//!    (`--drain-timeout`, `--force`);
//! 2. steps 04 kube-master (masters) and 05 kube-node run on it with the target set: new
//!    binaries, each unit restarted by its own notify (an apiserver ready again before the step
//!    goes on), and any flag the new version renders differently;
//! 3. the node is uncordoned (only if the upgrade cordoned it) and waited for until Ready with
//!    the target's kubeletVersion; only then does the next batch start.
//!
//! Which hosts need it is what the executor decides (`--plan`'s decision, made for the batch
//! right before it runs): a host whose 04/05 would change nothing is at the target already and
//! is neither drained nor restarted. So a run that stopped (a failed step, a drain that did not
//! finish, a killed ezk) is continued by running upgrade again: the hosts before the one that
//! stopped it are skipped, a node still marked as cordoned by the upgrade is finished, and an
//! apply that died before its restarts owes them (`exec::pending`).
//!
//! The target is `--to` (a K8S_VER value: `v1.36.3`, `lab-debian-next`), else the
//! inventory's K8S_VER. A `--to` that differs from K8S_VER is written where K8S_VER is defined
//! (`config.yml` or the hosts file's line; added to config.yml when nowhere), before the first
//! host is touched, so a re-run without `--to` goes on to the same version and a later `setup`
//! installs it rather than the old one. The running versions (every node's kubeletVersion and
//! the API's) must be within one minor below the target and not above its minor: a skip of a
//! minor, or a downgrade of one, is refused before any host is touched. Asks first (the
//! cluster's name) unless `--yes`; `--plan` shows the order and, per host, what would change.
//!
//! One file because it is one operation read top to bottom in the order it runs: the version
//! checks, the order of hosts, and the per-node loop (cordon, drain, steps, uncordon, wait) its
//! phases share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Error;
use super::confirm::confirmed;
use super::node_change;
use super::phase::{Flow, Phase, Step, skip};
use super::setup::keep_only;
use crate::exec::{self, Options};
use crate::home::Home;
use crate::inventory::edit;
use crate::plan::action::StepPlan;
use crate::plan::kube::KubeRelease;
use crate::session::Session;

/// What to upgrade to, and how.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// The target artifact set (a K8S_VER value); None: the inventory's K8S_VER.
    pub to: Option<String>,
    /// Nodes (not masters) upgraded at once.
    pub batch: usize,
    /// Do not ask (`--yes`).
    pub yes: bool,
    /// Drain past pods no controller manages, and go on when a drain times out.
    pub force: bool,
    pub drain_timeout: Duration,
    /// How long a node may take to be Ready at the target after its restart.
    pub ready_timeout: Duration,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

/// Set on a node by the upgrade when it cordons it (value: the target version), removed when
/// it uncordons it: a node cordoned by someone else stays cordoned.
pub const ANNOTATION: &str = "ezk.io/upgrade-cordoned";

/// The steps an upgrade runs on a host, in order (05 on masters too: they are nodes).
const STEPS: [&str; 2] = ["04.kube-master", "05.kube-node"];

/// One host's part, as `--json` reports it.
#[derive(Debug, Clone, Serialize)]
struct HostReport {
    host: String,
    node: String,
    role: &'static str,
    /// 1-based, in run order.
    batch: usize,
    /// `upgraded`, `at target`, `uncordoned` (finished a run that stopped), `failed`, and under
    /// `--plan` `would upgrade`, `would uncordon`.
    action: &'static str,
    changed: u32,
    seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plan: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `[n/total] master k-1 (10.0.0.1)`, for the lines printed.
    #[serde(skip)]
    head: String,
}

/// Where K8S_VER gets the target: the file, its new text, what is written.
struct Record {
    path: PathBuf,
    text: String,
    value: String,
}

/// A batch: masters go alone.
struct Batch {
    master: bool,
    hosts: Vec<String>,
}

struct Upgrade {
    req: Request,
    home: Home,
    /// The cluster as configured: the API (kubectl), the lock.
    cluster: Option<Session>,
    /// The cluster with K8S_VER set to the target: the plans.
    target: Option<Session>,
    set: String,
    /// The target's Kubernetes version as its binaries say it (`v1.20.2+lab.1`).
    version: String,
    /// The versions running now, by what runs them (`node k-1`, `apiserver`).
    running: BTreeMap<String, String>,
    record: Option<Record>,
    plans: Vec<StepPlan>,
    batches: Vec<Batch>,
    report: Vec<HostReport>,
}

impl Upgrade {
    fn cluster(&mut self) -> &mut Session {
        self.cluster.as_mut().expect("opened in the first phase")
    }
    fn target(&self) -> &Session {
        self.target.as_ref().expect("opened in the first phase")
    }
    fn say(&self, line: &str) {
        // With --json, stdout is the JSON document: progress goes to stderr.
        if self.req.run.json { eprintln!("{line}") } else { println!("{line}") }
    }
}

const PHASES: &[Phase<Upgrade>] = &[
    Phase::new("choose the target version (--to, else K8S_VER)", choose_target),
    Phase::new("read the running versions; refuse a skip or a downgrade of a minor", check_versions),
    Phase::new("plan 04/05 with the target's binaries", plan),
    Phase::new("order the hosts: masters one at a time, then nodes in batches", order),
    Phase::new("ask for the cluster's name", ask).when(|u| !u.req.yes).dry_run(skip),
    Phase::new("record the target version (K8S_VER)", record).when(|u| u.record.is_some()).dry_run(say_record),
    Phase::new("upgrade the hosts, batch by batch", run_batches).cleanup(print_json),
    Phase::new("say what was done", say_done).when(|u| !u.req.run.json),
];

/// Run `ezk upgrade`; the exit code is 0, 1 (not confirmed, a drain that did not finish, a node
/// not Ready in time) or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let plan_only = req.run.plan_only;
    let mut state = Upgrade {
        req,
        home: home.clone(),
        cluster: None,
        target: None,
        set: String::new(),
        version: String::new(),
        running: BTreeMap::new(),
        record: None,
        plans: Vec::new(),
        batches: Vec::new(),
        report: Vec::new(),
    };
    super::phase::run(PHASES, &mut state, plan_only)
}

/// `K8S_VER` as written for set `set`: a release with kubeasz's `v` (`v1.36.3`), another set
/// by its name (`lab-debian-next`).
fn k8s_ver_value(set: &str) -> String {
    if set.starts_with(|c: char| c.is_ascii_digit()) { format!("v{set}") } else { set.to_string() }
}

fn choose_target(u: &mut Upgrade) -> Step {
    if u.req.extra_vars.iter().any(|(k, _)| k == "K8S_VER") {
        return Err("upgrade takes its version from --to (or K8S_VER in the inventory), not from -e K8S_VER; no host was contacted".into());
    }
    let cluster = super::open_or_report(&u.home, &u.req.cluster, &u.req.extra_vars).map_err(|_| "the inventory has problems (above); fix them first")?;
    let configured = cluster.k8s_ver();
    let Some(to) = u.req.to.clone().or(configured.clone()) else {
        return Err(format!(
            "K8S_VER is not set for cluster {} (config.yml or the hosts file): name the version to upgrade to with --to",
            u.req.cluster
        )
        .into());
    };
    let manifest = crate::artifacts::Manifest::shipped()?;
    let (set, vs) = manifest.set(&to).map_err(|e| format!("--to {to}: {e}"))?;
    let version = vs
        .artifact_for("kube-apiserver")
        .map(|a| a.version.clone())
        .ok_or_else(|| format!("artifact set {set} has no kube-apiserver: it is not a Kubernetes version to upgrade to"))?;
    let set = set.to_string();
    let same_set = configured.as_deref().and_then(|c| manifest.set(c).ok()).is_some_and(|(s, _)| s == set);
    if u.req.to.is_some() && !same_set {
        u.record = Some(record_for(&cluster, &set)?);
    }
    let mut extra = u.req.extra_vars.clone();
    extra.push(("K8S_VER".into(), set.clone()));
    let target = super::open_or_report(&u.home, &u.req.cluster, &extra).map_err(|_| format!("with K8S_VER={set}, the inventory has problems (above)"))?;
    u.version = format!("v{}", version.trim_start_matches('v'));
    u.set = set;
    u.cluster = Some(cluster);
    u.target = Some(target);
    Ok(Flow::Next)
}

/// The edit that records `set` as K8S_VER: on the line that defines it now (the same for every
/// host, else it is refused), or a line added to config.yml.
fn record_for(s: &Session, set: &str) -> Result<Record, Error> {
    let inv = &s.inventory;
    let value = k8s_ver_value(set);
    let locations: Vec<_> = inv.hosts.iter().map(|h| inv.var_location(h, "K8S_VER").cloned()).collect();
    let first = locations.first().cloned().flatten();
    if locations.iter().any(|l| *l != first) {
        return Err(format!(
            "K8S_VER is set differently for some hosts of cluster {} (a group's or a host's own value): set it once, in {}, and run upgrade again; no host was contacted",
            s.name(),
            inv.config_path().display()
        )
        .into());
    }
    let Some(at) = first else {
        let path = inv.config_path().to_path_buf();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("K8S_VER: \"{value}\"\n"));
        return Ok(Record { path, text, value });
    };
    if at.file != inv.config_path() && at.file != inv.hosts_path() {
        return Err(format!(
            "K8S_VER comes from {}: upgrade records --to in the cluster's config.yml or hosts file only; set it there and run upgrade again",
            at.file.display()
        )
        .into());
    }
    let old = std::fs::read_to_string(&at.file).map_err(|e| format!("{}: {e}", at.file.display()))?;
    let text = edit::set_value(&old, at.line, "K8S_VER", &value).ok_or_else(|| {
        format!("{}:{}: cannot write K8S_VER there (it is not a plain `K8S_VER=value` or `K8S_VER: value` line); set it to {value} by hand", at.file.display(), at.line)
    })?;
    Ok(Record { path: at.file.clone(), text, value })
}

/// The minor of a version as Kubernetes prints it (`v1.20.2+lab.1`: 20).
fn minor(version: &str) -> Option<u32> {
    KubeRelease::for_version(version).map(|r| r.minor)
}

/// Refuse a target more than one minor above, or any minor below, what runs (`running`:
/// what → version). None: the upgrade may go on.
fn version_skew(running: &BTreeMap<String, String>, target: &str) -> Option<String> {
    let t = minor(target)?;
    for (what, v) in running {
        let Some(m) = minor(v) else { continue };
        if t > m + 1 {
            return Some(format!(
                "{what} runs {v}: {target} skips {}; Kubernetes supports an upgrade of one minor at a time: upgrade to a 1.{} release first",
                (m + 1..t).map(|x| format!("1.{x}")).collect::<Vec<_>>().join(", "),
                m + 1
            ));
        }
        if t < m {
            return Some(format!(
                "{what} runs {v}: {target} is an older minor, and Kubernetes does not support a downgrade of a minor (objects stored at the newer version may not be readable)"
            ));
        }
    }
    None
}

/// Every node's kubeletVersion and the API's gitVersion; a host of the inventory that is not a
/// node is refused (upgrade brings nodes to a version; `add-node` brings a host in).
fn check_versions(u: &mut Upgrade) -> Step {
    let cluster = u.cluster.as_ref().expect("opened");
    let api = cluster
        .kubectl(&["--request-timeout=10s", "get", "--raw", "/version"])
        .map_err(|e| format!("upgrade reads the running versions from the API, which did not answer ({e}); no host was contacted"))?;
    let v: serde_json::Value = serde_json::from_str(&api).map_err(|e| format!("the API's /version: {e}"))?;
    let api_version = v["gitVersion"].as_str().unwrap_or_default().to_string();
    let nodes = cluster.kubectl(&[
        "--request-timeout=10s",
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{" "}{.status.nodeInfo.kubeletVersion}{"\n"}{end}"#,
    ])?;
    let by_name: BTreeMap<&str, &str> = nodes.lines().filter_map(|l| l.split_once(' ')).collect();
    let mut running = BTreeMap::new();
    running.insert("the API".to_string(), api_version);
    for h in node_change::hosts_in(cluster, &["kube_master", "kube_node"]) {
        let node = cluster.node_name(&h);
        match by_name.get(node.as_str()) {
            Some(v) => {
                running.insert(format!("node {node}"), v.to_string());
            }
            None => {
                return Err(format!(
                    "{h} is in the inventory but node {node} is not registered with the API: upgrade changes nodes that run; bring it in with `ezk add-node {} {h}` (or take it out of the inventory) first; no host was contacted",
                    u.req.cluster
                )
                .into());
            }
        }
    }
    if let Some(why) = version_skew(&running, &u.version) {
        return Err(format!("upgrade to {} ({}) refused: {why}; no host was contacted", u.version, u.set).into());
    }
    u.running = running;
    Ok(Flow::Next)
}

/// 04 and 05 for every host with the target's binaries, checked as `setup` checks (binaries in
/// the store, the CA key where a certificate must be issued) before any host is touched.
fn plan(u: &mut Upgrade) -> Step {
    let target = u.target.as_mut().expect("opened");
    let mut plans = Vec::new();
    for step in STEPS {
        let mut ps = target.plan(step, target.files()?)?;
        if ps.iter().any(|p| p.needs_nodes) {
            target.fetch_node_facts(None)?;
            ps = target.plan(step, target.files()?)?;
        }
        plans.extend(ps);
    }
    let missing = crate::plan::action::not_downloaded(&plans);
    if !missing.is_empty() {
        let list = exec::runner::fetch_list(&missing);
        if !u.req.run.plan_only {
            return Err(format!("the binaries of {} are not all in the store, so nothing was changed. Fetch them first:\n{list}", u.set).into());
        }
        eprintln!("note: not downloaded yet (a run needs them):\n{list}");
    }
    let need_key = target.files()?.needs_ca_key();
    if !need_key.is_empty() {
        if !u.req.run.plan_only {
            return Err(need_key.join("\n").into());
        }
        for m in &need_key {
            eprintln!("note: {m}");
        }
    }
    u.plans = plans;
    Ok(Flow::Next)
}

/// Masters one at a time, in inventory order; then the other nodes, `--batch` at a time.
fn order(u: &mut Upgrade) -> Step {
    let s = u.target();
    let masters = s.inventory.hosts_in("kube_master").to_vec();
    let nodes: Vec<String> = s.inventory.hosts_in("kube_node").iter().filter(|h| !masters.contains(h)).cloned().collect();
    let mut batches: Vec<Batch> = masters.into_iter().map(|h| Batch { master: true, hosts: vec![h] }).collect();
    batches.extend(nodes.chunks(u.req.batch.max(1)).map(|c| Batch { master: false, hosts: c.to_vec() }));
    let from: Vec<&str> = {
        let mut v: Vec<&str> = u.running.values().map(String::as_str).collect();
        v.sort();
        v.dedup();
        v
    };
    let n_masters = batches.iter().filter(|b| b.master).count();
    u.say(&format!(
        "upgrade cluster {} to {} (artifact set {}), running {}: {} master(s) one at a time, then {} node(s) {} at a time",
        u.req.cluster,
        u.version,
        u.set,
        from.join(", "),
        n_masters,
        batches.iter().filter(|b| !b.master).map(|b| b.hosts.len()).sum::<usize>(),
        u.req.batch.max(1)
    ));
    u.batches = batches;
    Ok(Flow::Next)
}

fn ask(u: &mut Upgrade) -> Step {
    let what = format!(
        "This upgrades cluster {} to {}: each master, then each node, is cordoned, drained (its pods move), gets the new binaries and restarts its services.",
        u.req.cluster, u.version
    );
    if confirmed("upgrade", &u.req.cluster, &what)? {
        return Ok(Flow::Next);
    }
    eprintln!("upgrade cancelled: nothing was changed");
    Ok(Flow::Stop(1))
}

fn say_record(u: &mut Upgrade) -> Step {
    let r = u.record.as_ref().expect("when: a record");
    u.say(&format!("would set K8S_VER to {} in {} first", r.value, r.path.display()));
    Ok(Flow::Next)
}

/// Write K8S_VER (under the lock, atomically), and read it back as the inventory reads it.
fn record(u: &mut Upgrade) -> Step {
    let r = u.record.take().expect("when: a record");
    u.cluster().lock()?;
    let old = std::fs::read(&r.path).ok();
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&r.path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644)
    };
    crate::pki::ssl_dir::write_atomic(&r.path, r.text.as_bytes(), mode)?;
    let back = Session::open(&u.home, &u.req.cluster, &u.req.extra_vars).ok().and_then(|s| s.k8s_ver());
    if back.as_deref() != Some(r.value.as_str()) {
        if let Some(old) = old {
            crate::pki::ssl_dir::write_atomic(&r.path, &old, mode)?;
        }
        return Err(format!(
            "K8S_VER written as {} in {} reads back as {back:?}: put back as it was; set it by hand, then run upgrade again",
            r.value,
            r.path.display()
        )
        .into());
    }
    u.say(&format!("K8S_VER is now {} ({})", r.value, r.path.display()));
    Ok(Flow::Next)
}

/// Per node: is it cordoned, and by the upgrade?
fn cordon_state(s: &Session, node: &str) -> Result<(bool, bool), Error> {
    let out = s.kubectl(&[
        "--request-timeout=10s",
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.spec.unschedulable}{" "}{.metadata.annotations.ezk\.io/upgrade-cordoned}"#,
    ])?;
    let mut w = out.split(' ');
    let unschedulable = w.next().is_some_and(|x| x.trim() == "true");
    let ours = w.next().is_some_and(|x| !x.trim().is_empty());
    Ok((unschedulable, ours))
}

/// Cordon `node` and mark the cordon as the upgrade's, in one patch.
fn cordon(s: &Session, node: &str, version: &str) -> Result<(), Error> {
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: version}}, "spec": {"unschedulable": true}});
    s.kubectl(&["--request-timeout=10s", "patch", "node", node, "-p", &patch.to_string()])?;
    Ok(())
}

/// Uncordon `node` and drop the mark, in one patch.
fn uncordon(s: &Session, node: &str) -> Result<(), Error> {
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: null}}, "spec": {"unschedulable": null}});
    s.kubectl(&["--request-timeout=10s", "patch", "node", node, "-p", &patch.to_string()])?;
    Ok(())
}

/// Until `node` is Ready with kubeletVersion `version` (at most `timeout`): the last state
/// seen when it is not.
fn wait_ready(s: &Session, node: &str, version: &str, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let want = format!("True {version}");
    loop {
        let last = match s.kubectl(&[
            "--request-timeout=10s",
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}{" "}{.status.nodeInfo.kubeletVersion}"#,
        ]) {
            Ok(out) if out.trim() == want => return Ok(()),
            Ok(out) => format!("Ready={}", out.trim().replacen(' ', ", kubelet ", 1)),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(last);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The plans of this batch's hosts (`hosts`), those that reach one.
fn plans_for(plans: &[StepPlan], hosts: &[String]) -> Vec<StepPlan> {
    let mut out: Vec<StepPlan> = plans.to_vec();
    for p in &mut out {
        keep_only(p, hosts);
    }
    node_change::drop_empty(&mut out);
    out
}

fn run_batches(u: &mut Upgrade) -> Step {
    let plan_only = u.req.run.plan_only;
    let conns = {
        let s = u.cluster();
        s.lock()?;
        s.connections()?
    };
    let total = u.batches.iter().map(|b| b.hosts.len()).sum::<usize>();
    let mut n = 0;
    let batches = std::mem::take(&mut u.batches);
    for (bi, b) in batches.iter().enumerate() {
        let started = Instant::now();
        let role = if b.master { "master" } else { "node" };
        let plans = plans_for(&u.plans, &b.hosts);
        // What would change on each host: the same decision the run makes.
        let mut preview_opts = u.req.run.clone();
        preview_opts.plan_only = true;
        preview_opts.json = true;
        let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &plans {
            let lock = u.cluster().lock()?;
            let recap = exec::run_step_locked(lock, p, &conns, &preview_opts)?;
            if let Some(why) = &recap.refused {
                return Err(why.clone().into());
            }
            for (h, hr) in &recap.hosts {
                if !hr.errors.is_empty() || hr.failed > 0 || hr.unreachable > 0 {
                    return Err(format!("{h}: {}; upgrade stopped before changing it", hr.errors.join("; ")).into());
                }
            }
            for (h, l) in recap.plan {
                lines.entry(h).or_default().extend(l);
            }
        }
        let mut work = Vec::new();
        let mut reports = Vec::new();
        for h in &b.hosts {
            n += 1;
            let node = u.cluster().node_name(h);
            let (unschedulable, ours) = cordon_state(u.cluster.as_ref().expect("opened"), &node)?;
            let plan = lines.remove(h).unwrap_or_default();
            let changes = !plan.is_empty();
            let action = match (changes, ours, plan_only) {
                (true, _, true) => "would upgrade",
                (true, _, false) => "upgraded",
                (false, true, true) => "would uncordon",
                (false, true, false) => "uncordoned",
                (false, false, _) => "at target",
            };
            let head = format!("[{n}/{total}] {role} {node} ({h})");
            if plan_only {
                if changes {
                    let mut text = format!("{head}: would cordon, drain (at most {}s), then:", u.req.drain_timeout.as_secs());
                    for l in &plan {
                        text.push_str(&format!("\n      {l}"));
                    }
                    text.push_str(&format!("\n    then uncordon{} and wait until Ready at {}", if unschedulable && !ours { " (no: cordoned before the upgrade, it stays so)" } else { "" }, u.version));
                    u.say(&text);
                } else if ours {
                    u.say(&format!("{head}: at {} already; would uncordon it (an upgrade that stopped cordoned it)", u.version));
                } else {
                    u.say(&format!("{head}: at {} already: nothing to do", u.version));
                }
            }
            if changes {
                work.push((h.clone(), node.clone(), unschedulable && !ours));
            }
            reports.push(HostReport { host: h.clone(), node, role, batch: bi + 1, action, changed: 0, seconds: 0.0, plan, error: None, head });
        }
        if plan_only {
            u.report.extend(reports);
            continue;
        }
        // Cordon and drain the hosts that change.
        for (h, node, theirs) in &work {
            if !theirs {
                cordon(u.cluster.as_ref().expect("opened"), node, &u.version)?;
            }
            let (force, timeout) = (u.req.force, u.req.drain_timeout);
            if let Flow::Stop(code) = node_change::drain(u.cluster(), "upgrade", node, force, timeout)? {
                fail(&mut reports, h, "drain did not finish");
                u.report.extend(reports);
                return Ok(Flow::Stop(code));
            }
        }
        // The new binaries and the restarts.
        let hosts: Vec<String> = work.iter().map(|(h, ..)| h.clone()).collect();
        let opts = u.req.run.clone();
        for p in plans_for(&u.plans, &hosts) {
            let lock = u.cluster().lock()?;
            let recap = exec::run_step_locked(lock, &p, &conns, &opts)?;
            if let Some(why) = &recap.refused {
                return Err(why.clone().into());
            }
            for (h, hr) in &recap.hosts {
                if let Some(r) = reports.iter_mut().find(|r| &r.host == h) {
                    r.changed += hr.changed;
                }
            }
            if recap.exit_code() != 0 {
                if !u.req.run.json {
                    print!("\n{}", recap.table());
                    if let Some(log) = &recap.log {
                        println!("log: {}", log.display());
                    }
                }
                for (h, hr) in recap.hosts.iter().filter(|(_, hr)| hr.failed > 0 || hr.unreachable > 0) {
                    fail(&mut reports, h, &hr.errors.join("; "));
                }
                u.report.extend(reports);
                eprintln!(
                    "upgrade stopped in step {} on {}: the hosts before it are upgraded and Ready; this one is cordoned. Fix what the step names and run `ezk upgrade {}` again: it goes on from here",
                    p.step,
                    hosts.join(", "),
                    u.req.cluster
                );
                return Ok(Flow::Stop(recap.exit_code()));
            }
        }
        // Uncordon what the upgrade cordoned, then every host Ready at the target.
        for r in &reports {
            let (_, ours) = cordon_state(u.cluster.as_ref().expect("opened"), &r.node)?;
            if ours {
                uncordon(u.cluster.as_ref().expect("opened"), &r.node)?;
            }
        }
        for i in 0..reports.len() {
            let node = reports[i].node.clone();
            if let Err(last) = wait_ready(u.cluster.as_ref().expect("opened"), &node, &u.version, u.req.ready_timeout) {
                let h = reports[i].host.clone();
                fail(&mut reports, &h, &format!("not Ready at {} within {}s ({last})", u.version, u.req.ready_timeout.as_secs()));
                u.report.extend(reports);
                eprintln!(
                    "upgrade stopped: node {node} ({h}) is not Ready at {} after {}s ({last}); the next hosts were not touched. See `journalctl -u kubelet` on it, then run `ezk upgrade {}` again",
                    u.version,
                    u.req.ready_timeout.as_secs(),
                    u.req.cluster
                );
                return Ok(Flow::Stop(1));
            }
        }
        let secs = started.elapsed().as_secs_f64();
        for r in &mut reports {
            r.seconds = secs;
            let what = match r.action {
                "upgraded" => format!("upgraded: drained, {} changed, Ready at {} ({secs:.0}s)", r.changed, u.version),
                "uncordoned" => format!("at {} already; uncordoned and Ready", u.version),
                _ => format!("at {} already: nothing to do", u.version),
            };
            u.say(&format!("{}: {what}", r.head));
        }
        u.report.extend(reports);
    }
    Ok(Flow::Next)
}

fn fail(reports: &mut [HostReport], host: &str, why: &str) {
    if let Some(r) = reports.iter_mut().find(|r| r.host == host) {
        r.action = "failed";
        r.error = Some(why.to_string());
    }
}

/// `--json`: one document, however the run ended (hosts not reached are not listed).
fn print_json(u: &mut Upgrade) {
    if !u.req.run.json {
        return;
    }
    let doc = serde_json::json!({
        "cluster": u.req.cluster,
        "plan_only": u.req.run.plan_only,
        "set": u.set,
        "to": u.version,
        "running": u.running,
        "hosts": u.report,
    });
    println!("{doc}");
}

fn say_done(u: &mut Upgrade) -> Step {
    if u.req.run.plan_only {
        return Ok(Flow::Next);
    }
    let upgraded = u.report.iter().filter(|r| r.action == "upgraded").count();
    println!(
        "cluster {} is at {}: {upgraded} host(s) upgraded, {} already there",
        u.req.cluster,
        u.version,
        u.report.len() - upgraded
    );
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn one_minor_up_or_the_same_minor_goes_a_skip_or_a_minor_down_is_refused() {
        let r = running(&[("node a", "v1.20.2"), ("the API", "v1.20.2")]);
        assert_eq!(version_skew(&r, "v1.20.2+lab.1"), None);
        assert_eq!(version_skew(&r, "v1.21.0"), None);
        let why = version_skew(&r, "v1.22.3").unwrap();
        assert!(why.contains("node a runs v1.20.2") && why.contains("skips 1.21") && why.contains("1.21 release first"), "{why}");
        assert!(version_skew(&r, "v1.34.7").unwrap().contains("skips 1.21, 1.22"));
        // One node behind the others counts: it may not be skipped over.
        let mixed = running(&[("node a", "v1.21.1"), ("node b", "v1.20.2")]);
        assert!(version_skew(&mixed, "v1.22.0").unwrap().contains("node b"));
        // Back to an older patch of the same minor is allowed; an older minor is not.
        assert_eq!(version_skew(&running(&[("node a", "v1.20.2+lab.1")]), "v1.20.2"), None);
        assert!(version_skew(&running(&[("node a", "v1.21.0")]), "v1.20.2").unwrap().contains("downgrade"));
    }

    #[test]
    fn k8s_ver_is_written_as_kubeasz_writes_it() {
        assert_eq!(k8s_ver_value("1.36.3"), "v1.36.3");
        assert_eq!(k8s_ver_value("lab-debian-next"), "lab-debian-next");
    }
}
