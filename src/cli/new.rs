//! `ezk new`.

use super::{CliResult, Context};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_ctx: &Context, _args: Args) -> CliResult {
    Err("not yet implemented".into())
}
