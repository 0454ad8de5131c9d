//! `ezk list`: the clusters under the home (directories of `clusters/` holding an inventory),
//! the current one marked.

use super::{CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> CliResult {
    let dir = ctx.home.clusters_dir();
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("hosts").is_file() || e.path().join("hosts.yml").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display()).into()),
    };
    names.sort();
    if names.is_empty() {
        println!(
            "no clusters under {}; create one with `ezk new <name>`",
            dir.display()
        );
        return Ok(0);
    }
    let cur = ctx.home.current_cluster();
    for n in names {
        if cur.as_deref() == Some(n.as_str()) {
            println!("* {n} (current)");
        } else {
            println!("  {n}");
        }
    }
    Ok(0)
}
