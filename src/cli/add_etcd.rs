//! `ezk add-etcd <cluster> <ip>` (kubeasz's `ezctl add-etcd`): the command's arguments;
//! `ops::add_etcd` does the work.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The new member's IP address (it must accept the inventory's SSH user and key).
    pub ip: String,
    /// Accept an even member count after the add (3 → 4): a quorum of 3 of 4 tolerates one
    /// failed member, as 3 members do, while one more host can fail. Meant for a step on the way
    /// to the next odd count (add-etcd twice, 3 → 5).
    #[arg(long)]
    pub allow_even: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::add_etcd::run(
        &ctx.home,
        ops::add_etcd::Request { cluster: args.cluster, host: args.ip, allow_even: args.allow_even, extra_vars: args.run.extra_vars, run },
    )
}
