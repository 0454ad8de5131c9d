//! `ezk check`: read and validate a cluster's inventory and config, contacting no host. Prints
//! the resolved groups, hosts, key variables and connections, or every problem found (each with
//! file:line and the fix) and exits 1.

use super::checkout::cluster_or_current;
use super::{CliResult, Context, parse_extra_var};
use crate::artifacts::Manifest;
use crate::inventory::{Inventory, InventoryError, validate};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to check (default: the current one, see `ezk checkout`).
    pub cluster: Option<String>,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = parse_extra_var)]
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
    let mut report = validate::report(&inv);
    if let Some(e) = unknown_artifact_set(&inv) {
        report.errors.push(e);
        report.errors.sort_by_key(|e| e.location().cloned());
    }
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

/// K8S_VER must name a version set of the shipped manifest (or a minor version only one set
/// has): otherwise `ezk download` and every step that pushes a binary fail later, far from the
/// line to fix. An unset K8S_VER is left to the commands that need it.
fn unknown_artifact_set(inv: &Inventory) -> Option<InventoryError> {
    let host = inv.hosts.first()?;
    let ver = crate::cluster::k8s_ver(inv)?;
    let manifest = match Manifest::shipped() {
        Ok(m) => m,
        Err(e) => {
            return Some(InventoryError::invalid(
                crate::inventory::Location::new(inv.config_path(), 0),
                e.to_string(),
                "this ezk build ships a broken versions manifest; report it",
            ));
        }
    };
    if manifest.set(&ver).is_ok() {
        return None;
    }
    let at = inv
        .var_location(host, "K8S_VER")
        .cloned()
        .unwrap_or_else(|| crate::inventory::Location::new(inv.config_path(), 0));
    let known: Vec<&str> = manifest.sets.keys().map(String::as_str).collect();
    Some(InventoryError::invalid(
        at,
        format!(
            "K8S_VER {ver:?} matches no artifact set this ezk ships (known sets: {})",
            known.join(", ")
        ),
        format!(
            "set K8S_VER to one of them, e.g. K8S_VER: \"{}\" (`ezk download --list` shows what each set holds)",
            known
                .iter()
                .find(|k| k.starts_with(|c: char| c.is_ascii_digit()))
                .map(|k| format!("v{k}"))
                .unwrap_or_else(|| known.first().copied().unwrap_or("").to_string())
        ),
    ))
}
