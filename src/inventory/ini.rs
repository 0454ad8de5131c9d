//! Reader for kubeasz's `clusters/<name>/hosts`, Ansible's INI inventory format:
//! `[group]` host lines (`host key=value key2='quoted value'`), `[group:vars]` key=value lines,
//! `[group:children]` group names, `#`/`;` comments, hosts outside any section (`ungrouped`).
//! Values are read as Ansible reads them (see `literal`). Every group, host and var keeps its
//! file and line.
//!
//! One file because it is one line-by-line reader with one state (the current section), and
//! about a third of it is its own tests; host ranges (`range`) and value typing (`literal`)
//! are already apart.

use std::collections::HashSet;
use std::path::Path;

use super::error::{InventoryError, Location};
use super::literal;
use super::range;
use super::model::{Source, VarDef, VarDefs};

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// Parse INI inventory text. Returns what could be read and every problem found.
pub fn parse(text: &str, file: &Path) -> (Source, Vec<InventoryError>) {
    let mut src = Source::default();
    let mut errors = Vec::new();
    let mut section = Section::Hosts("ungrouped".into());
    // Groups that exist as [g], [g:children] or as someone's child; [g:vars] alone does not
    // create a group in Ansible (it is an error), so those are checked at the end.
    let mut declared: HashSet<String> = ["all".to_string(), "ungrouped".to_string()].into();
    let mut vars_only: Vec<(String, Location)> = Vec::new();
    src.group_mut("all", &Location::new(file, 0));

    for (idx, raw) in text.lines().enumerate() {
        let at = Location::new(file, idx + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            match header(line) {
                Ok((name, kind)) => {
                    section = match kind {
                        None => {
                            declared.insert(name.clone());
                            src.declare(&name, &at);
                            Section::Hosts(name)
                        }
                        Some("vars") => {
                            vars_only.push((name.clone(), at.clone()));
                            src.declare(&name, &at);
                            Section::Vars(name)
                        }
                        Some("children") => {
                            declared.insert(name.clone());
                            src.declare(&name, &at);
                            Section::Children(name)
                        }
                        Some(other) => {
                            errors.push(InventoryError::syntax(
                                at,
                                format!("unknown section type [{name}:{other}]"),
                                format!("use [{name}], [{name}:vars] or [{name}:children]"),
                            ));
                            // Skip the section's lines rather than misfile them.
                            Section::Vars(String::new())
                        }
                    };
                }
                Err(msg) => errors.push(InventoryError::syntax(
                    at,
                    msg,
                    "a section header is [group], [group:vars] or [group:children]",
                )),
            }
            continue;
        }
        match &section {
            Section::Vars(g) if g.is_empty() => {}
            Section::Vars(g) => match var_line(line, &at) {
                Ok((k, v)) => {
                    src.group_mut(g, &at).vars.insert(k, v);
                }
                Err(e) => errors.push(e),
            },
            Section::Children(g) => {
                let child = line.split(['#', ';']).next().unwrap_or("").trim();
                if child.contains(char::is_whitespace) || child.contains('=') {
                    errors.push(InventoryError::syntax(
                        at,
                        format!("[{g}:children] lists group names, got {line:?}"),
                        "put one group name per line; hosts go under [group], vars under [group:vars]",
                    ));
                    continue;
                }
                declared.insert(child.to_string());
                src.group_mut(child, &at);
                let parent = src.group_mut(g, &at);
                parent.children.push(child.to_string());
                parent.children_at.push(at);
            }
            Section::Hosts(g) => match host_line(line, &at) {
                Ok(hosts) => {
                    for (host, vars) in hosts {
                        src.add_host(g, &host, &at, vars);
                    }
                }
                Err(e) => errors.push(e),
            },
        }
    }
    for (g, at) in vars_only {
        if !declared.contains(&g) {
            errors.push(InventoryError::syntax(
                at,
                format!("[{g}:vars] is for a group that is never defined"),
                format!("add a [{g}] section (it may be empty) or fix the group name"),
            ));
        }
    }
    (src, errors)
}

/// `[name]`, `[name:kind]`, optionally followed by a comment.
pub(super) fn header(line: &str) -> Result<(String, Option<&str>), String> {
    let close = line
        .find(']')
        .ok_or_else(|| format!("section header {line:?} has no closing ]"))?;
    let rest = line[close + 1..].trim();
    if !(rest.is_empty() || rest.starts_with('#') || rest.starts_with(';')) {
        return Err(format!("unexpected text after section header: {rest:?}"));
    }
    let inner = line[1..close].trim();
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n.trim(), Some(k.trim())),
        None => (inner, None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid group name in section header {line:?}"));
    }
    Ok((name.to_string(), kind))
}

/// A variable name Ansible accepts.
pub fn valid_var_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn var_line(line: &str, at: &Location) -> Result<(String, VarDef), InventoryError> {
    let Some((k, v)) = line.split_once('=') else {
        return Err(InventoryError::syntax(
            at.clone(),
            format!("expected key=value, got {line:?}"),
            "write one variable per line as NAME=value (quote values with spaces)",
        ));
    };
    let k = k.trim();
    if !valid_var_name(k) {
        return Err(InventoryError::syntax(
            at.clone(),
            format!("invalid variable name {k:?}"),
            "variable names use letters, digits and _ and do not start with a digit",
        ));
    }
    Ok((
        k.to_string(),
        VarDef {
            value: literal::parse(v),
            at: at.clone(),
        },
    ))
}

/// `host [key=value ...]`; `host:port` sets ansible_port as Ansible does; a host range
/// (`node[01:03]`, see `range`) gives one host per name, each with the line's variables.
fn host_line(line: &str, at: &Location) -> Result<Vec<(String, VarDefs)>, InventoryError> {
    let tokens = split_words(line).map_err(|msg| {
        InventoryError::syntax(
            at.clone(),
            msg,
            "close the quote; quote values that contain spaces",
        )
    })?;
    let Some((first, rest)) = tokens.split_first() else {
        return Ok(Vec::new());
    };
    let names = range::expand(first).map_err(|msg| {
        InventoryError::syntax(
            at.clone(),
            msg,
            range::FIX,
        )
    })?;
    let vars = line_vars(first, rest, at)?;
    Ok(names
        .into_iter()
        .map(|name| {
            let mut vars = vars.clone();
            let host = split_port(name, &mut vars, at);
            (host, vars)
        })
        .collect())
}

/// `host:port` (one colon, a number after it) sets ansible_port; anything else is the name.
fn split_port(host: String, vars: &mut VarDefs, at: &Location) -> String {
    if host.matches(':').count() == 1 {
        let (h, p) = host.split_once(':').unwrap_or_default();
        if let Ok(port) = p.parse::<u16>() {
            vars.insert(
                "ansible_port".into(),
                VarDef {
                    value: port.into(),
                    at: at.clone(),
                },
            );
            return h.to_string();
        }
    }
    host
}

/// The `key=value` words after a host name.
fn line_vars(host: &str, rest: &[String], at: &Location) -> Result<VarDefs, InventoryError> {
    let mut vars = VarDefs::new();
    for t in rest {
        let Some((k, v)) = t.split_once('=') else {
            return Err(InventoryError::syntax(
                at.clone(),
                format!("expected key=value host variable after {host}, got {t:?}"),
                "host variables are written key=value; quote values that contain spaces",
            ));
        };
        if !valid_var_name(k) {
            return Err(InventoryError::syntax(
                at.clone(),
                format!("invalid variable name {k:?} on host {host}"),
                "variable names use letters, digits and _ and do not start with a digit",
            ));
        }
        vars.insert(
            k.to_string(),
            VarDef {
                value: literal::parse(v),
                at: at.clone(),
            },
        );
    }
    Ok(vars)
}

/// POSIX shell-like word splitting with `#` comments, as Ansible's `shlex_split(comments=True)`
/// does for host lines: quotes group and are removed, a `#` starting a word ends the line.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated ' quote in {line:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            cur.push(chars.next().unwrap_or('\\'))
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated \" quote in {line:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Value;

    fn p(text: &str) -> (Source, Vec<InventoryError>) {
        parse(text, Path::new("hosts"))
    }

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            split_words(r#"h1 a='x y' b="q\"z" c= # trailing"#).unwrap(),
            vec!["h1", "a=x y", "b=q\"z", "c="]
        );
        assert!(split_words("h a='open").is_err());
    }

    #[test]
    fn groups_vars_children_and_lines() {
        let text = "\
# comment
; another
[etcd]
198.51.100.1   NODE_NAME=etcd1   # inline comment

[kube_master]
198.51.100.1 k8s_nodename='master-01'
[kube_node]
[harbor]
[k8s:children]
kube_master
kube_node
[k8s:vars]
PORT=8443
[all:vars]
SERVICE_CIDR=\"10.68.0.0/16\"
EMPTY=
  SPACED  =  'a b'  
";
        let (src, errs) = p(text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(src.groups["etcd"].hosts, vec!["198.51.100.1"]);
        assert!(
            src.groups["kube_node"].hosts.is_empty(),
            "empty groups exist"
        );
        assert!(src.groups.contains_key("harbor"));
        assert_eq!(src.groups["k8s"].children, vec!["kube_master", "kube_node"]);
        assert_eq!(
            src.groups["k8s"].vars["PORT"].value,
            Value::Number(8443.into())
        );
        let h = &src.hosts["198.51.100.1"];
        assert_eq!(h.at.line, 4, "first appearance");
        assert_eq!(h.vars["NODE_NAME"].value, Value::String("etcd1".into()));
        assert_eq!(h.vars["k8s_nodename"].at.line, 7);
        assert_eq!(
            h.vars["k8s_nodename"].value,
            Value::String("master-01".into())
        );
        let sc = &src.groups["all"].vars["SERVICE_CIDR"];
        assert_eq!((sc.value.as_str(), sc.at.line), (Some("10.68.0.0/16"), 16));
        assert_eq!(
            src.groups["all"].vars["EMPTY"].value,
            Value::String(String::new())
        );
        assert_eq!(
            src.groups["all"].vars["SPACED"].value,
            Value::String("a b".into()),
            "spaces around = and quotes"
        );
    }

    #[test]
    fn host_port_and_ungrouped() {
        let (src, errs) = p("198.51.100.9:2222\n[etcd]\nnode-a ansible_host=198.51.100.3\n");
        assert!(errs.is_empty());
        assert_eq!(src.groups["ungrouped"].hosts, vec!["198.51.100.9"]);
        assert_eq!(
            src.hosts["198.51.100.9"].vars["ansible_port"].value,
            Value::Number(2222.into())
        );
    }

    #[test]
    fn errors_name_the_line() {
        let (_, errs) =
            p("[etcd]\nh1 novalue\n[x:vars]\nA=1\n[bad\n[g:weird]\n[k:vars]\nnot a var\n[k]\n");
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("hosts:2: expected key=value host variable")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("hosts:3: [x:vars] is for a group that is never defined")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("hosts:5: section header")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("hosts:6: unknown section type")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("hosts:8: expected key=value")),
            "{msgs:?}"
        );
        assert_eq!(errs.len(), 5);
    }
}
