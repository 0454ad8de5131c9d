//! `ezk certs <cluster>`: every certificate under clusters/<name>/ssl/ with subject, SANs,
//! issuer and days to expiry (exit 1 when one is missing, unreadable or expired).
//!
//! Not yet a variant of `Command`: it needs the `PkiSpec` that the inventory layer builds. At
//! merge, add `Certs(certs::Args)` and dispatch `certs::run(&ctx, a, &spec_from_inventory(..)?)`.
//! The per-host comparison (`pki::report::compare_remote`) joins once the executor can fetch
//! the installed files.

use super::{CliResult, Context};
use crate::pki::{self, PkiSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/ under the ezk home).
    pub cluster: String,
}

/// Print the table for `args.cluster`, given the spec built from its inventory.
pub fn run(ctx: &Context, args: Args, spec: &PkiSpec) -> CliResult {
    let dir = ctx.home.cluster_dir(&args.cluster);
    if !dir.is_dir() {
        return Err(format!("{}: no such cluster (`ezk list` shows the clusters)", dir.display()).into());
    }
    Ok(pki::cli_certs(&dir, spec, &mut std::io::stdout().lock())?)
}
