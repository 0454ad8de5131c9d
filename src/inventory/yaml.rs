//! Readers for YAML files: `config.yml` (a flat map of variables, as kubeasz ships it) and the
//! Ansible YAML inventory shape `clusters/<name>/hosts.yml`:
//!
//! ```yaml
//! all:
//!   vars: {SERVICE_CIDR: 10.68.0.0/16}
//!   children:
//!     etcd:
//!       hosts: {198.51.100.11: {NODE_NAME: etcd1}}
//! ```
//!
//! serde_yaml keeps no positions, so lines are found by looking for `key:` in the text after
//! the parent's line; good enough to point an operator at the right place.

use std::collections::HashMap;
use std::path::Path;

use super::Value;
use super::error::{InventoryError, Location};
use super::model::{Source, VarDef, VarDefs};

/// Where each `key:` is written: every line's possible keys (the text before each `:`, quotes
/// removed) with the lines that hold them, so that finding a key's line is a lookup rather than
/// a scan of the file (a scan per key is quadratic: minutes for a config of 50,000 variables).
struct KeyLines(HashMap<String, Vec<usize>>);

impl KeyLines {
    fn new(text: &str) -> KeyLines {
        let mut map: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let t = l.trim_start().trim_start_matches("- ");
            for (colon, _) in t.match_indices(':') {
                let k = &t[..colon];
                let unquoted = [('"', '"'), ('\'', '\'')].iter().find_map(|(a, b)| {
                    k.strip_prefix(*a)?.strip_suffix(*b)
                });
                for k in std::iter::once(k).chain(unquoted) {
                    let lines = map.entry(k.to_string()).or_default();
                    if lines.last() != Some(&(i + 1)) {
                        lines.push(i + 1);
                    }
                }
            }
        }
        KeyLines(map)
    }

    /// Line (1-based) of the first `key:` at or after line `from`; 0 when not found.
    fn line(&self, key: &str, from: usize) -> usize {
        let Some(lines) = self.0.get(key) else {
            return 0;
        };
        let i = lines.partition_point(|l| *l < from);
        lines.get(i).copied().unwrap_or(0)
    }
}

fn yaml_error(file: &Path, e: &serde_yaml::Error) -> InventoryError {
    let line = e.location().map(|l| l.line()).unwrap_or(0);
    InventoryError::syntax(
        Location::new(file, line),
        format!("invalid YAML: {e}"),
        "fix the YAML syntax (indentation, quotes around values containing ': ' or '{{')",
    )
}

/// Parse `config.yml`: every top-level key is a variable.
pub fn parse_config(text: &str, file: &Path) -> Result<VarDefs, InventoryError> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let mut out = VarDefs::new();
    match v {
        Value::Null => {}
        Value::Mapping(m) => {
            let lines = KeyLines::new(text);
            for (k, value) in m {
                let key = key_string(&k, file)?;
                let at = Location::new(file, lines.line(&key, 1));
                out.insert(key, VarDef { value, at });
            }
        }
        _ => {
            return Err(InventoryError::syntax(
                Location::new(file, 1),
                format!(
                    "{} must be a map of NAME: value",
                    file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned())
                ),
                "write one `NAME: value` per line at the top level",
            ));
        }
    }
    Ok(out)
}

fn key_string(k: &Value, file: &Path) -> Result<String, InventoryError> {
    match k {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(InventoryError::syntax(
            Location::new(file, 0),
            format!("a key must be a string, got {other:?}"),
            "use plain names as keys",
        )),
    }
}

/// Parse an Ansible YAML inventory.
pub fn parse_inventory(text: &str, file: &Path) -> (Source, Vec<InventoryError>) {
    let mut src = Source::default();
    let mut errors = Vec::new();
    src.group_mut("all", &Location::new(file, 0));
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return (src, vec![yaml_error(file, &e)]),
    };
    let Value::Mapping(top) = root else {
        errors.push(InventoryError::syntax(
            Location::new(file, 1),
            "a YAML inventory is a map of groups (usually just `all:`)",
            "start the file with `all:` and put hosts/vars/children under it",
        ));
        return (src, errors);
    };
    let mut r = Reader {
        lines: KeyLines::new(text),
        file,
        src: &mut src,
        errors: &mut errors,
    };
    for (k, body) in top {
        match key_string(&k, file) {
            Ok(name) => {
                let line = r.lines.line(&name, 1);
                r.group(&name, &body, line);
                if name != "all" {
                    let at = Location::new(file, line);
                    let all = r.src.group_mut("all", &at);
                    all.children.push(name);
                    all.children_at.push(at);
                }
            }
            Err(e) => r.errors.push(e),
        }
    }
    (src, errors)
}

struct Reader<'a> {
    lines: KeyLines,
    file: &'a Path,
    src: &'a mut Source,
    errors: &'a mut Vec<InventoryError>,
}

impl Reader<'_> {
    fn at(&self, line: usize) -> Location {
        Location::new(self.file, line)
    }

    fn group(&mut self, name: &str, body: &Value, line: usize) {
        let at = self.at(line);
        self.src.declare(name, &at);
        let body = match body {
            Value::Null => return,
            Value::Mapping(m) => m,
            _ => {
                self.errors.push(InventoryError::syntax(
                    at,
                    format!("group {name} must be a map with hosts/vars/children"),
                    "indent `hosts:`, `vars:` or `children:` under the group name",
                ));
                return;
            }
        };
        for (k, v) in body {
            let key = k.as_str().unwrap_or("");
            let kline = self.lines.line(key, line);
            match key {
                "hosts" => self.hosts(name, v, kline),
                "vars" => {
                    let vars = self.vars(v, kline);
                    self.src.group_mut(name, &at).vars.extend(vars);
                }
                "children" => {
                    let Some(children) =
                        v.as_mapping()
                            .or(if v.is_null() { Some(&*EMPTY) } else { None })
                    else {
                        self.errors.push(InventoryError::syntax(
                            self.at(kline),
                            format!("children of {name} must be a map of group names"),
                            "write each child group as `name:` under `children:`",
                        ));
                        continue;
                    };
                    for (ck, cv) in children {
                        let Ok(child) = key_string(ck, self.file) else {
                            continue;
                        };
                        let cline = self.lines.line(&child, kline);
                        let cat = self.at(cline);
                        let g = self.src.group_mut(name, &at);
                        g.children.push(child.clone());
                        g.children_at.push(cat);
                        self.group(&child, cv, cline);
                    }
                }
                other => self.errors.push(InventoryError::syntax(
                    self.at(kline),
                    format!("unknown key {other:?} in group {name}"),
                    "a group holds only `hosts:`, `vars:` and `children:`",
                )),
            }
        }
    }

    fn hosts(&mut self, group: &str, v: &Value, line: usize) {
        let Some(hosts) = v
            .as_mapping()
            .or(if v.is_null() { Some(&*EMPTY) } else { None })
        else {
            self.errors.push(InventoryError::syntax(
                self.at(line),
                format!("hosts of {group} must be a map of host names"),
                "write each host as `name:` (optionally with its vars) under `hosts:`",
            ));
            return;
        };
        for (hk, hv) in hosts {
            let Ok(host) = key_string(hk, self.file) else {
                continue;
            };
            let hline = self.lines.line(&host, line);
            let vars = self.vars(hv, hline);
            let at = self.at(hline);
            match super::range::expand(&host) {
                Ok(names) => {
                    for name in names {
                        self.src.add_host(group, &name, &at, vars.clone());
                    }
                }
                Err(msg) => self.errors.push(InventoryError::syntax(
                    at,
                    msg,
                    super::range::FIX,
                )),
            }
        }
    }

    fn vars(&mut self, v: &Value, line: usize) -> VarDefs {
        let mut out = VarDefs::new();
        match v {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, value) in m {
                    let Ok(key) = key_string(k, self.file) else {
                        continue;
                    };
                    let at = self.at(self.lines.line(&key, line));
                    out.insert(
                        key,
                        VarDef {
                            value: value.clone(),
                            at,
                        },
                    );
                }
            }
            _ => self.errors.push(InventoryError::syntax(
                self.at(line),
                "variables must be a map of NAME: value",
                "write `NAME: value` lines indented under the host or `vars:`",
            )),
        }
        out
    }
}

static EMPTY: std::sync::LazyLock<serde_yaml::Mapping> =
    std::sync::LazyLock::new(serde_yaml::Mapping::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_yaml_inventory_shape() {
        let text = "\
all:
  vars:
    SERVICE_CIDR: 10.68.0.0/16
  children:
    etcd:
      hosts:
        198.51.100.11:
          NODE_NAME: etcd1
    kube_master:
      hosts:
        198.51.100.11:
          k8s_nodename: master-1
      vars:
        X: 1
    kube_node:
";
        let (src, errs) = parse_inventory(text, Path::new("hosts.yml"));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(src.groups["all"].vars["SERVICE_CIDR"].at.line, 3);
        assert_eq!(src.groups["etcd"].hosts, vec!["198.51.100.11"]);
        assert_eq!(src.hosts["198.51.100.11"].at.line, 7);
        assert_eq!(src.hosts["198.51.100.11"].vars["k8s_nodename"].at.line, 12);
        assert_eq!(src.groups["kube_master"].vars["X"].at.line, 14);
        assert!(src.groups.contains_key("kube_node"));
    }

    #[test]
    fn config_lines_and_yaml_errors() {
        let vars = parse_config("# c\nA: 1\nB: \"{{ A }}\"\n", Path::new("config.yml")).unwrap();
        assert_eq!(vars["B"].at.line, 3);
        let err = parse_config("A: 1\nB: [oops\n", Path::new("config.yml")).unwrap_err();
        assert!(err.to_string().starts_with("config.yml:"), "{err}");
    }
}
