//! `ezk render <cluster> <step> --out DIR`: write, per host, every file a step would install
//! (secrets included, 0600) and a PLAN.txt of every action, without contacting any host.

use std::path::PathBuf;

use super::{CliResult, Context};
use crate::plan::{Catalog, Library, Planner, Sources, VarSource};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/ under the home).
    pub cluster: String,
    /// Step: a number (02), a name (etcd), both (02.etcd), or `all`.
    pub step: String,
    /// Output directory; must be new, empty, or an earlier `ezk render` output.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = super::parse_extra_var)]
    pub extra: Vec<(String, String)>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let inv = match crate::cluster::load_inventory(ctx, &args.cluster, &args.extra) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let sources = crate::cluster::sources(ctx, &inv)?;
    render_with(ctx, &args, &inv, &sources)
}

/// Render `args.step` with the given variables and sources into `args.out`.
pub fn render_with(
    ctx: &Context,
    args: &Args,
    vars: &dyn VarSource,
    sources: &dyn Sources,
) -> CliResult {
    let lib = Library::with_overrides(ctx.home.root())?;
    let catalog = Catalog::load(&lib)?;
    let plans = Planner {
        catalog: &catalog,
        vars,
        sources,
    }
    .plan_steps(&args.step)?;
    let summary = crate::plan::write_render(&plans, &args.out)?;
    let steps: Vec<&str> = plans.iter().map(|p| p.step.as_str()).collect();
    println!(
        "rendered {} for {} host(s): {} file(s) under {} (each host has a PLAN.txt); no host was contacted",
        steps.join(", "),
        summary.hosts,
        summary.files,
        args.out.display()
    );
    Ok(0)
}
