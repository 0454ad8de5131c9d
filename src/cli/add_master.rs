//! `ezk add-master <cluster> <ip> [k=v ...]` (kubeasz's `ezctl add-master`): add-node's
//! arguments; `ops::add_master` does the work.

use super::add_node::Args;
use super::{CliResult, Context};
use crate::ops;

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::add_master::run(&ctx.home, args.request(ctx))
}
