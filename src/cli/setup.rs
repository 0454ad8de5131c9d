//! `ezk setup <cluster> <step>`: build the step's plan from the inventory and roles, then run it
//! on every host over SSH (or, with --plan, show what would change).
//!
//! The executor half is here (`execute`: options → `exec::run_step` → recap/JSON → exit code).
//! The inventory/plan half (load inventory, build the `StepPlan`, collect each host's
//! `Connection`) is joined at merge time, where both modules exist.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::{CliResult, Context};
use crate::exec::{self, Options};
use crate::inventory::Connection;
use crate::plan::action::StepPlan;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Step: 01..07, 10, 11 or a name (prepare, etcd, ...); 90/all for every step.
    pub step: String,
    /// Connect and gather only; print per host what would change; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print the recap as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = exec::limits::DEFAULT_FORKS)]
    pub forks: usize,
    /// Extra variable, highest precedence (repeatable).
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE", value_parser = super::parse_extra_var)]
    pub extra_vars: Vec<(String, String)>,
    /// Accept and record (in clusters/<name>/known_hosts) host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout, seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Jump host for every connection (user@host[:port]), like ssh -J.
    #[arg(long, value_name = "HOST")]
    pub jump: Option<String>,
    /// SSH key exchange algorithms, e.g. curve25519-sha256 (cheaper handshakes for many hosts,
    /// but not post-quantum). Default: OpenSSH's own choice.
    #[arg(long, value_name = "ALGOS")]
    pub kex: Option<String>,
}

/// Executor options from the command line.
pub fn options(ctx: &Context, args: &Args) -> Options {
    Options {
        forks: args.forks,
        plan_only: args.plan,
        verbose: ctx.verbose,
        json: args.json,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: Duration::from_secs(args.connect_timeout),
        jump_hosts: args.jump.iter().cloned().collect(),
        kex_algorithms: args.kex.clone(),
        ..Options::default()
    }
}

/// Run a built plan and report: recap table (or JSON), exit code 0, or 2 when a host failed or
/// was unreachable.
pub fn execute(
    ctx: &Context,
    args: &Args,
    cluster_dir: &Path,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
) -> CliResult {
    let opts = options(ctx, args);
    let recap = exec::run_step(cluster_dir, plan, conns, &opts)?;
    if args.json {
        println!("{}", recap.to_json());
    } else {
        if args.plan && recap.plan.values().all(|l| l.is_empty()) {
            println!("nothing to change");
        }
        print!("\n{}", recap.table());
        if let Some(log) = &recap.log {
            println!("log: {}", log.display());
        }
    }
    Ok(recap.exit_code())
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let _ = (ctx, &args);
    Err(format!(
        "ezk setup {} {}: building the plan needs the inventory and plan modules (joined at merge); \
         the executor entry point is cli::setup::execute",
        args.cluster, args.step
    )
    .into())
}
