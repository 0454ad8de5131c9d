//! Terminal output: error reports, progress, recap tables, `--json`.

pub mod events;
pub mod recap;

use console::style;

/// Print one error report: the message, then its causes, each on its own line.
pub fn report_error(err: &(dyn std::error::Error + 'static)) {
    eprintln!("{} {}", style("error:").red().bold(), err);
    let mut source = err.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
}
