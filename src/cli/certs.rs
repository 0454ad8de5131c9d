//! `ezk certs [<cluster>] [--issue] [--local]`: every certificate under clusters/<name>/ssl/
//! with subject, SANs, issuer and days to expiry; then, unless `--local`, the copy installed on
//! each host compared with the local one (over SSH, strict host keys, one command per host,
//! all hosts at once; nothing is written on hosts).
//!
//! Which files a host should hold comes from planning every step (`ezk setup <cluster> all`)
//! with the PKI as it is on disk; see `pki::installed`. Reporting writes nothing locally either;
//! `--issue` first issues what is missing or stale.
//!
//! Exit code: 1 when a problem was found (a certificate missing, unreadable, expired or expiring
//! within `--warn-days`; a host copy that differs or is missing; a key a host must not hold);
//! else 2 when some host could not be checked (unreachable); else 0.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use super::checkout::cluster_or_current;
use super::{CliError, CliResult, Context, parse_extra_var};
use crate::exec::fetch::{self, Request};
use crate::exec::Connection;
use crate::inventory::Inventory;
use crate::pki::installed::{self, ReportSources};
use crate::pki::{self, Pki, PkiSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// First issue missing or stale certificates (CAs, keys, kubeconfig) under ssl/; without
    /// it nothing is written.
    #[arg(long)]
    pub issue: bool,
    /// Only the local table: connect to no host.
    #[arg(long)]
    pub local: bool,
    /// A certificate that expires within this many days counts as a problem. Exit code 1: a
    /// problem (missing, expired or expiring certificate; a host copy that differs or is
    /// missing; a key a host must not hold); 2: no problem, but a host could not be checked.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub warn_days: i64,
    /// SSH connect timeout per host, seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let cluster = cluster_or_current(&ctx.home, args.cluster.clone())?;
    let inv = Inventory::load(&ctx.home, &cluster, &args.extra)?;
    let spec = inventory_spec(&inv)?;
    let mut out = std::io::stdout().lock();
    if args.issue {
        pki::cli_issue(&inv.dir, &spec, &mut out)?;
    }
    let local = pki::cli_certs(&inv.dir, &spec, args.warn_days, &mut out)?;
    if args.local {
        return Ok(local);
    }
    let _ = writeln!(out);
    let remote = remote(ctx, &inv, &spec, &args, &mut out)?;
    Ok(match (local, remote) {
        (0, r) => r,
        (l, _) => l,
    })
}

/// The hosts' copies: plan, probe every host at once, print the table. Returns 1 when a copy
/// is wrong, 2 when a host (or every host) could not be checked, else 0.
fn remote(
    ctx: &Context,
    inv: &Inventory,
    spec: &PkiSpec,
    args: &Args,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    let pki = Pki::open(&inv.dir, spec)?;
    let lib = crate::plan::Library::with_overrides(ctx.home.root())?;
    let catalog = crate::plan::Catalog::load(&lib)?;
    let sources = ReportSources(&pki);
    let planner = crate::plan::Planner { catalog: &catalog, vars: inv, sources: &sources };
    let plans = match planner.plan_steps("all") {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "hosts not checked: what they should hold could not be planned:\n{e}");
            return Ok(2);
        }
    };
    let expected = installed::expected_files(&pki, &plans);
    let forbidden = installed::forbidden_files(&pki, &expected);
    let probes: IndexMap<String, (Connection, Vec<Request>)> = inv
        .hosts
        .iter()
        .map(|h| (h.clone(), (crate::session::connection(inv, h), installed::requests(h, &expected, &forbidden))))
        .filter(|(_, (_, r))| !r.is_empty())
        .collect();
    if probes.is_empty() {
        let _ = writeln!(out, "no host receives a certificate in this cluster's steps; nothing to compare");
        return Ok(0);
    }
    let answers =
        fetch::fetch_over_ssh(&inv.dir, &probes, Duration::from_secs(args.connect_timeout))?;
    let mut findings = Vec::new();
    let mut unreachable = Vec::new();
    for (host, answer) in answers {
        match answer {
            Ok(found) => findings.extend(installed::judge(&pki, &host, &expected, &forbidden, &found)),
            Err(e) => {
                // The error names the host already; the table's first column does too.
                let text = e.to_string();
                let why = text.strip_prefix(&format!("{host}: ")).unwrap_or(&text).to_string();
                unreachable.push((host, why));
            }
        }
    }
    let _ = writeln!(out, "installed on the hosts (compared with ssl/):");
    let _ = out.write_all(installed::render(&findings, &unreachable).as_bytes());
    let problems = findings.iter().filter(|f| f.verdict.is_problem()).count();
    let checked = probes.len() - unreachable.len();
    let _ = writeln!(
        out,
        "{checked} host(s) checked, {} unreachable, {problems} problem(s)",
        unreachable.len()
    );
    if problems > 0 {
        let _ = writeln!(
            out,
            "`ezk setup {} all` reinstalls what the plan says; remove forbidden keys by hand",
            cluster_name(inv)
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

fn cluster_name(inv: &Inventory) -> String {
    inv.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<cluster>".into())
}

fn inventory_spec(inv: &Inventory) -> Result<PkiSpec, CliError> {
    Ok(pki::from_inventory(inv).map_err(|e| format!("{}: {e}", inv.hosts_path().display()))?)
}

/// The directory and PKI inputs of a cluster (given, or the current one), from its validated
/// inventory. Inventory problems come back as one error listing each with file:line and fix;
/// nothing is written. Used by `kca-renew`.
pub fn cluster_spec(
    ctx: &Context,
    cluster: Option<String>,
    extra: &[(String, String)],
) -> Result<(PathBuf, PkiSpec), CliError> {
    let cluster = cluster_or_current(&ctx.home, cluster)?;
    let inv = Inventory::load(&ctx.home, &cluster, extra)?;
    let spec = inventory_spec(&inv)?;
    Ok((inv.dir.clone(), spec))
}
