//! `ezk kca-renew <cluster> [--new-ca]`: back up ssl/ and reissue every certificate, keeping
//! the CAs unless `--new-ca` (kubeasz's kca-renew). Hosts receive the new files on the next
//! `ezk setup`.
//!
//! Not yet a variant of `Command` (needs the inventory's `PkiSpec`); at merge add
//! `KcaRenew(kca_renew::Args)` and dispatch `kca_renew::run(&ctx, a, &spec_from_inventory(..)?)`.

use super::{CliResult, Context};
use crate::pki::{self, PkiSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/ under the ezk home).
    pub cluster: String,
    /// Also replace the cluster, etcd and front-proxy CAs (every client must get the new CA).
    #[arg(long)]
    pub new_ca: bool,
}

/// Renew the certificates of `args.cluster`, given the spec built from its inventory.
pub fn run(ctx: &Context, args: Args, spec: &PkiSpec) -> CliResult {
    let dir = ctx.home.cluster_dir(&args.cluster);
    if !dir.is_dir() {
        return Err(format!("{}: no such cluster (`ezk list` shows the clusters)", dir.display()).into());
    }
    Ok(pki::cli_kca_renew(&dir, spec, args.new_ca, &mut std::io::stdout().lock())?)
}
