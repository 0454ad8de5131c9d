//! `ezk checkout`: choose the current cluster, as kubeasz's `ezctl checkout` does (the choice
//! is kept by `Home`, see `home.rs`).

use super::{CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to make current (must exist under clusters/).
    pub cluster: String,
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
    ctx.home.set_current_cluster(&args.cluster)?;
    println!("current cluster: {}", args.cluster);
    Ok(0)
}
