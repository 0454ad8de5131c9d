//! INI values the way Ansible reads them: Ansible passes every INI value through Python's
//! `ast.literal_eval`, keeping the text as a string when that fails. So `8443` is a number,
//! `True` a boolean, `"a b"` the string `a b`, `[1, 2]` a list — but `true`, `yes` and
//! `10.68.0.0/16` stay strings (templates use `|bool` for those, as in kubeasz).

use super::Value;

/// Interpret one INI value like Ansible's `_parse_value`.
pub fn parse(raw: &str) -> Value {
    let t = raw.trim();
    if let Some(s) = quoted(t) {
        return Value::String(s);
    }
    match t {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    if let Some(n) = number(t) {
        return n;
    }
    if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}')) {
        // Python list/dict literals are (for the simple cases inventories use) YAML flow.
        let yamlish = t
            .replace("True", "true")
            .replace("False", "false")
            .replace("None", "null");
        if let Ok(v) = serde_yaml::from_str::<Value>(&yamlish)
            && (v.is_sequence() || v.is_mapping())
        {
            return v;
        }
    }
    Value::String(raw.trim().to_string())
}

/// A single- or double-quoted Python string literal, optionally followed by a `#` comment
/// (literal_eval accepts that too). Adjacent literals and prefixes are not supported.
fn quoted(t: &str) -> Option<String> {
    let q = t.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let mut out = String::new();
    let mut chars = t[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c if c == q => {
                let rest = t[1 + i + 1..].trim_start();
                return (rest.is_empty() || rest.starts_with('#')).then_some(out);
            }
            c => out.push(c),
        }
    }
    None
}

fn number(t: &str) -> Option<Value> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.chars().next()?.is_ascii_digit() {
        return None;
    }
    // Python rejects leading zeros on integers ("08" is a string); keep that.
    if digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        return t
            .replace('_', "")
            .parse::<i64>()
            .ok()
            .map(|n| Value::Number(n.into()));
    }
    if digits.chars().all(|c| c.is_ascii_digit() || c == '.') && digits.matches('.').count() == 1 {
        return t.parse::<f64>().ok().map(|f| Value::Number(f.into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn like_ansible_literal_eval() {
        assert_eq!(parse("\"10.68.0.0/16\""), s("10.68.0.0/16"));
        assert_eq!(parse("'k8s-1'"), s("k8s-1"));
        assert_eq!(parse("''"), s(""));
        assert_eq!(parse("8443"), Value::Number(8443.into()));
        assert_eq!(parse("\"6443\""), s("6443"), "quoted numbers stay strings");
        assert_eq!(parse("True"), Value::Bool(true));
        assert_eq!(
            parse("true"),
            s("true"),
            "lowercase true is not a Python literal"
        );
        assert_eq!(parse("yes"), s("yes"));
        assert_eq!(parse("10.68.0.0/16"), s("10.68.0.0/16"));
        assert_eq!(parse("192.0.2.1"), s("192.0.2.1"), "an IP is not a float");
        assert_eq!(parse("08"), s("08"));
        assert_eq!(parse("1.5"), Value::Number(1.5.into()));
        assert_eq!(parse("\"x\" # note"), s("x"));
        assert_eq!(parse("\"a\\\"b\""), s("a\"b"));
        assert_eq!(
            parse("['a', 'b']"),
            serde_yaml::from_str::<Value>("[a, b]").unwrap()
        );
        assert_eq!(parse("\"unterminated"), s("\"unterminated"));
    }
}
