//! Inventory errors: every one names the file and line it comes from and says how to fix it,
//! so `ezk check` can print them all at once before any host is contacted.

use std::fmt;
use std::path::PathBuf;

/// A place in an inventory file (1-based line; 0 when the file as a whole is meant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Location {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One problem found while reading or validating an inventory.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    /// A file could not be read.
    #[error("{path}: cannot read: {reason}")]
    Io { path: PathBuf, reason: String },
    /// The cluster directory has no inventory at all.
    #[error(
        "{dir}: no inventory (hosts or hosts.yml)\n  fix: create one with `ezk new <cluster>`, or check --home / EZK_HOME"
    )]
    NoInventory { dir: PathBuf },
    /// The text of an inventory or config file is malformed.
    #[error("{at}: {msg}\n  fix: {fix}")]
    Syntax {
        at: Location,
        msg: String,
        fix: String,
    },
    /// A variable's Jinja template cannot be evaluated for a host (syntax error, undefined
    /// variable, or a reference cycle).
    #[error("{at}: variable {var} (for host {host}): {msg}\n  fix: {fix}")]
    Template {
        at: Location,
        var: String,
        host: String,
        msg: String,
        fix: String,
    },
    /// The inventory is well-formed but describes a cluster kubeasz/ezk cannot build.
    #[error("{at}: {msg}\n  fix: {fix}")]
    Invalid {
        at: Location,
        msg: String,
        fix: String,
    },
}

impl InventoryError {
    /// Where the problem is, when it has a place.
    pub fn location(&self) -> Option<&Location> {
        match self {
            InventoryError::Syntax { at, .. }
            | InventoryError::Template { at, .. }
            | InventoryError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }

    pub(crate) fn syntax(at: Location, msg: impl Into<String>, fix: impl Into<String>) -> Self {
        InventoryError::Syntax {
            at,
            msg: msg.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn invalid(at: Location, msg: impl Into<String>, fix: impl Into<String>) -> Self {
        InventoryError::Invalid {
            at,
            msg: msg.into(),
            fix: fix.into(),
        }
    }
}

/// Every problem found in one inventory (never empty when returned as an error).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub struct InventoryErrors(pub Vec<InventoryError>);

impl fmt::Display for InventoryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the inventory:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "- {e}")?;
        }
        Ok(())
    }
}
