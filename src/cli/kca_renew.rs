//! `ezk kca-renew [<cluster>] [--new-ca]`: the command's arguments; `ops::kca_renew` backs up
//! ssl/ and reissues every certificate.

use super::{CliResult, Context, parse_extra_var};
use crate::ops;

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
    ops::kca_renew::run(
        &ctx.home,
        ops::kca_renew::Request { cluster: args.cluster, new_ca: args.new_ca, extra_vars: args.extra },
    )
}
