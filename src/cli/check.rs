//! `ezk check`: read and validate a cluster's inventory and config, contacting no host. Prints
//! the resolved groups, hosts, key variables and connections, or every problem found (each with
//! file:line and the fix) and exits 1.

use super::checkout::cluster_or_current;
use super::{CliResult, Context, parse_extra_var};
use crate::inventory::{Inventory, check};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to check (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE", value_parser = parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let cluster = cluster_or_current(&ctx.home, args.cluster)?;
    let inv = match Inventory::parse(&ctx.home, &cluster, &args.extra) {
        Ok(inv) => inv,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(1);
        }
    };
    let report = check::report(&inv);
    // Role templates and tasks are rendered for every host in memory: an undefined variable or
    // a Jinja error in a role is found here, before any host is contacted.
    let plan_errors = match crate::plan::Library::with_overrides(ctx.home.root()) {
        Ok(lib) => crate::plan::check_all(&lib, &inv),
        Err(e) => vec![e],
    };
    for e in &plan_errors {
        eprintln!("{e}");
    }
    if report.errors.is_empty() && plan_errors.is_empty() {
        print!("{}", report.summary);
        println!(
            "\nok: cluster {cluster} passes all checks ({} host{})",
            inv.hosts.len(),
            if inv.hosts.len() == 1 { "" } else { "s" }
        );
        Ok(0)
    } else {
        if !report.errors.is_empty() {
            eprint!("{}", crate::inventory::InventoryErrors(report.errors));
        }
        Ok(1)
    }
}
