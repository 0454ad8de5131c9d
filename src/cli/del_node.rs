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
    /// Also delete pods that no controller manages (they are not recreated anywhere), and go on
    /// when the drain does not finish within --drain-timeout (a PodDisruptionBudget, a pod that
    /// will not stop): the pods left die with the host. Without it such a drain stops del-node
    /// with the node cordoned and nothing else changed.
    #[arg(long)]
    pub force: bool,
    /// Seconds the drain may take.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub drain_timeout: u64,
    #[command(flatten)]
    pub run: RunArgs,
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
            force: self.force,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            extra_vars: self.run.extra_vars,
            run,
        }
    }
}
