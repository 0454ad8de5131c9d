//! `ezk check` support: load every role and playbook, then render every step for every host
//! in memory and return every problem (Jinja syntax errors with file:line, undefined variables
//! naming the template file, line and hosts, missing roles, cycles) instead of stopping at
//! the first.

use super::catalog::Catalog;
use super::error::PlanError;
use super::library::Library;
use super::planner::Planner;
use super::playbook::Body;
use super::sources::{CheckOnly, VarSource};

/// All problems found in `lib` rendered against `vars`; empty when every step renders.
///
/// Certificates, kubeconfigs and binaries are not fetched (they cannot hold template errors),
/// so this needs neither the PKI nor the artifact store.
pub fn check_all(lib: &Library, vars: &dyn VarSource) -> Vec<PlanError> {
    let catalog = match Catalog::load(lib) {
        Ok(c) => c,
        Err(e) => return e.into_list(),
    };
    check_catalog(&catalog, vars)
}

/// Render every step of an already loaded catalog; see [`check_all`].
pub fn check_catalog(catalog: &Catalog, vars: &dyn VarSource) -> Vec<PlanError> {
    let planner = Planner {
        catalog,
        vars,
        sources: &CheckOnly,
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for book in catalog
        .playbooks
        .iter()
        .filter(|b| matches!(b.body, Body::Plays(_)))
    {
        if let Err(e) = planner.plan_step(&book.step) {
            // A role used by several steps fails the same way in each: report it once.
            for e in e.into_list() {
                if seen.insert(e.to_string()) {
                    out.push(e);
                }
            }
        }
    }
    out
}
