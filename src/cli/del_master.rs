//! `ezk del-master <cluster> <ip>` (kubeasz's `ezctl del-master`): del-node's arguments;
//! `ops::del_master` does the work.

use super::del_node::Args;
use super::{CliResult, Context};
use crate::ops;

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::del_master::run(&ctx.home, args.request(ctx))
}
