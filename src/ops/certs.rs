//! `ezk certs [<cluster>] [--issue] [--local]` as phases (arguments in `cli/certs.rs`): every
//! certificate under clusters/<name>/ssl/ with subject, SANs, issuer and days to expiry; then,
//! unless `--local`, the copy installed on each host compared with the local one (over SSH,
//! strict host keys, one command per host, all hosts at once; nothing is written on hosts).
//!
//! Which files a host should hold comes from planning every step (`ezk setup <cluster> all`)
//! with the PKI as it is on disk; see `certs_audit`. Reporting writes nothing locally either;
//! `--issue` first issues what is missing or stale.
//!
//! Exit code: 1 when a problem was found (a certificate missing, unreadable, expired or expiring
//! within `--warn-days`; a host copy that differs or is missing; a key a host must not hold);
//! else 2 when some host could not be checked (unreachable); else 0.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::Error;
use super::certs_audit::{self, AuditFiles};
use super::phase::{Flow, Phase, Step};
use crate::exec::Connection;
use crate::exec::gather::host_files::{self, Request as Probe};
use crate::home::Home;
use crate::inventory::Inventory;
use crate::pki::inspect::{local_report, render_table};
use crate::pki::{self, Pki, PkiError, PkiSpec};
use crate::session::{Session, connection};

/// What to report.
#[derive(Debug, Clone)]
pub struct Request {
    /// The cluster; None: the current one.
    pub cluster: Option<String>,
    /// Issue missing or stale certificates first.
    pub issue: bool,
    /// Only the local table: connect to no host.
    pub local: bool,
    /// A certificate that expires within this many days counts as a problem.
    pub warn_days: i64,
    /// SSH connect timeout per host.
    pub connect_timeout: Duration,
    pub extra_vars: Vec<(String, String)>,
}

struct Certs {
    req: Request,
    session: Session,
    spec: Option<PkiSpec>,
    /// Exit codes of the local table and of the hosts' audit.
    local: i32,
    remote: i32,
}

const PHASES: &[Phase<Certs>] = &[
    Phase::new("read the PKI inputs from the inventory", read_spec),
    Phase::new("issue missing or stale certificates", issue).when(|c| c.req.issue),
    Phase::new("print the local table", local_table_phase),
    Phase::new("audit the hosts' copies", audit_hosts).when(|c| !c.req.local),
];

/// Run `ezk certs`; inventory problems are an error.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let cluster = home.cluster_or_current(req.cluster.clone())?;
    let session = Session::open(home, &cluster, &req.extra_vars)?;
    let mut state = Certs { req, session, spec: None, local: 0, remote: 0 };
    let code = super::phase::run(PHASES, &mut state, false)?;
    Ok(match (code, state.local, state.remote) {
        (0, 0, r) => r,
        (0, l, _) => l,
        (c, ..) => c,
    })
}

fn read_spec(c: &mut Certs) -> Step {
    c.spec = Some(inventory_spec(&c.session.inventory)?);
    Ok(Flow::Next)
}

fn issue(c: &mut Certs) -> Step {
    let spec = c.spec.as_ref().expect("read");
    issue_report(c.session.dir(), spec, &mut std::io::stdout().lock())?;
    Ok(Flow::Next)
}

fn local_table_phase(c: &mut Certs) -> Step {
    let spec = c.spec.as_ref().expect("read");
    c.local = local_table(c.session.dir(), spec, c.req.warn_days, &mut std::io::stdout().lock())?;
    Ok(Flow::Next)
}

fn audit_hosts(c: &mut Certs) -> Step {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let spec = c.spec.as_ref().expect("read");
    c.remote = remote(&c.session, spec, c.req.connect_timeout, &mut out)?;
    Ok(Flow::Next)
}

/// The PKI inputs of a cluster, from its validated inventory; a problem names the inventory.
pub fn inventory_spec(inv: &Inventory) -> Result<PkiSpec, Error> {
    Ok(pki::from_inventory(inv).map_err(|e| format!("{}: {e}", inv.hosts_path().display()))?)
}

/// The local table of every certificate under ssl/. Exit code 1 when a certificate is missing,
/// unreadable, expired or expires within `warn_days` days, else 0. Writes nothing.
pub fn local_table(
    cluster_dir: &Path,
    spec: &PkiSpec,
    warn_days: i64,
    out: &mut dyn Write,
) -> Result<i32, PkiError> {
    let pki = Pki::open(cluster_dir, spec)?;
    let rows = local_report(&pki);
    let _ = out.write_all(render_table(&rows).as_bytes());
    let bad = rows
        .iter()
        .filter(|r| r.info.as_ref().is_none_or(|i| i.days_left < 0))
        .count();
    let expiring: Vec<&str> = rows
        .iter()
        .filter(|r| r.info.as_ref().is_some_and(|i| (0..warn_days).contains(&i.days_left)))
        .map(|r| r.file.as_str())
        .collect();
    let name = cluster_name(cluster_dir);
    if bad > 0 {
        let _ = writeln!(
            out,
            "{bad} certificate(s) missing, unreadable or expired; `ezk certs {name} --issue` issues them",
        );
    }
    if !expiring.is_empty() {
        let _ = writeln!(
            out,
            "{} certificate(s) expire within {warn_days} days: {}; `ezk kca-renew {name}` reissues them (CAs too with --new-ca)",
            expiring.len(),
            expiring.join(", ")
        );
    }
    Ok(i32::from(bad > 0 || !expiring.is_empty()))
}

/// `--issue`: issue what is missing or stale, reuse the rest, and say which is which. The only
/// way `ezk certs` writes anything.
pub fn issue_report(cluster_dir: &Path, spec: &PkiSpec, out: &mut dyn Write) -> Result<(), PkiError> {
    let pki = Pki::ensure(cluster_dir, spec)?;
    let o = pki.outcome();
    if !o.created_cas.is_empty() {
        let _ = writeln!(out, "created CAs: {}", o.created_cas.join(", "));
    }
    if o.issued.is_empty() {
        let _ = writeln!(
            out,
            "issued nothing: all {} certificates are current",
            o.reused.len()
        );
    } else {
        let _ = writeln!(
            out,
            "issued {}: {} (kept {})",
            o.issued.len(),
            o.issued.join(", "),
            o.reused.len()
        );
    }
    let _ = writeln!(out);
    Ok(())
}

/// The hosts' copies: plan, probe every host at once, print the table. Returns 1 when a copy
/// is wrong, 2 when a host (or every host) could not be checked, else 0.
fn remote(
    session: &Session,
    spec: &PkiSpec,
    connect_timeout: Duration,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let inv = &session.inventory;
    let pki = Pki::open(&inv.dir, spec)?;
    let files = AuditFiles(&pki);
    let plans = match session.planner(&files)?.plan_steps("all") {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "hosts not checked: what they should hold could not be planned:\n{e}");
            return Ok(2);
        }
    };
    let expected = certs_audit::expected_files(&pki, &plans);
    let forbidden = certs_audit::forbidden_files(&pki, &expected);
    let bad_ssh = crate::session::check_connections(inv);
    if !bad_ssh.is_empty() {
        return Err(crate::inventory::InventoryErrors(bad_ssh).into());
    }
    let probes: IndexMap<String, (Connection, Vec<Probe>)> = inv
        .hosts
        .iter()
        .map(|h| (h.clone(), (connection(inv, h), certs_audit::requests(h, &expected, &forbidden))))
        .filter(|(_, (_, r))| !r.is_empty())
        .collect();
    if probes.is_empty() {
        let _ = writeln!(out, "no host receives a certificate in this cluster's steps; nothing to compare");
        return Ok(0);
    }
    let answers = host_files::fetch_over_ssh(&inv.dir, &probes, connect_timeout)?;
    let mut findings = Vec::new();
    let mut unreachable = Vec::new();
    for (host, answer) in answers {
        match answer {
            Ok(found) => findings.extend(certs_audit::judge(&pki, &host, &expected, &forbidden, &found)),
            Err(e) => {
                // The error names the host already; the table's first column does too.
                let text = e.to_string();
                let why = text.strip_prefix(&format!("{host}: ")).unwrap_or(&text).to_string();
                unreachable.push((host, why));
            }
        }
    }
    let _ = writeln!(out, "installed on the hosts (compared with ssl/):");
    let _ = out.write_all(certs_audit::render(&findings, &unreachable).as_bytes());
    let problems = findings.iter().filter(|f| f.verdict.is_problem()).count();
    let checked = probes.len() - unreachable.len();
    let _ = writeln!(
        out,
        "{checked} host(s) checked, {} unreachable, {problems} problem(s)",
        unreachable.len()
    );
    let mut not_yet: Vec<&str> = findings
        .iter()
        .filter_map(|f| match &f.verdict {
            certs_audit::Verdict::NotYet { step } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    not_yet.sort_unstable();
    not_yet.dedup();
    if !not_yet.is_empty() {
        let _ = writeln!(
            out,
            "not yet run on some hosts: step(s) {} (their files are not counted as problems)",
            not_yet.join(", ")
        );
    }
    if problems > 0 {
        let _ = writeln!(
            out,
            "`ezk setup {} all` reinstalls what the plan says; remove forbidden keys by hand",
            cluster_name(&inv.dir)
        );
    }
    Ok(if problems > 0 {
        1
    } else if !unreachable.is_empty() {
        2
    } else {
        0
    })
}

/// The cluster's name, for commands quoted in messages (clusters/<name>/).
pub fn cluster_name(cluster_dir: &Path) -> String {
    cluster_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<cluster>".into())
}

/// The PKI's table of ids, for `ezk certs --help`.
pub fn ids_help() -> String {
    crate::pki::help_table()
}
