//! Asking before an operation changes something that cannot be undone (destroy, restore):
//! the cluster's name must be typed back at a terminal.

use std::io::{BufRead, IsTerminal, Write};

use super::Error;

/// Ask at the terminal before `command` acts on `cluster`: `what` says what it will do, and the
/// cluster's name must be typed back. Not a terminal: an error that names `--yes` (and
/// `--plan`), before any host is contacted.
pub fn confirmed(command: &str, cluster: &str, what: &str) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "ezk {command} asks before it changes anything, and stdin is not a terminal: \
             pass --yes to {command} cluster {cluster}, or --plan to see what it would do"
        )
        .into());
    }
    let mut err = std::io::stderr();
    writeln!(err, "{what}")?;
    write!(err, "Type the cluster name ({cluster}) to go on: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == cluster)
}
