//! `ezk add-node <cluster> <ip> [k=v ...]` (kubeasz's `ezctl add-node`): the command's
//! arguments (add-master's too); `ops::add_node` does the work.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The new host's IP address (it must accept the inventory's SSH user and key).
    pub ip: String,
    /// Variables for the host's line ([kube_node] for add-node, [kube_master] for add-master),
    /// e.g. k8s_nodename=worker-4 (K8S_NODENAME=… is written as k8s_nodename, which
    /// config.yml's K8S_NODENAME reads).
    #[arg(value_name = "KEY=VALUE", value_parser = host_var)]
    pub vars: Vec<(String, String)>,
    #[command(flatten)]
    pub run: RunArgs,
}

fn host_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::add_node::run(&ctx.home, args.request(ctx))
}

impl Args {
    /// The operation's request (add-node's and add-master's).
    pub(super) fn request(self, ctx: &Context) -> ops::add_node::Request {
        let run = options(ctx, &self.run);
        ops::add_node::Request { cluster: self.cluster, host: self.ip, vars: self.vars, extra_vars: self.run.extra_vars, run }
    }
}
