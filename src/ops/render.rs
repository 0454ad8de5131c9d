//! `ezk render <cluster> <step> --out DIR` (arguments in `cli/render.rs`): write, per host,
//! every file a step would install (secrets included, 0600) and a PLAN.txt of every action,
//! without contacting any host. Certificates are issued or reused, binaries found in the store:
//! the plan is the one `ezk setup` would run. A binary not downloaded yet is named in PLAN.txt
//! (`will install <name> <version> (not downloaded yet)`), not written: rendering needs no
//! download.

use std::path::PathBuf;

use super::Error;
use crate::home::Home;
use crate::plan::{Catalog, DeployFiles, Library, Planner, Variables};

/// What to render.
#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    /// A step name (`02`, `etcd`, `02.etcd`, `all`).
    pub step: String,
    /// Output directory; must be new, empty, or an earlier `ezk render` output.
    pub out: PathBuf,
    pub extra_vars: Vec<(String, String)>,
}

/// Run `ezk render`; the exit code is 0, or 1 for inventory problems (printed).
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let session = match super::open_or_report(home, &req.cluster, &req.extra_vars) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    // The roles' defaults reach the hosts like inventory values: checked the same way first.
    let lib = Library::with_overrides(home.root())?;
    let errors = crate::session::role_default_errors(&lib, &session.inventory, true);
    if !errors.is_empty() {
        eprint!("{}", crate::inventory::InventoryErrors(errors));
        return Ok(1);
    }
    let files = session.files()?;
    let code = render_with(home, &req.step, &req.out, &session.inventory, files)?;
    for m in files.needs_ca_key() {
        eprintln!("note: rendered with a placeholder: {m}");
    }
    Ok(code)
}

/// Render `step` with the given variables and files into `out`, the roles and playbooks
/// coming from `home` (embedded, overridden there).
pub fn render_with(
    home: &Home,
    step: &str,
    out: &std::path::Path,
    vars: &dyn Variables,
    files: &dyn DeployFiles,
) -> Result<i32, Error> {
    let lib = Library::with_overrides(home.root())?;
    let catalog = Catalog::load(&lib)?;
    let plans = Planner { catalog: &catalog, vars, files, nodes: None }.plan_steps(step)?;
    let summary = crate::plan::write_render(&plans, out)?;
    let steps: Vec<&str> = plans.iter().map(|p| p.step.as_str()).collect();
    println!(
        "rendered {} for {} host(s): {} file(s) under {} (each host has a PLAN.txt); no host was contacted",
        steps.join(", "),
        summary.hosts,
        summary.files,
        out.display()
    );
    let missing = crate::plan::action::not_downloaded(&plans);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(what, _)| what.as_str()).collect();
        println!("not downloaded yet (named in PLAN.txt, needed by `ezk setup`): {}", names.join(", "));
    }
    Ok(0)
}
