//! `ezk setup <cluster> <step>`: build the step's plan from the inventory and roles, then run it
//! on every host over SSH (or, with --plan, show what would change).
//!
//! Plans every step fully (inventory, PKI, artifact store, templates) before the first
//! connection, then runs each step with `execute`; a step that fails on a host stops the run.
//! With several steps (`all`), `--json` prints one recap object per line, one per step.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::{CliResult, Context};
use crate::exec::{self, Options};
use crate::exec::Connection;
use crate::inventory::Inventory;
use crate::plan::action::StepPlan;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Step: a number (01, 02, 03, 10), a name (prepare, etcd, runtime, ex-lb), both (02.etcd), or
    /// 90/all. The steps are the playbooks shipped in the binary (plus any under <home>/playbooks/).
    pub step: String,
    /// Only these hosts (repeatable, comma-separated): group names, host names, `all`, and
    /// `!name` to leave one out, like ansible-playbook --limit. Every host is still planned (its
    /// variables feed the others' files); only the selected ones are contacted and changed.
    #[arg(long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a plan runs on the hosts: shared by `setup` and `destroy`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Connect and gather only; print per host what would change; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print the recap as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = exec::limits::DEFAULT_FORKS)]
    pub forks: usize,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = super::parse_extra_var)]
    pub extra_vars: Vec<(String, String)>,
    /// Accept and record (in clusters/<name>/known_hosts) host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout, seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Jump host for every connection (user@host[:port]), like ssh -J. A host whose inventory
    /// sets `ansible_ssh_common_args="-o ProxyJump=..."` (or -J) uses its own instead.
    #[arg(long, value_name = "HOST")]
    pub jump: Option<String>,
    /// SSH key exchange algorithms, e.g. curve25519-sha256 (cheaper handshakes for many hosts,
    /// but not post-quantum). Default: OpenSSH's own choice.
    #[arg(long, value_name = "ALGOS")]
    pub kex: Option<String>,
}

/// Executor options from the command line.
pub fn options(ctx: &Context, args: &RunArgs) -> Options {
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
    args: &RunArgs,
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
        if let Some(why) = &recap.refused {
            println!("{why}");
        }
        if let Some(log) = &recap.log {
            println!("log: {}", log.display());
        }
    }
    Ok(recap.exit_code())
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let inv = match crate::cluster::load_inventory(ctx, &args.cluster, &args.run.extra_vars) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let only = if args.limit.is_empty() { None } else { Some(inv.select(&args.limit)?) };
    // Everything is planned before the first connection: certificates issued or reused,
    // binaries found in the store (a missing one stops here, naming the download command),
    // every template rendered for every host.
    let lib = crate::plan::Library::with_overrides(ctx.home.root())?;
    let catalog = crate::plan::Catalog::load(&lib)?;
    for book in catalog.resolve_steps(&args.step)? {
        if let Some((_, command, what)) = OWN_COMMAND.iter().find(|(step, ..)| *step == book.step) {
            return Err(format!(
                "step {:?} {what}; `ezk {command} {}` runs it (and asks first)",
                args.step, args.cluster
            )
            .into());
        }
    }
    let sources = crate::cluster::sources(ctx, &inv)?;
    let mut plans = crate::plan::Planner { catalog: &catalog, vars: &inv, sources: &sources }
        .plan_steps(&args.step)?;
    if let Some(only) = &only {
        for plan in &mut plans {
            for wave in &mut plan.waves {
                wave.hosts.retain(|h| only.contains(&h.host));
            }
            plan.waves.retain(|w| !w.hosts.is_empty());
        }
    }
    run_plans(ctx, &args.run, &inv, &plans)
}

/// Run planned steps in order on the inventory's hosts; a step that fails on a host stops the
/// run (exit code of that step).
pub fn run_plans(ctx: &Context, run: &RunArgs, inv: &Inventory, plans: &[StepPlan]) -> CliResult {
    let conns: IndexMap<String, Connection> =
        inv.hosts.iter().map(|h| (h.clone(), crate::session::connection(inv, h))).collect();
    for plan in plans {
        if plans.len() > 1 && !run.json {
            println!("== step {}", plan.step);
        }
        let code = execute(ctx, run, &inv.dir, plan, &conns)?;
        if code != 0 {
            // A later step builds on this one (etcd before the masters, …): stop here.
            if plans.len() > 1 {
                eprintln!("step {} did not complete on every host; later steps not started", plan.step);
            }
            return Ok(code);
        }
    }
    Ok(0)
}

/// The playbook `ezk destroy` runs.
pub const DESTROY_STEP: &str = "99.clean";
/// The playbook `ezk restore` runs.
pub const RESTORE_STEP: &str = "95.restore";

/// Playbooks with a command of their own, which asks before it acts: `setup` refuses them by
/// any of their names (step, command, what it does).
const OWN_COMMAND: &[(&str, &str, &str)] = &[
    (DESTROY_STEP, "destroy", "removes the cluster"),
    (RESTORE_STEP, "restore", "replaces etcd's data with a snapshot"),
];
