//! Errors of the plan engine. Each names the file (and line) or host it is about, so the one
//! report in `main` can point the operator at the fix.

use std::fmt;

/// Anything that stops loading roles/playbooks or planning a step.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A role/playbook file is malformed: bad YAML, unknown module or argument, bad value.
    #[error("{}: {msg}", at(file, *line))]
    Load {
        file: String,
        line: Option<usize>,
        msg: String,
    },
    /// A playbook or a `meta.yml` names a role that exists neither embedded nor on disk.
    #[error("{by}: role `{role}` does not exist (roles available: {available})")]
    MissingRole {
        role: String,
        by: String,
        available: String,
    },
    /// `meta.yml` dependencies form a cycle.
    #[error("roles depend on each other in a cycle: {} (`->` = depends on); break it in {}", roles.join(" -> "), files.join(", "))]
    Cycle {
        roles: Vec<String>,
        files: Vec<String>,
    },
    /// The step asked for has no playbook.
    #[error("unknown step `{step}`; available steps: {available}")]
    UnknownStep { step: String, available: String },
    /// Rendering a task for some hosts failed (undefined variable, bad value, missing source).
    #[error("{origin}: {msg} (host{} {})", if hosts.len() > 1 { "s" } else { "" }, hosts.join(", "))]
    Render {
        origin: String,
        hosts: Vec<String>,
        msg: String,
    },
    /// Writing rendered output failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Several independent errors, all reported at once.
    #[error("{}", Many(.0))]
    Many(Vec<PlanError>),
}

fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

struct Many<'a>(&'a [PlanError]);

impl fmt::Display for Many<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s):", self.0.len())?;
        for e in self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl PlanError {
    /// One error, or `Many` when there are several; `Ok` when there are none.
    pub fn collect(mut errors: Vec<PlanError>) -> Result<(), PlanError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().unwrap()),
            _ => Err(PlanError::Many(errors)),
        }
    }

    /// Flatten into a list of single errors.
    pub fn into_list(self) -> Vec<PlanError> {
        match self {
            PlanError::Many(v) => v.into_iter().flat_map(PlanError::into_list).collect(),
            e => vec![e],
        }
    }

    pub(crate) fn load(file: &str, line: Option<usize>, msg: impl Into<String>) -> PlanError {
        PlanError::Load {
            file: file.to_string(),
            line,
            msg: msg.into(),
        }
    }

    /// From a serde_yaml error, keeping its line.
    pub(crate) fn yaml(file: &str, e: &serde_yaml::Error) -> PlanError {
        let line = e.location().map(|l| l.line());
        // serde_yaml appends " at line L column C"; the line is already in front.
        let mut msg = e.to_string();
        if let Some(i) = msg.find(" at line ") {
            msg.truncate(i);
        }
        PlanError::Load {
            file: file.to_string(),
            line,
            msg,
        }
    }
}
