//! `ezk upgrade <cluster> [--to VER]` (kubeasz's `ezctl upgrade`): the command's arguments;
//! `ops::upgrade` does the work.

use std::time::Duration;

use super::del_node::DrainArgs;
use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The version to upgrade to, as K8S_VER names it (v1.36.3, lab-debian-next);
    /// written as K8S_VER where the inventory sets it before the first host is touched.
    /// Default: the inventory's K8S_VER.
    #[arg(long, value_name = "VER")]
    pub to: Option<String>,
    /// Nodes (not masters: those go one at a time) upgraded at once.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Seconds a node may take to be Ready at the new version after its restart.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::upgrade::run(
        &ctx.home,
        ops::upgrade::Request {
            cluster: args.cluster,
            to: args.to,
            batch: usize::from(args.batch),
            yes: args.yes,
            force: args.drain.force,
            drain_timeout: Duration::from_secs(args.drain.drain_timeout),
            ready_timeout: Duration::from_secs(args.ready_timeout),
            extra_vars: args.run.extra_vars,
            run,
        },
    )
}
