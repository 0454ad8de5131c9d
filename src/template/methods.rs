//! Python methods that Ansible templates call on values (`calico_ver.split('.')`,
//! `x.startswith('v')`, `d.items()`), which Jinja allows because values are Python objects.
//! minijinja calls this for any method it does not know.

use minijinja::value::{ValueKind, from_args};
use minijinja::{Error, ErrorKind, State, Value};

pub(super) fn call(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        return string_method(s, method, args);
    }
    if value.kind() == ValueKind::Map {
        match method {
            "items" => {
                let _: () = from_args(args)?;
                let mut out = Vec::new();
                for k in value.try_iter()? {
                    let v = value.get_item(&k)?;
                    out.push(Value::from(vec![k, v]));
                }
                return Ok(Value::from(out));
            }
            "keys" => return Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let mut out = Vec::new();
                for k in value.try_iter()? {
                    out.push(value.get_item(&k)?);
                }
                return Ok(Value::from(out));
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                return Ok(if v.is_undefined() {
                    default.unwrap_or(Value::from(()))
                } else {
                    v
                });
            }
            _ => {}
        }
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    Ok(match method {
        "split" => {
            let (sep, max): (Option<String>, Option<i64>) = from_args(args)?;
            let parts: Vec<Value> = match (sep, max) {
                (Some(sep), Some(n)) if n >= 0 => s
                    .splitn(n as usize + 1, sep.as_str())
                    .map(Value::from)
                    .collect(),
                (Some(sep), _) => s.split(sep.as_str()).map(Value::from).collect(),
                (None, _) => s.split_whitespace().map(Value::from).collect(),
            };
            Value::from(parts)
        }
        "startswith" => Value::from(s.starts_with(from_args::<(String,)>(args)?.0.as_str())),
        "endswith" => Value::from(s.ends_with(from_args::<(String,)>(args)?.0.as_str())),
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<String>,) = from_args(args)?;
            let pat = |c: char| match &chars {
                Some(cs) => cs.contains(c),
                None => c.is_whitespace(),
            };
            Value::from(match method {
                "strip" => s.trim_matches(pat),
                "lstrip" => s.trim_start_matches(pat),
                _ => s.trim_end_matches(pat),
            })
        }
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "replace" => {
            let (a, b): (String, String) = from_args(args)?;
            Value::from(s.replace(&a, &b))
        }
        "join" => {
            let (items,): (Vec<String>,) = from_args(args)?;
            Value::from(items.join(s))
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}
