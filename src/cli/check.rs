//! `ezk check`: the command's arguments; `ops::check` validates the inventory and renders
//! every step in memory, contacting no host.

use super::{CliResult, Context, parse_extra_var};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to check (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::check::run(&ctx.home, ops::check::Request { cluster: args.cluster, extra_vars: args.extra })
}
