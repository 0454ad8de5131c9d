//! `ezk del-etcd <cluster> <ip>` (kubeasz's `ezctl del-etcd`): the command's arguments;
//! `ops::del_etcd` does the work.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The member's IP address, as in [etcd].
    pub ip: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Accept an even member count after removing a healthy member (3 → 2): 2 members need
    /// both to answer, no better than 1. Not needed to remove a member that is not healthy
    /// (that costs no fault tolerance): del-etcd the failed one, then add-etcd the new host.
    #[arg(long)]
    pub allow_even: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::del_etcd::run(
        &ctx.home,
        ops::del_etcd::Request {
            cluster: args.cluster,
            host: args.ip,
            yes: args.yes,
            allow_even: args.allow_even,
            extra_vars: args.run.extra_vars,
            run,
        },
    )
}
