//! `ezk add-node <cluster> <ip> [k=v ...]` (kubeasz's `ezctl add-node`): the command's
//! arguments; `ops::add_node` does the work.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The new host's IP address (it must accept the inventory's SSH user and key).
    pub ip: String,
    /// Variables for the host's line in [kube_node], e.g. k8s_nodename=worker-4 (K8S_NODENAME=…
    /// is written as k8s_nodename, which config.yml's K8S_NODENAME reads).
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
    let run = options(ctx, &args.run);
    ops::add_node::run(
        &ctx.home,
        ops::add_node::Request { cluster: args.cluster, host: args.ip, vars: args.vars, extra_vars: args.run.extra_vars, run },
    )
}
