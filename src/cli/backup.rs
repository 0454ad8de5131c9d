//! `ezk backup [<cluster>]` (kubeasz's `ezctl backup`): the command's arguments; `ops::backup`
//! takes the etcd snapshot.

use super::{CliResult, Context, parse_extra_var};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::backup::run(&ctx.home, ops::backup::Request { cluster: args.cluster, extra_vars: args.extra })
}
