//! `ezk certs [<cluster>] [--issue] [--local]`: the command's arguments; `ops::certs` prints
//! the local table and audits the hosts' copies.

use std::time::Duration;

use super::{CliResult, Context, parse_extra_var};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// First issue missing or stale certificates (CAs, keys, kubeconfig) under ssl/; without
    /// it nothing is written.
    #[arg(long)]
    pub issue: bool,
    /// Only the local table: connect to no host.
    #[arg(long)]
    pub local: bool,
    /// A certificate that expires within this many days counts as a problem. Exit code 1: a
    /// problem (missing, expired or expiring certificate; a host copy that differs or is
    /// missing; a key a host must not hold); 2: no problem, but a host could not be checked.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub warn_days: i64,
    /// SSH connect timeout per host, seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    ops::certs::run(
        &ctx.home,
        ops::certs::Request {
            cluster: args.cluster,
            issue: args.issue,
            local: args.local,
            warn_days: args.warn_days,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            extra_vars: args.extra,
        },
    )
}
