//! `ezk render <cluster> <step> --out DIR`: the command's arguments; `ops::render` writes the
//! files, contacting no host.

use std::path::PathBuf;

use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/ under the home).
    pub cluster: String,
    /// Step: a number (02), a name (etcd), both (02.etcd), or `all`.
    pub step: String,
    /// Output directory; must be new, empty, or an earlier `ezk render` output.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = super::parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::render::run(
        &ctx.home,
        ops::render::Request { cluster: args.cluster, step: args.step, out: args.out, extra_vars: args.extra },
    )
}
