//! Quoting for the syntaxes role templates write into, in one place: a value that reaches a
//! command line or a config file goes through the filter of that syntax, so no inventory value
//! can change what the line means. Each filter leaves a plain value (letters, digits and the
//! few marks paths, addresses and names use) exactly as it is, so rendered files only change
//! where quoting is needed; where a syntax has no way to carry a character, the filter fails
//! the render (naming the value), and `ezk check` reports it before any host is contacted.
//!
//! | filter | for | does |
//! |---|---|---|
//! | `quote` | a word of a `/bin/sh` command (`command:` tasks) | Ansible's `quote` (Python's `shlex.quote`): `'…'` unless plain |
//! | `systemd_arg` | a word, or part of one, of an `Exec*=` line | C-style `\xNN` escapes, `%%`, `$$` |
//! | `systemd_value` | any other unit-file setting (`WorkingDirectory=`, `Description=`, inside `Environment="…"`) | `%%`; refuses quotes, `\`, control characters |
//! | `yaml_str` | a YAML scalar | always a double-quoted string |
//! | `toml_str` | a TOML string or quoted key | always a basic string `"…"` |
//! | `nginx_str` | an nginx directive parameter | `"…"` with `\"`/`\\` unless plain; refuses `$`, control characters |
//! | `haproxy_str` | a haproxy keyword argument | `'…'` unless plain; refuses `'`, control characters |
//! | `conf_word` | one word in a config without quoting (chrony, keepalived) | refuses anything but plain |
//! | `conf_line` | the rest of a `key=value` line (journald.conf) | refuses control characters (a newline) |

use minijinja::{Environment, Error, ErrorKind, Value};

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("quote", |v: Value| shell(&text(&v)?));
    env.add_filter("systemd_arg", |v: Value| systemd_arg(&text(&v)?));
    env.add_filter("systemd_value", |v: Value| systemd_value(&text(&v)?));
    env.add_filter("yaml_str", |v: Value| {
        Ok::<_, Error>(double_quoted(&text(&v)?))
    });
    env.add_filter("toml_str", |v: Value| {
        Ok::<_, Error>(double_quoted(&text(&v)?))
    });
    env.add_filter("nginx_str", |v: Value| nginx(&text(&v)?));
    env.add_filter("haproxy_str", |v: Value| haproxy(&text(&v)?));
    env.add_filter("conf_word", |v: Value| conf_word(&text(&v)?));
    env.add_filter("conf_line", |v: Value| conf_line(&text(&v)?));
}

/// The value as text (numbers as written, none as empty); a list or map is refused: it would be
/// written in Python's notation, which no target syntax reads.
fn text(v: &Value) -> Result<String, Error> {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined => Err(Error::new(
            ErrorKind::UndefinedError,
            "the value to quote is undefined",
        )),
        ValueKind::None => Ok(String::new()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => Err(refused(
            &v.to_string(),
            "a single value",
            "it is a list or a map",
        )),
        _ => Ok(v.to_string()),
    }
}

fn refused(s: &str, target: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{s:?} cannot be written as {target}: {why}"),
    )
}

fn plain(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@+".contains(c) || extra.contains(c))
}

/// Python's `shlex.quote`, as Ansible's `quote` filter.
fn shell(s: &str) -> Result<String, Error> {
    if plain(s, "%=,") {
        return Ok(s.to_string());
    }
    Ok(format!("'{}'", s.replace('\'', r#"'"'"'"#)))
}

/// One word of an `Exec*=` command line. systemd splits the line into words (quotes group,
/// C-style escapes are decoded: `extract_first_word(UNQUOTE|CUNESCAPE)`), then resolves `%`
/// specifiers and `$VAR`s in each word: so `%` and `$` are doubled and everything else that is
/// not plain is written `\xNN`, byte by byte (it cannot split, quote or end the word).
fn systemd_arg(s: &str) -> Result<String, Error> {
    // systemd compares a word with ";" after unescaping it: a lone ";" would end the command.
    if s == ";" {
        return Err(refused(
            s,
            "a systemd command-line word",
            "a lone ; separates commands",
        ));
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_ascii_alphanumeric() || "._-:/@+=,".contains(c) => out.push(c),
            c if !c.is_ascii() && !c.is_control() => out.push(c),
            c => {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            }
        }
    }
    if out.is_empty() {
        return Ok("\"\"".into());
    }
    Ok(out)
}

/// The value of a unit-file setting that is not a command line: `%` doubled; characters such
/// settings cannot carry (quotes, backslashes, control characters) refused.
fn systemd_value(s: &str) -> Result<String, Error> {
    if let Some(c) = s.chars().find(|c| c.is_control() || "\"'\\".contains(*c)) {
        return Err(refused(
            s,
            "a systemd setting",
            &format!("it contains {c:?}"),
        ));
    }
    Ok(s.replace('%', "%%"))
}

/// A double-quoted string as YAML and TOML both read it: `\"`, `\\`, and `\uXXXX` for control
/// characters and DEL (TOML refuses them raw).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A plain value as is; else, unless it holds a control character or `refuse` (which the
/// syntax cannot carry them), the value `wrap`ped in quotes.
fn quoted_unless_plain(
    s: &str,
    target: &str,
    refuse: char,
    wrap: impl Fn(&str) -> String,
) -> Result<String, Error> {
    if plain(s, "") {
        return Ok(s.to_string());
    }
    match s.chars().find(|c| c.is_control() || *c == refuse) {
        Some(c) => Err(refused(s, target, &format!("it contains {c:?}"))),
        None => Ok(wrap(s)),
    }
}

/// An nginx parameter: plain as is, else in double quotes (`\"` and `\\` escaped). `$` starts a
/// variable even inside quotes and nginx has no escape for it: refused.
fn nginx(s: &str) -> Result<String, Error> {
    quoted_unless_plain(s, "an nginx parameter", '$', |s| {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

/// A haproxy argument: plain as is, else in single quotes (nothing is interpreted inside them,
/// not even environment variables); a value holding `'` itself is refused.
fn haproxy(s: &str) -> Result<String, Error> {
    quoted_unless_plain(s, "a haproxy argument", '\'', |s| format!("'{s}'"))
}

/// One bare word of a config file that has no quoting (chrony.conf, keepalived.conf).
fn conf_word(s: &str) -> Result<String, Error> {
    if plain(s, "") {
        return Ok(s.to_string());
    }
    let why = match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/@+".contains(*c)))
    {
        Some(c) => format!("it contains {c:?}"),
        None => "it is empty".into(),
    };
    Err(refused(s, "one word of a config file", &why))
}

/// The rest of a `key=value` line: anything but a control character (a newline would start a
/// line of its own).
fn conf_line(s: &str) -> Result<String, Error> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(refused(s, "a config value", &format!("it contains {c:?}"))),
        None => Ok(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    fn r(src: &str, v: &str) -> Result<String, String> {
        super::super::environment()
            .render_str(src, minijinja::context! { v => v })
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn shell_quote_like_ansible() {
        assert_eq!(
            r("{{ v|quote }}", "/var/lib/etcd").unwrap(),
            "/var/lib/etcd"
        );
        assert_eq!(r("{{ v|quote }}", "").unwrap(), "''");
        assert_eq!(r("{{ v|quote }}", "a b").unwrap(), "'a b'");
        assert_eq!(
            r("{{ v|quote }}", "it's; $(x)").unwrap(),
            r#"'it'"'"'s; $(x)'"#
        );
        // What sh makes of it: the value itself, one word.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s {}",
                r("{{ v|quote }}", "a 'b' $(c) `d` \\e\n").unwrap()
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "a 'b' $(c) `d` \\e\n"
        );
        assert_eq!(r("{{ 8443|quote }}", "").unwrap(), "8443");
    }

    #[test]
    fn systemd() {
        assert_eq!(
            r("{{ v|systemd_arg }}", "/opt/kube/bin").unwrap(),
            "/opt/kube/bin"
        );
        assert_eq!(
            r("{{ v|systemd_arg }}", "a b;%n$X\"\\").unwrap(),
            r"a\x20b\x3b%%n$$X\x22\x5c"
        );
        assert_eq!(r("{{ v|systemd_arg }}", "a\nb").unwrap(), r"a\x0ab");
        assert_eq!(
            r("{{ v|systemd_value }}", "etcd member 100%").unwrap(),
            "etcd member 100%%"
        );
        assert!(
            r("{{ v|systemd_value }}", "a\nExecStartPre=/bin/evil")
                .unwrap_err()
                .contains("cannot be written as a systemd setting")
        );
        assert!(r("{{ v|systemd_value }}", "a\"b").is_err());
    }

    #[test]
    fn yaml_and_toml_strings() {
        assert_eq!(
            r("{{ v|yaml_str }}", "unix:///run/containerd/containerd.sock").unwrap(),
            "\"unix:///run/containerd/containerd.sock\""
        );
        let nasty = "a\"b\\c\nd\u{7f}: #x";
        let yaml = r("x: {{ v|yaml_str }}", nasty).unwrap();
        let back: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back["x"].as_str(), Some(nasty));
        assert_eq!(
            r("{{ v|toml_str }}", "/var/lib/containerd").unwrap(),
            "\"/var/lib/containerd\""
        );
        assert_eq!(
            r("{{ v|toml_str }}", nasty).unwrap(),
            r#""a\"b\\c\nd\u007F: #x""#
        );
    }

    #[test]
    fn nginx_haproxy_and_bare_words() {
        assert_eq!(
            r("{{ v|nginx_str }}", "198.51.100.11:6443").unwrap(),
            "198.51.100.11:6443"
        );
        assert_eq!(r("{{ v|nginx_str }}", "a;b }").unwrap(), r#""a;b }""#);
        assert!(r("{{ v|nginx_str }}", "$host").is_err());
        assert_eq!(
            r("{{ v|haproxy_str }}", "0.0.0.0:8443").unwrap(),
            "0.0.0.0:8443"
        );
        assert_eq!(r("{{ v|haproxy_str }}", "a b#c").unwrap(), "'a b#c'");
        assert!(r("{{ v|haproxy_str }}", "it's").is_err());
        assert_eq!(r("{{ v|conf_word }}", "10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert!(
            r("{{ v|conf_word }}", "pool.ntp.org iburst\nserver evil")
                .unwrap_err()
                .contains("one word")
        );
        assert!(r("{{ v|conf_word }}", "").is_err());
        assert_eq!(r("{{ v|conf_line }}", "2 weeks").unwrap(), "2 weeks");
        assert!(r("{{ v|conf_line }}", "2G\nStorage=none").is_err());
        assert!(
            r("{{ [1, 2]|quote }}", "")
                .unwrap_err()
                .contains("list or a map")
        );
    }
}
