//! `ezk checkout`: choose the current cluster, as kubeasz's `ezctl checkout` does. The choice
//! is the file `clusters/.current` (one line, the cluster name), written by `ezk new` and
//! `ezk checkout`, read by `ezk list` (to mark it) and by commands whose cluster is optional.

use crate::home::Home;

use super::{CliError, CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to make current (must exist under clusters/).
    pub cluster: String,
}

/// The current cluster, if one was chosen and still exists.
pub fn current(home: &Home) -> Option<String> {
    let name = std::fs::read_to_string(home.clusters_dir().join(".current")).ok()?;
    let name = name.trim().to_string();
    (!name.is_empty() && home.cluster_dir(&name).is_dir()).then_some(name)
}

/// Record `name` as the current cluster.
pub fn set_current(home: &Home, name: &str) -> Result<(), CliError> {
    let path = home.clusters_dir().join(".current");
    std::fs::write(&path, format!("{name}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// The cluster a command should act on: the one given, else the current one.
pub fn cluster_or_current(home: &Home, given: Option<String>) -> Result<String, CliError> {
    given.or_else(|| current(home)).ok_or_else(|| {
        "no cluster given and none is current: name one, or choose one with `ezk checkout <name>`".into()
    })
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let dir = ctx.home.cluster_dir(&args.cluster);
    if !dir.is_dir() {
        return Err(format!(
            "no cluster {} under {} (see `ezk list`)",
            args.cluster,
            ctx.home.clusters_dir().display()
        )
        .into());
    }
    set_current(&ctx.home, &args.cluster)?;
    println!("current cluster: {}", args.cluster);
    Ok(0)
}
