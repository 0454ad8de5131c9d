//! `ezk check` (arguments in `cli/check.rs`): read and validate a cluster's inventory and
//! config, and render every step for every host in memory, contacting no host. Prints the
//! resolved groups, hosts, key variables and connections (`check_summary`), or every problem
//! found (each with file:line and the fix) and exits 1.

use super::Error;
use crate::artifacts::Manifest;
use crate::home::Home;
use crate::inventory::{Inventory, InventoryError, InventoryErrors, Location, validate};
use crate::session::Session;

/// What to check.
#[derive(Debug, Clone)]
pub struct Request {
    /// The cluster; None: the current one.
    pub cluster: Option<String>,
    pub extra_vars: Vec<(String, String)>,
}

/// Run `ezk check`; the exit code is 0, or 1 when anything is wrong (printed).
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let cluster = home.cluster_or_current(req.cluster)?;
    let session = match Session::open_unvalidated(home, &cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(1);
        }
    };
    let inv = &session.inventory;
    let mut errors = validate::validate(inv);
    errors.extend(crate::session::check_connections(inv));
    if let Some(e) = unknown_artifact_set(inv) {
        errors.push(e);
    }
    // Role templates and tasks are rendered for every host in memory: an undefined variable or
    // a Jinja error in a role is found here, before any host is contacted. The roles' defaults
    // are checked like the inventory's values.
    let plan_errors = match crate::plan::Library::with_overrides(home.root()) {
        Ok(lib) => {
            // Templated defaults only once the inventory is right: they would repeat its
            // problems at the roles' lines.
            let templates = errors.is_empty();
            errors.extend(crate::session::role_default_errors(&lib, inv, templates));
            crate::plan::check_all(&lib, inv, &crate::session::CheckFiles)
        }
        Err(e) => vec![e],
    };
    errors.sort_by_key(|e| e.location().cloned());
    for e in &plan_errors {
        eprintln!("{e}");
    }
    if errors.is_empty() && plan_errors.is_empty() {
        print!("{}", super::check_summary::summary(inv));
        println!(
            "\nok: cluster {cluster} passes all checks ({} host{})",
            inv.hosts.len(),
            if inv.hosts.len() == 1 { "" } else { "s" }
        );
        Ok(0)
    } else {
        if !errors.is_empty() {
            eprint!("{}", InventoryErrors(errors));
        }
        Ok(1)
    }
}

/// K8S_VER must name a version set of the shipped manifest (or a minor version only one set
/// has): otherwise `ezk download` and every step that pushes a binary fail later, far from the
/// line to fix. An unset K8S_VER is left to the commands that need it.
fn unknown_artifact_set(inv: &Inventory) -> Option<InventoryError> {
    let host = inv.hosts.first()?;
    let ver = crate::session::k8s_ver(inv)?;
    let manifest = match Manifest::shipped() {
        Ok(m) => m,
        Err(e) => {
            return Some(InventoryError::invalid(
                Location::new(inv.config_path(), 0),
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
        .unwrap_or_else(|| Location::new(inv.config_path(), 0));
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
