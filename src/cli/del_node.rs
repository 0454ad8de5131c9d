//! `ezk del-node <cluster> <ip>` (kubeasz's `ezctl del-node`): the command's arguments
//! (del-master's too); `ops::del_node` does the work.

use std::time::Duration;

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The host's IP address, as in [kube_node] (del-node) or [kube_master] (del-master).
    pub ip: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub drain: DrainArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a node is drained (del-node, del-master, upgrade).
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Also delete pods that no controller manages (they are not recreated anywhere), and go on
    /// when a drain does not finish within --drain-timeout (a PodDisruptionBudget, a pod that
    /// will not stop): the pods left die with the host (del-node) or stay on it through the
    /// restart (upgrade).
    /// Without it such a drain stops the command with the node cordoned (del-node: nothing
    /// else changed; upgrade: a re-run goes on from that node).
    #[arg(long)]
    pub force: bool,
    /// Seconds a drain may take.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub drain_timeout: u64,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::del_node::run(&ctx.home, args.request(ctx))
}

impl Args {
    /// The operation's request (del-node's and del-master's).
    pub(super) fn request(self, ctx: &Context) -> ops::del_node::Request {
        let run = options(ctx, &self.run);
        ops::del_node::Request {
            cluster: self.cluster,
            host: self.ip,
            yes: self.yes,
            force: self.drain.force,
            drain_timeout: Duration::from_secs(self.drain.drain_timeout),
            extra_vars: self.run.extra_vars,
            run,
        }
    }
}
