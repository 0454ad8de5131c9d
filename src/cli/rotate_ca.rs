//! `ezk rotate-ca <cluster> etcd|kubernetes [--until N] [--again]`: the command's arguments;
//! `ops::rotate_ca` rotates the etcd CA or the cluster (Kubernetes) CA in three phases, each
//! rolled one host at a time.

use super::setup::{RunArgs, options};
use super::{CliResult, Context};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// The CA to rotate: etcd (the etcd members' CA) or kubernetes (the cluster CA: the
    /// apiserver's serving certificate, every client certificate and kubeconfig, the pods'
    /// kube-root-ca.crt; the ServiceAccount key stays).
    #[arg(value_parser = ["etcd", "kubernetes"])]
    pub ca: String,
    /// Stop once this phase reached every host (1: trust both, 2: re-issue); a later run
    /// continues. Between 2 and 3, move the clients ezk does not manage to the new CA.
    #[arg(long, value_name = "PHASE", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub until: Option<u8>,
    /// Start another rotation when the last one has finished (without it, a re-run of a
    /// finished rotation changes nothing).
    #[arg(long)]
    pub again: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::rotate_ca::run(
        &ctx.home,
        ops::rotate_ca::Request {
            cluster: args.cluster,
            ca: args.ca,
            until: args.until,
            again: args.again,
            yes: args.yes,
            extra_vars: args.run.extra_vars,
            run,
        },
    )
}
