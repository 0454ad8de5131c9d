//! Ansible filters and tests that minijinja lacks, as kubeasz's templates and config.yml use
//! them: `bool`, `ipaddr` (the subset kubeasz uses), `regex_replace`, `regex_search`,
//! `union`/`difference`/`intersect`, `ternary`, `basename`/`dirname`, `to_json`, `extract`,
//! and the `version` test. minijinja already has `int`, `string`, `unique`, `default`, `join`,
//! `replace`, `lower`, `length`...

use std::net::IpAddr;

use minijinja::value::Rest;
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::addr::Cidr;

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("bool", to_bool);
    env.add_filter("ipaddr", ipaddr);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("regex_search", regex_search);
    env.add_filter("union", union);
    env.add_filter("difference", difference);
    env.add_filter("intersect", intersect);
    env.add_filter("ternary", ternary);
    env.add_filter("basename", |s: String| {
        s.rsplit('/').next().unwrap_or("").to_string()
    });
    env.add_filter("dirname", |s: String| match s.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => s[..i].to_string(),
        None => String::new(),
    });
    env.add_filter("to_json", |v: Value| {
        serde_json::to_string(&v).unwrap_or_default()
    });
    env.add_filter("extract", extract);
    env.add_test("version", version_test);
}

/// Ansible's `extract`: `key | extract(container)` is `container[key]`, so
/// `names | map('extract', images)` looks each name up. A missing key is an error naming it.
fn extract(key: Value, container: Value) -> Result<Value, Error> {
    let v = container.get_item(&key)?;
    if v.is_undefined() {
        return Err(Error::new(ErrorKind::UndefinedError, format!("extract: no {key} in {}", container.kind())));
    }
    Ok(v)
}

fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Ansible's `bool`: yes/no, true/false, on/off, 1/0 (any case) and real booleans.
fn to_bool(v: Value) -> Result<bool, Error> {
    // Strict mode lets an undefined value reach a filter; `x|bool` on a missing variable is a
    // typo far more often than an intended False, so it is an error like any other use.
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "the value passed to `bool` is undefined (use `x|default(false)|bool`)",
        ));
    }
    if let Some(s) = v.as_str() {
        return match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" | "y" => Ok(true),
            "no" | "false" | "off" | "0" | "n" | "" => Ok(false),
            other => Err(bad(format!(
                "cannot interpret {other:?} as a boolean (use yes/no or true/false)"
            ))),
        };
    }
    Ok(v.is_true())
}

/// `ipaddr` as kubeasz uses it: no query → the value if it is an address or network, else
/// false; `'net'` → the network of a CIDR; an integer N → the N-th address of the network,
/// written with its prefix; `'address'` → the address without prefix; `'prefix'` → the prefix
/// length. Anything that is not an address gives `false`, as in Ansible.
fn ipaddr(v: Value, query: Option<Value>) -> Result<Value, Error> {
    let s = v.to_string();
    let s = s.trim();
    let (addr_s, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok()),
        None => (s, None),
    };
    let Ok(addr) = addr_s.parse::<IpAddr>() else {
        return Ok(Value::from(false));
    };
    let full = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
    let Some(q) = query else {
        return Ok(Value::from(s));
    };
    if let Some(n) = q.as_i64() {
        let net = Cidr::parse(&format!("{addr}/{full}")).map_err(bad)?;
        let ip = u128::try_from(n)
            .ok()
            .and_then(|n| net.nth(n))
            .filter(|ip| net.contains(*ip));
        return Ok(ip
            .map(|ip| Value::from(format!("{ip}/{full}")))
            .unwrap_or(Value::from(false)));
    }
    match q.as_str().unwrap_or("") {
        "address" => Ok(Value::from(addr.to_string())),
        "net" | "network/prefix" | "subnet" => match prefix {
            Some(_) => Ok(Value::from(Cidr::parse(s).map_err(bad)?.to_string())),
            None => Ok(Value::from(false)),
        },
        "network" => Ok(Value::from(
            Cidr::parse(&format!("{addr}/{full}"))
                .map_err(bad)?
                .addr
                .to_string(),
        )),
        "prefix" => Ok(Value::from(full)),
        "host" => Ok(Value::from(format!("{addr}/{full}"))),
        "ipv4" => Ok(if addr.is_ipv4() {
            Value::from(s)
        } else {
            Value::from(false)
        }),
        "ipv6" => Ok(if addr.is_ipv6() {
            Value::from(s)
        } else {
            Value::from(false)
        }),
        other => Err(bad(format!(
            "ipaddr query {other:?} is not supported by ezk"
        ))),
    }
}

fn regex(pattern: &str, ignorecase: bool) -> Result<regex_lite::Regex, Error> {
    regex_lite::RegexBuilder::new(pattern)
        .case_insensitive(ignorecase)
        .build()
        .map_err(|e| bad(format!("bad regular expression {pattern:?}: {e}")))
}

/// Python's `\1` / `\g<name>` group references become regex's `${1}` / `${name}`.
fn python_replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '\\' if chars.peek() == Some(&'g') => {
                chars.next();
                let name: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '<')
                    .take_while(|c| *c != '>')
                    .collect();
                out.push_str(&format!("${{{name}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn regex_replace(
    s: String,
    pattern: String,
    replacement: Option<String>,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, Error> {
    let ic: Option<bool> = kwargs.get("ignorecase")?;
    kwargs.assert_all_used()?;
    let re = regex(&pattern, ic.unwrap_or(false))?;
    Ok(re
        .replace_all(
            &s,
            python_replacement(&replacement.unwrap_or_default()).as_str(),
        )
        .into_owned())
}

fn regex_search(s: String, pattern: String) -> Result<Value, Error> {
    let re = regex(&pattern, false)?;
    Ok(re
        .find(&s)
        .map(|m| Value::from(m.as_str()))
        .unwrap_or(Value::from(())))
}

fn items(v: &Value) -> Result<Vec<Value>, Error> {
    Ok(v.try_iter()?.collect())
}

fn union(a: Value, b: Value) -> Result<Value, Error> {
    let mut out = Vec::new();
    for x in items(&a)?.into_iter().chain(items(&b)?) {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from(out))
}

fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b)?;
    let mut out = Vec::new();
    for x in items(&a)? {
        if !b.contains(&x) && !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from(out))
}

fn intersect(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b)?;
    let mut out = Vec::new();
    for x in items(&a)? {
        if b.contains(&x) && !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(Value::from(out))
}

fn ternary(cond: Value, yes: Value, no: Rest<Value>) -> Value {
    if cond.is_true() {
        yes
    } else {
        no.first().cloned().unwrap_or(Value::from(()))
    }
}

/// `x is version('1.24', '>=')`: dotted numeric comparison (a `v` prefix is ignored).
fn version_test(v: String, other: String, op: Option<String>) -> Result<bool, Error> {
    let parse = |s: &str| -> Vec<u64> {
        s.trim()
            .trim_start_matches('v')
            .split(['.', '-', '+'])
            .map_while(|p| p.parse().ok())
            .collect()
    };
    let (a, b) = (parse(&v), parse(&other));
    let ord = a.cmp(&b);
    use std::cmp::Ordering::*;
    Ok(match op.as_deref().unwrap_or("==") {
        "<" | "lt" => ord == Less,
        "<=" | "le" => ord != Greater,
        ">" | "gt" => ord == Greater,
        ">=" | "ge" => ord != Less,
        "==" | "=" | "eq" => ord == Equal,
        "!=" | "<>" | "ne" => ord != Equal,
        o => return Err(bad(format!("unknown version comparison {o:?}"))),
    })
}
