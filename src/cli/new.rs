//! `ezk new`: create `clusters/<name>/hosts` and `config.yml` from the inventory examples
//! (embedded in the binary, see `inventory::examples`), as kubeasz's `ezctl new` does. The new
//! cluster becomes the current one (see `ezk checkout`).

use std::path::Path;

use super::{CliResult, Context};
use crate::inventory::examples::{self, Layout};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (letters, digits, '-', '_', '.'); becomes clusters/<name>/.
    pub cluster: String,
    /// Example layout to start from.
    #[arg(long, value_enum, default_value = "multi-node")]
    pub layout: Layout,
}

/// Whether a cluster name is safe as a directory name and in templates.
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let name = &args.cluster;
    if !valid_cluster_name(name) {
        return Err(format!(
            "invalid cluster name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
        )
        .into());
    }
    let dir = ctx.home.cluster_dir(name);
    if dir.exists() {
        return Err(format!(
            "cluster {name} already exists ({}); ezk new never overwrites a cluster — edit its files, \
             or remove the directory first",
            dir.display()
        )
        .into());
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // base_dir must be absolute and normalised (`ezk check`): `--home ../x` resolved.
    let home = std::fs::canonicalize(ctx.home.root())?;
    write(
        &dir.join("hosts"),
        &examples::hosts(args.layout, name, &home),
    )?;
    write(&dir.join("config.yml"), &examples::config_yml(name, &home))?;
    ctx.home.set_current_cluster(name)?;
    println!("cluster {name}: created {}", dir.display());
    println!(
        "next: edit {}/hosts and {}/config.yml, then run `ezk check {name}`",
        dir.display(),
        dir.display()
    );
    Ok(0)
}

fn write(path: &Path, text: &str) -> Result<(), super::CliError> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}
