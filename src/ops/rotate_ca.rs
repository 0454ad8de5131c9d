//! `ezk rotate-ca <cluster> etcd` (arguments in `cli/rotate_ca.rs`): a new etcd CA without
//! a moment in which a member, an apiserver or this machine's etcdctl is refused. Three phases
//! (`pki::rotate` says what the PKI hands out in each), each rolled out as steps 02 (the etcd
//! members, one at a time, each healthy with a leader before the next: the etcd role's
//! `serial: 1`) and 04 on the masters where a kube-apiserver runs (one at a time, each
//! `/readyz` before the next), then the members read over TLS from this machine, every one
//! healthy:
//!
//! 1. trust both: every etcd trust file becomes old + new CA;
//! 2. re-issue: the etcd server/peer certificate and every etcd client certificate from the
//!    new CA;
//! 3. drop the old CA: trust files hold the new CA only.
//!
//! The state is in `clusters/<name>/ssl/manifest.json`, written before a phase is handed out
//! and after it reached every host: a run stopped anywhere (a host down, a kill) is continued
//! by the next run, and a run after the rotation finished changes nothing (`--again` starts
//! another). `--until N` stops after phase N, so that clients ezk does not manage can be moved
//! between phases (new certificates after 2, before 3 drops the old CA). A one-CA PKI that
//! kubeasz made comes out with an etcd CA of its own; the cluster CA stays as it is. The
//! cluster lock is held for the whole run; a unit that step 02 would still rewrite (a kubeasz
//! etcd not taken over yet) stops the rotation before it starts.

use indexmap::IndexMap;

use super::Error;
use super::etcd_change;
use super::etcd_tools::EtcdTools;
use super::node_change::{self, Target};
use super::phase::{Flow, Step};
use crate::exec::Options;
use crate::exec::gather::host_files::{self, Found, Probe, Request as FileRequest};
use crate::home::Home;
use crate::pki::rotate::{self, PHASES, Rotation};
use crate::session::Session;

/// What to rotate.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// Which CA: `etcd`.
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
    if req.ca != "etcd" {
        return Err(format!(
            "rotate-ca rotates the etcd CA: `ezk rotate-ca {} etcd` ({:?} is not one it rotates; the cluster CA is not rotated by ezk yet); nothing was changed",
            req.cluster, req.ca
        )
        .into());
    }
    if let Some(u) = req.until.filter(|u| !(1..=3).contains(u)) {
        return Err(format!("--until takes a phase, 1, 2 or 3 (got {u}); nothing was changed").into());
    }
    let mut session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let dir = session.dir().to_path_buf();
    let status = rotate::status(&dir)?;
    if let Some(r) = status.as_ref().filter(|r| r.finished.is_some()) {
        if !req.again {
            say(&req.run, &format!(
                "the etcd CA of cluster {} was rotated (finished {}, new CA sha256 {}): nothing to do; `--again` starts another rotation",
                req.cluster,
                when(r.finished.unwrap_or_default()),
                &r.new_sha256[..16]
            ));
            return Ok(0);
        }
    }
    let starting = status.as_ref().is_none_or(|r| r.finished.is_some());
    let etcd_hosts = node_change::hosts_in(&session, &["etcd"]);
    let masters = apiserver_hosts(&session, &req.run)?;
    print_plan(&session, status.as_ref().filter(|_| !starting), &etcd_hosts, &masters, req.until, &req.run);
    if req.run.plan_only {
        return Ok(0);
    }
    if !req.yes {
        if let Flow::Stop(code) = node_change::confirm(
            "rotate-ca",
            &req.cluster,
            &format!("rotate the etcd CA of cluster {}: every etcd member and apiserver restarts up to three times, one at a time", req.cluster),
        )? {
            return Ok(code);
        }
    }
    session.lock()?;
    // Step 04 only where an apiserver runs: an etcd-only cluster plans no control plane.
    let targets = || {
        let mut t = vec![Target { step: "02.etcd", hosts: etcd_hosts.clone() }];
        if !masters.is_empty() {
            t.push(Target { step: "04.kube-master", hosts: masters.clone() });
        }
        t
    };
    // A phase recorded as rolled goes on to the next before the PKI is read: an advance that
    // was cut short (the new CA half in place) is finished first.
    if let Some(r) = status.as_ref().filter(|r| r.finished.is_none() && r.rolled && req.until.is_none_or(|u| r.phase < u)) {
        if r.phase < 3 {
            rotate::advance(&dir)?;
        }
    }
    refuse_unit_changes(&mut session, &targets(), &req.run)?;
    if starting {
        if req.again {
            rotate::forget_finished(&dir)?;
        }
        let spec = session.pki_spec()?;
        let (r, backup) = rotate::begin(&dir, spec.ca_validity()?)?;
        say(&req.run, &format!("new etcd CA made (sha256 {}); the previous ssl/ is backed up in {}", &r.new_sha256[..16], backup.display()));
    }
    loop {
        let r = rotate::status(&dir)?.ok_or("the rotation's state is gone from ssl/manifest.json")?;
        if r.finished.is_some() {
            break;
        }
        if r.rolled {
            if req.until.is_some_and(|u| r.phase >= u) {
                say(&req.run, &format!(
                    "stopped after phase {} as asked (--until); `ezk rotate-ca {} etcd` continues with phase {}",
                    r.phase,
                    req.cluster,
                    r.phase + 1
                ));
                return Ok(0);
            }
            rotate::advance(&dir)?;
            continue;
        }
        say(&req.run, &format!("== phase {}/3: {}", r.phase, PHASES[usize::from(r.phase) - 1]));
        if let Flow::Stop(code) = roll(&mut session, &targets(), &req.run)? {
            eprintln!(
                "phase {} did not reach every host; nothing else was started. Fix what the step names and run `ezk rotate-ca {} etcd` again: it continues with this phase",
                r.phase, req.cluster
            );
            return Ok(code);
        }
        rotate::mark_rolled(&dir)?;
    }
    say(&req.run, &format!(
        "the etcd CA of cluster {} is rotated: every member, apiserver and this machine's etcdctl trust and use the new CA only",
        req.cluster
    ));
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

/// The phases, each with its state and per host what changes.
fn print_plan(session: &Session, current: Option<&Rotation>, etcd: &[String], masters: &[String], until: Option<u8>, opts: &Options) {
    let mut out = String::new();
    macro_rules! w {
        ($($t:tt)*) => {{
            out.push_str(&format!($($t)*));
            out.push('\n');
        }};
    }
    let name = &session.inventory.cluster;
    let ssl = session.dir().join("ssl");
    let one_ca = current.map(|r| r.old_stem == "ca").unwrap_or_else(|| !ssl.join("etcd-ca.pem").exists() && ssl.join("ca.pem").exists());
    w!("etcd CA rotation of cluster {name}");
    if one_ca {
        w!("  the etcd certificates are signed by the cluster CA (ca.pem, one CA as kubeasz makes it): the rotation gives etcd a CA of its own (etcd-ca.pem); ca.pem stays and keeps signing the rest");
    }
    let state = |n: u8| -> &'static str {
        match current {
            None => {
                if n == 1 {
                    "next"
                } else {
                    "to do"
                }
            }
            Some(r) if n < r.phase || (n == r.phase && r.rolled) => "done",
            Some(r) if n == r.phase => "next (under way: continues where it stopped)",
            Some(_) => "to do",
        }
    };
    let etcd_list = etcd.join(", ");
    let master_list = if masters.is_empty() { "none (no kube-apiserver set up)".to_string() } else { masters.join(", ") };
    let per_phase: [(&str, &str, &str); 3] = [
        (
            "etcd-ca.pem: the old CA → the old + the new CA; etcd restarts",
            "apiserver-etcd-ca.pem: the old CA → the old + the new CA; kube-apiserver restarts",
            "ssl/etcd-trust.pem (etcdctl of backup, restore, add-etcd, del-etcd) → the old + the new CA",
        ),
        (
            "etcd.pem, etcd-key.pem (server, peer, local client): issued by the new CA; etcd restarts",
            "apiserver-etcd-client.pem, apiserver-etcd-client-key.pem: issued by the new CA; kube-apiserver restarts",
            "ssl/etcd-client.pem: issued by the new CA",
        ),
        (
            "etcd-ca.pem: the new CA only; etcd restarts",
            "apiserver-etcd-ca.pem: the new CA only; kube-apiserver restarts",
            "ssl/etcd-trust.pem → the new CA only",
        ),
    ];
    for (i, (on_etcd, on_master, here)) in per_phase.iter().enumerate() {
        let n = i as u8 + 1;
        let stop = if until.is_some_and(|u| n > u) { " [not in this run: --until]" } else { "" };
        w!("phase {n}/3 ({}){stop}: {}", state(n), PHASES[i]);
        w!("  etcd members, one at a time, each healthy with a leader before the next: {etcd_list}");
        for h in etcd {
            w!("    {h}: {on_etcd}");
        }
        w!("  apiservers, one master at a time, each /readyz before the next: {master_list}");
        for h in masters {
            w!("    {h}: {on_master}");
        }
        w!("  this machine: {here}");
        if n == 3 {
            w!(
                "  who loses access: etcd then refuses every client certificate of the old CA{} — clients that ezk does not hand certificates to (scripts with their own etcdctl certificates) must have moved to one from the new CA (run with --until 2 first, move them, then run again)",
                if one_ca { " (ca.pem: kubeasz's kubernetes.pem, etcd.pem copies, admin.pem …)" } else { "" }
            );
        }
    }
    say(opts, out.trim_end());
}
