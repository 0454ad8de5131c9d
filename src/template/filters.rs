//! Ansible filters that minijinja lacks, as kubeasz's templates and config.yml use them.

use minijinja::{Environment, Error, ErrorKind, Value};

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("bool", to_bool);
}

/// Ansible's `bool`: yes/no, true/false, on/off, 1/0 (any case) and real booleans.
fn to_bool(v: Value) -> Result<bool, Error> {
    if let Some(s) = v.as_str() {
        return match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" | "y" => Ok(true),
            "no" | "false" | "off" | "0" | "n" | "" => Ok(false),
            other => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot interpret {other:?} as a boolean (use yes/no or true/false)"),
            )),
        };
    }
    Ok(v.is_true())
}
