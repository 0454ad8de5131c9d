//! `ezk stop <cluster>` and `ezk start <cluster>` (kubeasz's `ezctl stop` / `start`): the
//! commands' arguments; `ops::stop_start` does the work.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn stop(ctx: &Context, args: StopArgs) -> CliResult {
    let run = options(ctx, &args.run);
    ops::stop_start::run(
        &ctx.home,
        ops::stop_start::Request { cluster: args.cluster, stop: true, yes: args.yes, extra_vars: args.run.extra_vars, run },
    )
}

pub fn start(ctx: &Context, args: StartArgs) -> CliResult {
    let run = options(ctx, &args.run);
    ops::stop_start::run(
        &ctx.home,
        ops::stop_start::Request { cluster: args.cluster, stop: false, yes: true, extra_vars: args.run.extra_vars, run },
    )
}
