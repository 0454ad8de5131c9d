//! `ezk certs [<cluster>] [--issue]`: every certificate under clusters/<name>/ssl/ with subject,
//! SANs, issuer and days to expiry (exit 1 when one is missing, unreadable or expired).
//! Reporting writes nothing; `--issue` first issues what is missing or stale (a changed
//! inventory reissues only the certificates it affects) and reuses the rest.

use std::path::PathBuf;

use super::checkout::cluster_or_current;
use super::{CliError, CliResult, Context, parse_extra_var};
use crate::inventory::Inventory;
use crate::pki::{self, PkiSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// First issue missing or stale certificates (CAs, keys, kubeconfig) under ssl/; without
    /// it nothing is written.
    #[arg(long)]
    pub issue: bool,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let (dir, spec) = cluster_spec(ctx, args.cluster, &args.extra)?;
    let mut out = std::io::stdout().lock();
    if args.issue {
        pki::cli_issue(&dir, &spec, &mut out)?;
    }
    Ok(pki::cli_certs(&dir, &spec, &mut out)?)
}

/// The directory and PKI inputs of a cluster (given, or the current one), from its validated
/// inventory. Inventory problems come back as one error listing each with file:line and fix;
/// nothing is written. Shared by `certs` and `kca-renew`.
pub fn cluster_spec(
    ctx: &Context,
    cluster: Option<String>,
    extra: &[(String, String)],
) -> Result<(PathBuf, PkiSpec), CliError> {
    let cluster = cluster_or_current(&ctx.home, cluster)?;
    let inv = Inventory::load(&ctx.home, &cluster, extra)?;
    let spec =
        pki::from_inventory(&inv).map_err(|e| format!("{}: {e}", inv.hosts_path().display()))?;
    Ok((inv.dir.clone(), spec))
}
