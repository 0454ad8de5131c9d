//! `ezk kca-renew [<cluster>] [--new-ca]`: back up ssl/ and reissue every certificate, keeping
//! the CAs unless `--new-ca` (kubeasz's kca-renew). Hosts receive the new files on the next
//! `ezk setup`.

use super::certs::cluster_spec;
use super::{CliResult, Context, parse_extra_var};
use crate::pki;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Also replace the cluster, etcd and front-proxy CAs (every client must get the new CA).
    #[arg(long)]
    pub new_ca: bool,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let (dir, spec) = cluster_spec(ctx, args.cluster, &args.extra)?;
    Ok(pki::cli_kca_renew(
        &dir,
        &spec,
        args.new_ca,
        &mut std::io::stdout().lock(),
    )?)
}
