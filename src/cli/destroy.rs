//! `ezk destroy <cluster>` (kubeasz's `ezctl destroy`): the command's arguments; `ops::destroy`
//! does the work (playbook 99.clean on every host, after asking).

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::destroy::run(
        &ctx.home,
        ops::destroy::Request { cluster: args.cluster, yes: args.yes, extra_vars: args.run.extra_vars, run },
    )
}
