//! `ezk destroy <cluster>` (kubeasz's `ezctl destroy`): stop every service ezk set up on the
//! cluster's hosts and remove their data, certificates and configuration — playbook 99.clean,
//! which `ezk setup` refuses to run. Asks first (the cluster's name, typed at a terminal) unless
//! `--yes`; `--plan` shows per host what would go, changing nothing. Release binaries, OS
//! tuning and the deploy machine's `clusters/<name>/` (inventory, config.yml, ssl/) stay, so
//! `ezk setup <name> all` builds the same cluster again, with the same CA.

use std::io::{BufRead, IsTerminal, Write};

use super::setup::{DESTROY_STEP, RunArgs, run_plans};
use super::{CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let inv = match crate::cluster::load_inventory(ctx, &args.cluster, &args.run.extra_vars) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let lib = crate::plan::Library::with_overrides(ctx.home.root())?;
    let catalog = crate::plan::Catalog::load(&lib)?;
    let plans = crate::plan::Planner { catalog: &catalog, vars: &inv, sources: &crate::plan::NoFiles }
        .plan_steps(DESTROY_STEP)?;
    let what = format!(
        "This stops etcd, containerd and the load balancers of cluster {} and deletes their data, \
         certificates and configuration on {} host(s): {}.",
        args.cluster,
        inv.hosts.len(),
        inv.hosts.join(", ")
    );
    if !args.run.plan && !args.yes && !confirmed("destroy", &args.cluster, &what)? {
        eprintln!("destroy cancelled: no host was contacted");
        return Ok(1);
    }
    let code = run_plans(ctx, &args.run, &inv, &plans)?;
    if code != 0 {
        return Ok(code);
    }
    if !args.run.plan && !args.run.json {
        println!(
            "cluster {0} removed from its hosts; kept: {1} (hosts, config.yml, ssl/): `ezk setup {0} all` builds it again",
            args.cluster,
            inv.dir.display()
        );
    }
    Ok(0)
}

/// Ask at the terminal before `command` acts on `cluster`: `what` says what it will do, and the
/// cluster's name must be typed back. Not a terminal: an error that names `--yes` (and
/// `--plan`), before any host is contacted.
pub fn confirmed(command: &str, cluster: &str, what: &str) -> Result<bool, super::CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "ezk {command} asks before it changes anything, and stdin is not a terminal: \
             pass --yes to {command} cluster {cluster}, or --plan to see what it would do"
        )
        .into());
    }
    let mut err = std::io::stderr();
    writeln!(err, "{what}")?;
    write!(err, "Type the cluster name ({cluster}) to go on: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == cluster)
}
