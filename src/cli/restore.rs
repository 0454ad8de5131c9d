//! `ezk restore <cluster> [--snapshot FILE]` (kubeasz's `ezctl restore`): the command's
//! arguments; `ops::restore` does the work (every etcd member back to a snapshot, after asking).

use std::path::PathBuf;

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Snapshot file (default: clusters/<name>/backup/snapshot.db, the latest `ezk backup`).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::restore::run(
        &ctx.home,
        ops::restore::Request {
            cluster: args.cluster,
            snapshot: args.snapshot,
            yes: args.yes,
            extra_vars: args.run.extra_vars,
            run,
        },
    )
}
