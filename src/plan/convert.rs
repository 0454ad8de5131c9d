//! Small conversions shared by loading and rendering: Jinja-string shapes, typed argument
//! values (modes, unit states, `host:port`), and naming the variables a text lacks.

use minijinja::{Environment, Value};

use super::action::{UnitState, WaitTarget};
use super::task::Arg;

/// `{{ expr }}` → `expr`; anything else unchanged (for `when`, which is an expression).
pub fn strip_braces(s: &str) -> &str {
    whole_expr(s).unwrap_or(s)
}

/// The expression when `s` is exactly one `{{ expr }}`.
pub fn whole_expr(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

/// Names used by a failing text that the host's variables lack.
pub fn missing<'n>(
    used: impl IntoIterator<Item = &'n String>,
    ctx: &Value,
    env: &Environment<'static>,
) -> String {
    let globals: Vec<String> = env.globals().map(|(k, _)| k.to_string()).collect();
    let mut m: Vec<String> = used
        .into_iter()
        .filter(|n| !globals.contains(n) && ctx.get_attr(n).map_or(true, |v| v.is_undefined()))
        .cloned()
        .collect();
    m.sort();
    match m.len() {
        0 => "value (an attribute or key that does not exist)".into(),
        1 => format!("variable `{}`", m[0]),
        _ => format!(
            "variables {}",
            m.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Strict mode still lets an undefined variable flow through a filter that takes any value
/// (`X | bool` renders False); Ansible calls that an error, and so do we for `when` and task
/// arguments: a name the text uses that the host lacks is an error, unless the text tests
/// definedness, supplies a default, or branches (`if`: the name may be on a branch not taken).
/// Template files are not checked this way: their branches are the norm.
pub fn unguarded(used: &Used, ctx: &Value, env: &Environment<'static>) -> Result<(), String> {
    if used.guarded {
        return Ok(());
    }
    let used = &used.names;
    // Most texts use only names the host has: the globals are listed only when one lacks.
    if used.iter().all(|n| ctx.get_attr(n).is_ok_and(|v| !v.is_undefined())) {
        return Ok(());
    }
    let globals: Vec<String> = env.globals().map(|(k, _)| k.to_string()).collect();
    let lacking: Vec<&String> = used
        .iter()
        .filter(|n| !globals.contains(n) && ctx.get_attr(n).map_or(true, |v| v.is_undefined()))
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    Err(format!("undefined {}", missing(lacking, ctx, env)))
}

/// The names a text uses, and whether it guards them (see [`unguarded`]).
#[derive(Debug)]
pub struct Used {
    pub names: std::collections::HashSet<String>,
    pub guarded: bool,
}

impl Used {
    pub fn new(src: &str, names: std::collections::HashSet<String>) -> Used {
        let guards = ["defined", "default", "d(", "{%", " if "];
        Used { names, guarded: guards.iter().any(|g| src.contains(g)) }
    }
}

/// `systemd` state names.
pub fn unit_state(s: &str) -> Result<UnitState, String> {
    match s {
        "started" => Ok(UnitState::Started),
        "stopped" => Ok(UnitState::Stopped),
        "restarted" => Ok(UnitState::Restarted),
        o => Err(format!(
            "systemd state `{o}` is not one of started, stopped, restarted"
        )),
    }
}

/// An octal mode string (`"0644"`, `"644"`, `"0o644"`); a bare YAML number is read as its
/// octal digits (`0644` unquoted is the integer 644 in YAML 1.2).
pub fn parse_mode(v: &Arg) -> Result<u32, String> {
    let s = scalar(v).ok_or("`mode` must be an octal string like \"0644\"")?;
    let digits = s.trim().trim_start_matches("0o");
    let m = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("`mode` {s:?} is not an octal mode like \"0644\""))?;
    if m > 0o7777 {
        return Err(format!("`mode` {s:?} is out of range"));
    }
    Ok(m)
}

pub fn parse_tcp(s: &str) -> Result<WaitTarget, String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`tcp` {s:?} must be host:port"))?;
    let port = p.parse().map_err(|_| format!("`tcp` {s:?}: bad port"))?;
    Ok(WaitTarget::Tcp {
        host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
    })
}

pub fn scalar(v: &Arg) -> Option<String> {
    match v {
        Arg::String(s) => Some(s.clone()),
        Arg::Number(n) => Some(n.to_string()),
        Arg::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Jinja source string quoted for a message, clipped when long.
pub fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{:?}…", s.chars().take(60).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

pub fn short(v: &Arg) -> String {
    let s = scalar(v).unwrap_or_else(|| serde_json::to_string(v).unwrap_or_default());
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_whether_quoted_or_bare() {
        let s = |x: &str| Arg::String(x.into());
        assert_eq!(parse_mode(&s("0644")), Ok(0o644));
        assert_eq!(parse_mode(&s("600")), Ok(0o600));
        assert_eq!(parse_mode(&s("0o755")), Ok(0o755));
        // YAML 1.2 reads an unquoted 0644 as the integer 644: still meant as octal.
        assert_eq!(
            parse_mode(&serde_yaml::from_str::<Arg>("0644").unwrap()),
            Ok(0o644)
        );
        assert!(parse_mode(&s("0999")).is_err());
        assert!(parse_mode(&s("rw-r--r--")).is_err());
    }

    #[test]
    fn only_a_single_expression_keeps_its_native_type() {
        assert_eq!(whole_expr(" {{ groups['etcd'] }} "), Some("groups['etcd']"));
        assert_eq!(whole_expr("{{ a }}:{{ b }}"), None);
        assert_eq!(whole_expr("x{{ a }}"), None);
        assert_eq!(strip_braces("a == 1"), "a == 1");
    }

    #[test]
    fn tcp_targets_accept_ipv6_brackets() {
        assert!(
            matches!(parse_tcp("[::1]:2379"), Ok(WaitTarget::Tcp { host, port: 2379 }) if host == "::1")
        );
        assert!(parse_tcp("etcd1").is_err());
        assert!(parse_tcp("h:99999").is_err());
    }
}
