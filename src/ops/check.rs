//! `ezk check` (arguments in `cli/check.rs`): read and validate a cluster's inventory and
//! config, and render every step for every host in memory, contacting no host. Prints the
//! resolved groups, hosts, key variables and connections (`check_summary`), or every problem
//! found (each with file:line and the fix) and exits 1.

use super::Error;
use crate::artifacts::{ArtifactError, Store};
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
    let mut warnings = Vec::new();
    match artifact_set_finding(home, inv) {
        Some((Severity::Error, e)) => errors.push(e),
        Some((Severity::Warning, w)) => warnings.push(w),
        None => {}
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
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if errors.is_empty() && plan_errors.is_empty() {
        print!("{}", super::check_summary::summary(inv));
        println!(
            "\nok: cluster {cluster} passes all checks ({} host{}){}",
            inv.hosts.len(),
            if inv.hosts.len() == 1 { "" } else { "s" },
            match warnings.len() {
                0 => String::new(),
                1 => ", with 1 warning (above)".to_string(),
                n => format!(", with {n} warnings (above)"),
            }
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
/// line to fix. An unset K8S_VER is left to the commands that need it. A release ezk knows but
/// has not pinned is valid (its roles render like any other) and only `ezk download` needs more
/// for it: a warning that says what, unless this home's store already holds its pins.
fn artifact_set_finding(home: &Home, inv: &Inventory) -> Option<(Severity, InventoryError)> {
    let host = inv.hosts.first()?;
    let ver = crate::session::k8s_ver(inv)?;
    let at = || {
        inv.var_location(host, "K8S_VER")
            .cloned()
            .unwrap_or_else(|| Location::new(inv.config_path(), 0))
    };
    let store = match Store::open(home) {
        Ok(s) => s,
        Err(e) => {
            return Some((
                Severity::Error,
                InventoryError::invalid(at(), e.to_string(), "fix or remove the file named; a broken shipped manifest is a bug to report"),
            ));
        }
    };
    match store.manifest().set(&ver) {
        Ok(_) => None,
        Err(ArtifactError::Unpinned { ver: release, missing, .. }) => Some((
            Severity::Warning,
            InventoryError::invalid(
                at(),
                format!("K8S_VER {ver:?}: Kubernetes {release} is a release this ezk knows but has not pinned ({missing}); its steps check and render as any other release's, but `ezk download` refuses it until it is pinned"),
                format!(
                    "pin it from the release's own checksum file: ezk download {} --sha256sums https://dl.k8s.io/release/v{release}/SHA256SUMS (or a local copy); or pick a pinned release (`ezk download --list`)",
                    inv.cluster
                ),
            ),
        )),
        Err(e) => Some((
            Severity::Error,
            InventoryError::invalid(
                at(),
                e.to_string(),
                "set K8S_VER to a release listed there, e.g. K8S_VER: \"1.31.2\" (kubeasz writes it without the v; both are accepted; `ezk download --list` shows every release)",
            ),
        )),
    }
}

/// How bad a finding is: an error fails `ezk check`, a warning is printed and it passes.
enum Severity {
    Error,
    Warning,
}
