//! `ezk rotate-ca <cluster> etcd|kubernetes` (arguments in `cli/rotate_ca.rs`): a new CA without
//! a moment in which a client is refused. Three phases (`pki::rotate` says what the PKI hands
//! out in each):
//!
//! 1. trust both: every trust file of the CA becomes old + new CA;
//! 2. re-issue: every certificate the CA signs, from the new CA;
//! 3. drop the old CA: trust files hold the new CA only.
//!
//! The etcd CA: each phase is rolled out as steps 02 (the etcd members, one at a time, each
//! healthy with a leader before the next: the etcd role's `serial: 1`) and 04 on the masters
//! where a kube-apiserver runs (one at a time, each `/readyz` before the next), then the
//! members are read over TLS from this machine, every one healthy. A one-CA PKI that kubeasz
//! made comes out with an etcd CA of its own; the cluster CA stays as it is.
//!
//! The cluster (Kubernetes) CA: each phase is rolled out as step 04 on the masters (one at a
//! time, each `/readyz` before the next), 01 on the masters (their `/root/.kube/config`, which
//! 04's `/readyz` check uses: a step behind the apiservers) and 05 on every node (kubelet,
//! kube-proxy), then every node must be Ready. After phase 1 the run waits until the controller-manager has published
//! both CAs to every namespace's `kube-root-ca.crt` and every ServiceAccount token's `ca.crt`,
//! and then a kubelet sync period, so that pods verify the new serving certificate of phase 2.
//! The ServiceAccount key (`sa.key`) is not the CA and stays: the tokens pods hold stay valid.
//! A one-CA PKI whose etcd is still on `ca.pem` is refused (rotate etcd first).
//!
//! The state is in `clusters/<name>/ssl/manifest.json`, written before a phase is handed out
//! and after it reached every host: a run stopped anywhere (a host down, a kill) is continued
//! by the next run, and a run after the rotation finished changes nothing (`--again` starts
//! another). `--until N` stops after phase N, so that clients ezk does not manage can be moved
//! between phases (new certificates after 2, before 3 drops the old CA). The cluster lock is
//! held for the whole run; a unit that the steps would still rewrite (a kubeasz cluster not
//! taken over yet) stops the rotation before it starts.

use indexmap::IndexMap;

use super::Error;
use super::etcd_change;
use super::etcd_tools::EtcdTools;
use super::node_change::{self, Target};
use super::phase::{Flow, Step};
use crate::exec::Options;
use crate::exec::gather::host_files::{self, Found, Probe, Request as FileRequest};
use crate::home::Home;
use crate::pki::CaKind;
use crate::pki::rotate::{self, Rotation};
use crate::session::Session;

/// What to rotate.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// Which CA: `etcd`, `kubernetes`.
    pub ca: String,
    /// Stop once this phase reached every host (1–3); None: to the end.
    pub until: Option<u8>,
    /// Start another rotation after a finished one.
    pub again: bool,
    /// Do not ask (required off a terminal).
    pub yes: bool,
    pub extra_vars: Vec<(String, String)>,
    pub run: Options,
}

const KUBE_APISERVER_UNIT: &str = "/etc/systemd/system/kube-apiserver.service";

/// Say `text` on stdout, or on stderr under `--json` (stdout is then the steps' JSON).
fn say(opts: &Options, text: &str) {
    if opts.json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// Run `ezk rotate-ca`; the exit code is 0, 1 (cancelled) or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let Some(&(name, kind)) = rotate::ROTATED.iter().find(|(n, _)| *n == req.ca) else {
        return Err(format!(
            "rotate-ca rotates the etcd CA or the cluster CA: `ezk rotate-ca {0} etcd` or `ezk rotate-ca {0} kubernetes` ({1:?} is not one it rotates); nothing was changed",
            req.cluster, req.ca
        )
        .into());
    };
    if let Some(u) = req.until.filter(|u| !(1..=3).contains(u)) {
        return Err(format!("--until takes a phase, 1, 2 or 3 (got {u}); nothing was changed").into());
    }
    let mut session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let dir = session.dir().to_path_buf();
    let status = rotate::status(&dir, kind)?;
    if let Some(r) = status.as_ref().filter(|r| r.finished.is_some()) {
        if !req.again {
            say(&req.run, &format!(
                "the {name} CA of cluster {} was rotated (finished {}, new CA sha256 {}): nothing to do; `--again` starts another rotation",
                req.cluster,
                when(r.finished.unwrap_or_default()),
                &r.new_sha256[..16]
            ));
            return Ok(0);
        }
    }
    let starting = status.as_ref().is_none_or(|r| r.finished.is_some());
    if starting {
        // Nothing asked, nothing changed: another CA's rotation under way, or (cluster CA) one
        // CA that still signs etcd too.
        if let Some(other) = rotate::in_progress(&dir)?.filter(|o| *o != name) {
            return Err(format!("a rotation of the {other} CA is under way; finish it first (`ezk rotate-ca {} {other}`), then rotate the {name} CA; nothing was changed", req.cluster).into());
        }
        if kind == CaKind::Cluster {
            refuse_shared_ca(&dir, &req.cluster)?;
            // The registry's certificate comes from the cluster CA and containerd trusts it
            // through step 03, which the rotation does not roll.
            if let Some(r) = session.pki_spec()?.registry {
                return Err(format!(
                    "cluster {}: IMAGE_DELIVERY is registry, and the image registry on {} has a certificate of the cluster CA that every containerd trusts (step 03); rotate-ca does not move the registry to a new CA yet, so the rotation would cut image pulls off after phase 3; nothing was changed",
                    req.cluster, r.host
                )
                .into());
            }
        }
    }
    let etcd_hosts = node_change::hosts_in(&session, &["etcd"]);
    let masters = apiserver_hosts(&session, &req.run)?;
    let nodes = node_change::hosts_in(&session, &["kube_master", "kube_node"]);
    let current = status.as_ref().filter(|_| !starting);
    match kind {
        CaKind::Cluster => print_cluster_plan(&session, current, &masters, &nodes, req.until, &req.run),
        _ => print_plan(&session, current, &etcd_hosts, &masters, req.until, &req.run),
    }
    if req.run.plan_only {
        return Ok(0);
    }
    if kind == CaKind::Cluster && masters.is_empty() {
        return Err(format!("cluster {}: no master runs a kube-apiserver yet (step 04 sets them up); nothing to rotate, nothing was changed", req.cluster).into());
    }
    if !req.yes {
        if let Flow::Stop(code) = node_change::confirm(
            "rotate-ca",
            &req.cluster,
            &match kind {
                CaKind::Cluster => format!("rotate the Kubernetes CA of cluster {}: every apiserver, controller-manager and scheduler restarts up to three times, one master at a time, every kubelet and kube-proxy too", req.cluster),
                _ => format!("rotate the etcd CA of cluster {}: every etcd member and apiserver restarts up to three times, one at a time", req.cluster),
            },
        )? {
            return Ok(code);
        }
    }
    session.lock()?;
    // Step 04 only where an apiserver runs: an etcd-only cluster plans no control plane.
    let targets = || match kind {
        // 04 before 01: step 01 writes the masters' ca.pem too, and were it first, 04's
        // serving certificate task would find ca.pem as it wants it and not restart the
        // apiserver (which reads its kubelet CA at start only). 01 moves the masters'
        // /root/.kube/config, which 04's /readyz check uses, one step behind the apiservers:
        // it trusts both before any apiserver serves a certificate of the new CA (phase 2) and
        // holds an admin certificate of the new CA before the old CA is dropped (phase 3).
        CaKind::Cluster => vec![
            Target { step: "04.kube-master", hosts: masters.clone() },
            Target { step: "01.prepare", hosts: masters.clone() },
            Target { step: "05.kube-node", hosts: nodes.clone() },
        ],
        _ => {
            let mut t = vec![Target { step: "02.etcd", hosts: etcd_hosts.clone() }];
            if !masters.is_empty() {
                t.push(Target { step: "04.kube-master", hosts: masters.clone() });
            }
            t
        }
    };
    // A phase recorded as rolled goes on to the next before the PKI is read: an advance that
    // was cut short (the new CA half in place) is finished first.
    if let Some(r) = status.as_ref().filter(|r| r.finished.is_none() && r.rolled && req.until.is_none_or(|u| r.phase < u)) {
        if r.phase < 3 {
            rotate::advance(&dir, kind)?;
        }
    }
    refuse_unit_changes(&mut session, &targets(), &req.run)?;
    if starting {
        if req.again {
            rotate::forget_finished(&dir, kind)?;
        }
        let spec = session.pki_spec()?;
        let (r, backup) = rotate::begin(&dir, kind, spec.ca_validity()?)?;
        say(&req.run, &format!("new {name} CA made (sha256 {}); the previous ssl/ is backed up in {}", &r.new_sha256[..16], backup.display()));
    }
    loop {
        let r = rotate::status(&dir, kind)?.ok_or("the rotation's state is gone from ssl/manifest.json")?;
        if r.finished.is_some() {
            break;
        }
        if r.rolled {
            if req.until.is_some_and(|u| r.phase >= u) {
                say(&req.run, &format!(
                    "stopped after phase {} as asked (--until); `ezk rotate-ca {} {name}` continues with phase {}",
                    r.phase,
                    req.cluster,
                    r.phase + 1
                ));
                return Ok(0);
            }
            rotate::advance(&dir, kind)?;
            continue;
        }
        say(&req.run, &format!("== phase {}/3: {}", r.phase, rotate::phases(kind)[usize::from(r.phase) - 1]));
        let rolled = match kind {
            CaKind::Cluster => roll_cluster(&mut session, &targets(), r.phase, &req.run)?,
            _ => roll(&mut session, &targets(), &req.run)?,
        };
        if let Flow::Stop(code) = rolled {
            eprintln!(
                "phase {} did not reach every host; nothing else was started. Fix what the step names and run `ezk rotate-ca {} {name}` again: it continues with this phase",
                r.phase, req.cluster
            );
            return Ok(code);
        }
        rotate::mark_rolled(&dir, kind)?;
    }
    say(&req.run, &match kind {
        CaKind::Cluster => format!(
            "the Kubernetes CA of cluster {} is rotated: every apiserver, controller-manager, scheduler, kubelet, kube-proxy and this machine's kubectl trust and use the new CA only; the ServiceAccount key is unchanged",
            req.cluster
        ),
        _ => format!(
            "the etcd CA of cluster {} is rotated: every member, apiserver and this machine's etcdctl trust and use the new CA only",
            req.cluster
        ),
    });
    Ok(0)
}

/// One phase on the hosts: 02 on the members and 04 on the masters, planned from the PKI as
/// the phase hands it out, then every member read over TLS from this machine.
fn roll(session: &mut Session, targets: &[Target], opts: &Options) -> Step {
    session.forget_files();
    let plans = node_change::plan_reaching(session, targets)?;
    if let Flow::Stop(code) = node_change::run_flow(session, &plans, targets, opts)? {
        return Ok(Flow::Stop(code));
    }
    let tools = EtcdTools::for_cluster(session)?;
    let members = etcd_change::read(session, &tools, &targets[0].hosts)?;
    say(opts, &format!("etcd members:\n{}", etcd_change::describe(&members)));
    if members.iter().any(|m| m.health.is_err()) {
        return Err("a member is not healthy after the phase (above); run rotate-ca again once it is".into());
    }
    Ok(Flow::Next)
}

/// One phase of the cluster CA on the hosts: 04 on the masters, 01 on them (their admin
/// kubeconfig) and 05 on the nodes, planned from the PKI as the phase hands it out; then every node
/// Ready and, after phase 1, both CAs published to the pods.
fn roll_cluster(session: &mut Session, targets: &[Target], phase: u8, opts: &Options) -> Step {
    session.forget_files();
    let plans = node_change::plan_reaching(session, targets)?;
    if let Flow::Stop(code) = node_change::run_flow(session, &plans, targets, opts)? {
        return Ok(Flow::Stop(code));
    }
    let nodes = &targets[2].hosts;
    wait_for(session, opts, "every node Ready", std::time::Duration::from_secs(180), |s| nodes_ready(s, nodes.len()))?;
    if phase == 1 {
        let master = targets[0].hosts.first().ok_or("no master")?;
        let bundle = crate::plan::DeployFiles::cert(session.files()?, master, "ca")?.cert_pem;
        wait_for(
            session,
            opts,
            "both CAs in every namespace's kube-root-ca.crt and every ServiceAccount token's ca.crt (the controller-manager publishes them)",
            std::time::Duration::from_secs(300),
            |s| published(s, &bundle),
        )?;
        // Pods read those through their volumes, which each kubelet refreshes when it syncs the
        // pod (`KUBELET_SYNC`): the serving certificate of phase 2 must find them trusting both.
        say(opts, &format!("waiting {}s, a kubelet sync period, for the pods' mounted copies", KUBELET_SYNC.as_secs()));
        std::thread::sleep(KUBELET_SYNC);
    }
    Ok(Flow::Next)
}

/// The longest a pod's mounted ConfigMap or Secret lags behind the API: a kubelet syncs each
/// pod again after its `syncFrequency` (1 minute by default) stretched by up to half of it
/// (the pod workers' jitter), and refreshes the pod's volumes then; with a margin.
const KUBELET_SYNC: std::time::Duration = std::time::Duration::from_secs(95);

/// Poll `check` every 2 s until it says yes or `timeout` passed (then the error names `what`
/// and the last answer).
fn wait_for(session: &Session, opts: &Options, what: &str, timeout: std::time::Duration, check: impl Fn(&Session) -> Result<Result<(), String>, Error>) -> Result<(), Error> {
    let start = std::time::Instant::now();
    say(opts, &format!("waiting for {what}"));
    loop {
        let last = match check(session) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(e) => e.to_string(),
        };
        if start.elapsed() > timeout {
            return Err(format!("not reached within {}s: {what} ({last}); run rotate-ca again once it is", timeout.as_secs()).into());
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

fn json_items(session: &Session, args: &[&str]) -> Result<Vec<serde_json::Value>, Error> {
    let out = session.kubectl(args)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("kubectl {}: {e}", args.join(" ")))?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// Whether `want` nodes are registered and Ready.
fn nodes_ready(session: &Session, want: usize) -> Result<Result<(), String>, Error> {
    let items = json_items(session, &["--request-timeout=10s", "get", "nodes", "-o", "json"])?;
    let ready = |n: &serde_json::Value| {
        n["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    };
    let not: Vec<&str> = items.iter().filter(|n| !ready(n)).filter_map(|n| n["metadata"]["name"].as_str()).collect();
    Ok(if items.len() >= want && not.is_empty() { Ok(()) } else { Err(format!("{} of {want} nodes Ready; not Ready: {}", items.len() - not.len(), not.join(", "))) })
}

/// Whether every `kube-root-ca.crt` ConfigMap and every ServiceAccount token Secret carries
/// `bundle` (the old + the new CA), as the controller-manager publishes its `--root-ca-file`.
fn published(session: &Session, bundle: &str) -> Result<Result<(), String>, Error> {
    let cms = json_items(session, &["--request-timeout=20s", "get", "configmaps", "-A", "--field-selector", "metadata.name=kube-root-ca.crt", "-o", "json"])?;
    let secrets = json_items(session, &["--request-timeout=20s", "get", "secrets", "-A", "--field-selector", "type=kubernetes.io/service-account-token", "-o", "json"])?;
    let encoded = crate::pki::kubeconfig::base64(bundle.as_bytes());
    let name = |o: &serde_json::Value| format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or(""));
    let stale: Vec<String> = cms
        .iter()
        .filter(|c| c["data"]["ca.crt"].as_str() != Some(bundle))
        .map(|c| format!("configmap {}", name(c)))
        .chain(secrets.iter().filter(|s| s["data"]["ca.crt"].as_str() != Some(encoded.as_str())).map(|s| format!("secret {}", name(s))))
        .collect();
    Ok(if stale.is_empty() { Ok(()) } else { Err(format!("{} not yet: {}", stale.len(), stale.iter().take(5).cloned().collect::<Vec<_>>().join(", "))) })
}

/// A one-CA PKI (kubeasz's) whose etcd certificates are still signed by `ca.pem` is not
/// rotated as the cluster CA: the etcd CA is rotated first, which gives etcd a CA of its own.
fn refuse_shared_ca(dir: &std::path::Path, cluster: &str) -> Result<(), Error> {
    let ssl = dir.join("ssl");
    let m = crate::pki::ssl_dir::Manifest::load(&ssl)?;
    let shared = if crate::pki::ssl_dir::Manifest::path(&ssl).exists() { m.one_ca && !m.own_etcd_ca } else { !ssl.join("etcd-ca.pem").exists() && ssl.join("ca.pem").exists() };
    if shared {
        return Err(format!(
            "cluster {cluster}: ca.pem signs the etcd certificates too (one CA, as kubeasz makes it), so rotating it would cut etcd off; rotate the etcd CA first — `ezk rotate-ca {cluster} etcd` gives etcd a CA of its own — then `ezk rotate-ca {cluster} kubernetes`; nothing was changed"
        )
        .into());
    }
    Ok(())
}

/// The rotation only changes certificates and trust files: when step 02 or 04 would rewrite a
/// unit in a way that changes who may connect (a kubeasz etcd not taken over yet), it stops
/// before anything changed, naming `ezk setup`.
fn refuse_unit_changes(session: &mut Session, targets: &[Target], opts: &Options) -> Result<(), Error> {
    let plans = node_change::plan_reaching(session, targets)?;
    let found = super::client_cutoff::check(session, &plans, opts)?;
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|f| format!("  - {f}")).collect();
    Err(format!(
        "the services are not set up as ezk sets them up yet, and doing so changes who may connect:\n{}\nnothing was changed: take the cluster over first (`ezk setup {} 02 --plan`, README \"Taking over a cluster kubeasz built\"), then rotate",
        list.join("\n"),
        session.inventory.cluster
    )
    .into())
}

/// The masters where a kube-apiserver unit is installed (a master that has none yet gets the
/// new files when step 04 first sets it up).
fn apiserver_hosts(session: &Session, opts: &Options) -> Result<Vec<String>, Error> {
    let masters = node_change::hosts_in(session, &["kube_master"]);
    if masters.is_empty() {
        return Ok(masters);
    }
    let conns = session.connections()?;
    let ssh = crate::exec::ssh_options(session.dir(), &conns, opts);
    let hosts: IndexMap<String, _> = masters
        .iter()
        .map(|h| (h.clone(), (conns[h].clone(), vec![FileRequest { path: KUBE_APISERVER_UNIT.into(), probe: Probe::Exists }])))
        .collect();
    let mut out = Vec::new();
    for (host, answer) in host_files::fetch_with(ssh, &hosts)? {
        match answer {
            Ok(found) if matches!(found.first(), Some(Found::Present)) => out.push(host),
            Ok(_) => {}
            Err(e) => return Err(format!("{host}: could not read whether kube-apiserver is set up there: {e}; nothing was changed").into()),
        }
    }
    out.sort_by_key(|h| masters.iter().position(|m| m == h));
    Ok(out)
}

fn when(unix: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()))
        .unwrap_or_else(|_| unix.to_string())
}

/// Where phase `n` stands in the rotation under way (`current`; None: not begun).
fn phase_state(current: Option<&Rotation>, n: u8) -> &'static str {
    match current {
        None if n == 1 => "next",
        None => "to do",
        Some(r) if n < r.phase || (n == r.phase && r.rolled) => "done",
        Some(r) if n == r.phase => "next (under way: continues where it stopped)",
        Some(_) => "to do",
    }
}

/// The hosts of one kind in a plan: its heading, the hosts, and per phase what each gets.
struct Group<'a> {
    heading: String,
    hosts: &'a [String],
    per_phase: [&'a str; 3],
}

/// The phases of rotating `kind`: `intro` lines, then each phase with its state, each group's
/// hosts with what they get, this machine (`here`), and who loses access in phase 3.
#[allow(clippy::too_many_arguments)]
fn print_phases(opts: &Options, intro: &[String], kind: CaKind, current: Option<&Rotation>, until: Option<u8>, groups: &[Group], here: [&str; 3], loses: &str) {
    let mut out: Vec<String> = intro.to_vec();
    for n in 1..=3u8 {
        let i = usize::from(n - 1);
        let stop = if until.is_some_and(|u| n > u) { " [not in this run: --until]" } else { "" };
        out.push(format!("phase {n}/3 ({}){stop}: {}", phase_state(current, n), rotate::phases(kind)[i]));
        for g in groups {
            out.push(format!("  {}", g.heading));
            out.extend(g.hosts.iter().map(|h| format!("    {h}: {}", g.per_phase[i])));
        }
        out.push(format!("  this machine: {}", here[i]));
        if n == 3 {
            out.push(format!("  who loses access: {loses}"));
        }
    }
    say(opts, &out.join("\n"));
}

/// The phases of an etcd CA rotation, each with its state and per host what changes.
fn print_plan(session: &Session, current: Option<&Rotation>, etcd: &[String], masters: &[String], until: Option<u8>, opts: &Options) {
    let name = &session.inventory.cluster;
    let ssl = session.dir().join("ssl");
    let one_ca = current.map(|r| r.old_stem == "ca").unwrap_or_else(|| !ssl.join("etcd-ca.pem").exists() && ssl.join("ca.pem").exists());
    let mut intro = vec![format!("etcd CA rotation of cluster {name}")];
    if one_ca {
        intro.push("  the etcd certificates are signed by the cluster CA (ca.pem, one CA as kubeasz makes it): the rotation gives etcd a CA of its own (etcd-ca.pem); ca.pem stays and keeps signing the rest".into());
    }
    let master_list = if masters.is_empty() { "none (no kube-apiserver set up)".to_string() } else { masters.join(", ") };
    let groups = [
        Group {
            heading: format!("etcd members, one at a time, each healthy with a leader before the next: {}", etcd.join(", ")),
            hosts: etcd,
            per_phase: [
                "etcd-ca.pem: the old CA → the old + the new CA; etcd restarts",
                "etcd.pem, etcd-key.pem (server, peer, local client): issued by the new CA; etcd restarts",
                "etcd-ca.pem: the new CA only; etcd restarts",
            ],
        },
        Group {
            heading: format!("apiservers, one master at a time, each /readyz before the next: {master_list}"),
            hosts: masters,
            per_phase: [
                "apiserver-etcd-ca.pem: the old CA → the old + the new CA; kube-apiserver restarts",
                "apiserver-etcd-client.pem, apiserver-etcd-client-key.pem: issued by the new CA; kube-apiserver restarts",
                "apiserver-etcd-ca.pem: the new CA only; kube-apiserver restarts",
            ],
        },
    ];
    let here = [
        "ssl/etcd-trust.pem (etcdctl of backup, restore, add-etcd, del-etcd) → the old + the new CA",
        "ssl/etcd-client.pem: issued by the new CA",
        "ssl/etcd-trust.pem → the new CA only",
    ];
    let loses = format!(
        "etcd then refuses every client certificate of the old CA{} — clients that ezk does not hand certificates to (scripts with their own etcdctl certificates) must have moved to one from the new CA (run with --until 2 first, move them, then run again)",
        if one_ca { " (ca.pem: kubeasz's kubernetes.pem, etcd.pem copies, admin.pem …)" } else { "" }
    );
    print_phases(opts, &intro, CaKind::Etcd, current, until, &groups, here, &loses);
}

/// The phases of a cluster CA rotation, each with its state and per host what changes.
fn print_cluster_plan(session: &Session, current: Option<&Rotation>, masters: &[String], nodes: &[String], until: Option<u8>, opts: &Options) {
    let intro = [
        format!("Kubernetes (cluster) CA rotation of cluster {}", session.inventory.cluster),
        "  unchanged: the ServiceAccount key (sa.key: the tokens pods hold stay valid), the etcd CA, the front-proxy CA when it is a CA of its own".into(),
    ];
    let master_list = if masters.is_empty() { "none (no kube-apiserver set up)".to_string() } else { masters.join(", ") };
    let groups = [
        Group {
            heading: format!("masters, one at a time, each /readyz before the next: {master_list}"),
            hosts: masters,
            per_phase: [
                "ca.pem, /root/.kube/config and the controller-manager and scheduler kubeconfigs: the old CA → the old + the new CA; the controller-manager signs from ca-signing.pem (the old CA alone) and publishes both to the pods; kube-apiserver, kube-controller-manager, kube-scheduler restart",
                "kubernetes.pem (serving), apiserver-kubelet-client, the admin, controller-manager and scheduler certificates: issued by the new CA; ca-key.pem and ca-signing.pem: the new CA (the controller-manager signs with it); restarts as above",
                "ca.pem and the kubeconfigs: the new CA only (the controller-manager signs from ca.pem again); restarts as above",
            ],
        },
        Group {
            heading: format!("nodes, then every node Ready: {}", nodes.join(", ")),
            hosts: nodes,
            per_phase: [
                "ca.pem, kubelet.kubeconfig, kube-proxy.kubeconfig: the old CA → the old + the new CA; kubelet, kube-proxy restart",
                "kubelet.pem (client and serving), the kube-proxy certificate: issued by the new CA; kubelet, kube-proxy restart",
                "ca.pem, kubelet.kubeconfig, kube-proxy.kubeconfig: the new CA only; kubelet, kube-proxy restart",
            ],
        },
    ];
    let here = [
        "kubectl.kubeconfig → trusts the old + the new CA; then waits until every kube-root-ca.crt ConfigMap and ServiceAccount token ca.crt holds both, and a kubelet sync period (the pods' mounted copies)",
        "kubectl.kubeconfig → admin certificate issued by the new CA",
        "kubectl.kubeconfig → trusts the new CA only",
    ];
    let loses = "the apiservers and kubelets then refuse every client certificate of the old CA — kubeconfigs ezk did not make, and `ezk kcfg-adm` users issued before phase 2, must have been re-issued (run with --until 2 first, re-issue them, then run again); pods that pinned the old CA elsewhere than kube-root-ca.crt or their token's ca.crt must have re-read it";
    print_phases(opts, &intro, CaKind::Cluster, current, until, &groups, here, loses);
}
