//! Group membership and Ansible variable precedence.
//!
//! Precedence, lowest first (as the ezk contract fixes it): role defaults < config.yml <
//! `[all:vars]` < group vars < host vars < `-e key=value`. Group vars apply in Ansible's
//! order: by depth in the group tree (a child group overrides its parents), then by name.
//! Note: kubeasz passes config.yml to Ansible as `-e @config.yml`, which would put it on top;
//! ezk deliberately ranks it under the inventory so `hosts` can override cluster-wide settings.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use super::error::{InventoryError, Location};
use super::model::{Source, VarDef, VarDefs};

/// Groups resolved from the raw source: members (through children) and depth.
#[derive(Debug, Clone, Default)]
pub struct GroupTree {
    /// group → member hosts (direct, then through children), in file order.
    pub members: IndexMap<String, Vec<String>>,
    /// group → depth (`all` = 0, top-level groups = 1, a child = parent + 1).
    pub depth: HashMap<String, usize>,
    /// host → its groups in precedence order (see `groups_of`), computed once: asked per host
    /// and role, a walk of every group's members would make a large inventory quadratic.
    by_host: HashMap<String, Vec<String>>,
}

impl GroupTree {
    /// Resolve membership; a `children` cycle is reported with the line that closes it.
    pub fn build(src: &Source) -> (GroupTree, Vec<InventoryError>) {
        let mut tree = GroupTree::default();
        let mut errors = Vec::new();
        for name in src.groups.keys() {
            let mut stack = Vec::new();
            let mut out = Vec::new();
            collect(src, name, &mut stack, &mut out, &mut errors);
            tree.members.insert(name.clone(), out);
        }
        // `all` holds every host, in first-appearance order.
        tree.members
            .insert("all".into(), src.hosts.keys().cloned().collect());
        let child_of: HashSet<&String> = src
            .groups
            .iter()
            .filter(|(n, _)| *n != "all")
            .flat_map(|(_, g)| g.children.iter())
            .collect();
        tree.depth.insert("all".into(), 0);
        for name in src
            .groups
            .keys()
            .filter(|n| *n != "all" && !child_of.contains(n))
        {
            set_depth(src, name, 1, &mut tree.depth, &mut Vec::new());
        }
        let mut by_host: HashMap<String, Vec<String>> = HashMap::new();
        for (g, members) in tree.members.iter().filter(|(g, _)| *g != "all") {
            for h in members {
                by_host.entry(h.clone()).or_default().push(g.clone());
            }
        }
        for gs in by_host.values_mut() {
            gs.sort_by_key(|g| (tree.depth.get(g).copied().unwrap_or(1), g.clone()));
        }
        tree.by_host = by_host;
        errors.dedup();
        (tree, errors)
    }

    /// Groups containing `host`, lowest precedence first, without `all`.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        self.by_host.get(host).cloned().unwrap_or_default()
    }
}

fn collect(
    src: &Source,
    g: &str,
    stack: &mut Vec<String>,
    out: &mut Vec<String>,
    errors: &mut Vec<InventoryError>,
) {
    let Some(def) = src.groups.get(g) else { return };
    if let Some(pos) = stack.iter().position(|x| x == g) {
        let mut chain = stack[pos..].to_vec();
        chain.push(g.to_string());
        let at = def.at.clone();
        errors.push(InventoryError::syntax(
            at,
            format!("group children form a cycle: {}", chain.join(" -> ")),
            "remove one of the [group:children] entries so no group contains itself",
        ));
        return;
    }
    for h in &def.hosts {
        if !out.contains(h) {
            out.push(h.clone());
        }
    }
    stack.push(g.to_string());
    for c in &def.children {
        collect(src, c, stack, out, errors);
    }
    stack.pop();
}

fn set_depth(
    src: &Source,
    g: &str,
    d: usize,
    depth: &mut HashMap<String, usize>,
    stack: &mut Vec<String>,
) {
    if stack.iter().any(|x| x == g) {
        return;
    }
    let e = depth.entry(g.to_string()).or_insert(d);
    *e = (*e).max(d);
    stack.push(g.to_string());
    if let Some(def) = src.groups.get(g) {
        for c in &def.children {
            set_depth(src, c, d + 1, depth, stack);
        }
    }
    stack.pop();
}

/// One host's variable definitions as the layers that apply to it, lowest precedence first:
/// role defaults, config.yml, `[all:vars]`, its groups' vars, its own vars, `-e`. The layers
/// are shared by every host (one copy of config.yml, not one per host); a name is looked up
/// from the top layer down.
#[derive(Debug, Clone, Default)]
pub struct Layers(Vec<Arc<VarDefs>>);

impl Layers {
    /// These layers with `defaults` below them all.
    pub fn over(&self, defaults: &Arc<VarDefs>) -> Layers {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push(defaults.clone());
        v.extend(self.0.iter().cloned());
        Layers(v)
    }

    /// The winning definition of `name`.
    pub fn get(&self, name: &str) -> Option<&VarDef> {
        self.0.iter().rev().find_map(|l| l.get(name))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.iter().any(|l| l.contains_key(name))
    }

    /// Every defined name, in the order a merge lowest-first would give (a name keeps the place
    /// of its lowest definition).
    pub fn names(&self) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for l in &self.0 {
            for k in l.keys() {
                if seen.insert(k.as_str()) {
                    out.push(k.clone());
                }
            }
        }
        out
    }

    /// The layers merged into one map (later definitions replace earlier).
    #[cfg(test)]
    fn merged(&self) -> VarDefs {
        self.names()
            .into_iter()
            .filter_map(|n| Some((n.clone(), self.get(&n)?.clone())))
            .collect()
    }
}

/// Every host's layers (without role defaults: see `Layers::over`), sharing one copy of each
/// group's and each file's definitions.
pub fn layers_by_host(
    src: &Source,
    tree: &GroupTree,
    config: &VarDefs,
    extra: &VarDefs,
) -> IndexMap<String, Layers> {
    let config = Arc::new(config.clone());
    let extra = Arc::new(extra.clone());
    let groups: HashMap<&str, Arc<VarDefs>> = src
        .groups
        .iter()
        .filter(|(_, d)| !d.vars.is_empty())
        .map(|(g, d)| (g.as_str(), Arc::new(d.vars.clone())))
        .collect();
    src.hosts
        .iter()
        .map(|(h, def)| {
            let mut l = vec![config.clone()];
            l.extend(groups.get("all").cloned());
            for g in tree.groups_of(h) {
                l.extend(groups.get(g.as_str()).cloned());
            }
            l.push(Arc::new(def.vars.clone()));
            l.push(extra.clone());
            (h.clone(), Layers(l))
        })
        .collect()
}

/// The layers that apply to one host, merged lowest first: later definitions replace earlier.
#[cfg(test)]
pub fn merge_for_host(
    src: &Source,
    tree: &GroupTree,
    defaults: &VarDefs,
    config: &VarDefs,
    extra: &VarDefs,
    host: &str,
) -> VarDefs {
    layers_by_host(src, tree, config, extra)
        .get(host)
        .cloned()
        .unwrap_or_default()
        .over(&Arc::new(defaults.clone()))
        .merged()
}

/// `-e` definitions in command-line order, a later one winning: `key=value` pairs are strings,
/// as Ansible's key=value form gives; a pair whose key is `@` names a YAML file of
/// `NAME: value` (Ansible's `-e @file.yml`), read with its types and its lines for errors.
pub fn extra_defs(extra: &[(String, String)]) -> (VarDefs, Vec<InventoryError>) {
    let mut defs = VarDefs::new();
    let mut errors = Vec::new();
    for (k, v) in extra {
        if k == "@" {
            let file = std::path::Path::new(v);
            let parsed = super::limits::read_text(file)
                .map_err(|e| match e {
                    InventoryError::Io { path, reason } => InventoryError::Io {
                        path,
                        reason: format!("{reason} (named by -e @{v})"),
                    },
                    other => other,
                })
                .and_then(|text| super::yaml::parse_config(&text, file));
            match parsed {
                Ok(vars) => defs.extend(vars),
                Err(e) => errors.push(e),
            }
        } else {
            defs.insert(
                k.clone(),
                VarDef {
                    value: super::Value::String(v.clone()),
                    at: Location::new("-e (command line)", 0),
                },
            );
        }
    }
    (defs, errors)
}

/// Role defaults as definitions.
pub fn default_defs(defaults: &super::Vars) -> VarDefs {
    defaults
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                VarDef {
                    value: v.clone(),
                    at: Location::new("role defaults", 0),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn precedence_chain_and_child_over_parent() {
        let hosts = "\
[etcd]
h1 HOSTV=host
[kube_node]
h1
[k8s:children]
kube_node
[k8s:vars]
G=parent
HOSTV=group
[kube_node:vars]
G=child
[all:vars]
A=all
C=allvars
G=all
";
        let (src, errs) = super::super::ini::parse(hosts, Path::new("hosts"));
        assert!(errs.is_empty());
        let (tree, errs) = GroupTree::build(&src);
        assert!(errs.is_empty());
        assert_eq!(tree.groups_of("h1"), vec!["etcd", "k8s", "kube_node"]);
        let loc = Location::new("x", 1);
        let d = |pairs: &[(&str, &str)]| -> VarDefs {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        VarDef {
                            value: (*v).into(),
                            at: loc.clone(),
                        },
                    )
                })
                .collect()
        };
        let defaults = d(&[("D", "default"), ("C", "default"), ("A", "default")]);
        let config = d(&[("C", "config"), ("A", "config"), ("CFG", "config")]);
        let extra = d(&[("HOSTV", "extra")]);
        let m = merge_for_host(&src, &tree, &defaults, &config, &VarDefs::new(), "h1");
        let s = |k: &str| m[k].value.as_str().unwrap().to_string();
        assert_eq!(s("D"), "default");
        assert_eq!(s("CFG"), "config", "config.yml over role defaults");
        assert_eq!(s("C"), "allvars", "[all:vars] over config.yml");
        assert_eq!(s("G"), "child", "child group over parent group over all");
        assert_eq!(s("HOSTV"), "host", "host vars over group vars");
        assert_eq!(m["HOSTV"].at.line, 2);
        let m = merge_for_host(&src, &tree, &defaults, &config, &extra, "h1");
        assert_eq!(
            m["HOSTV"].value.as_str(),
            Some("extra"),
            "-e over everything"
        );
    }

    #[test]
    fn children_cycle_is_an_error() {
        let (src, _) =
            super::super::ini::parse("[a:children]\nb\n[b:children]\na\n", Path::new("hosts"));
        let (_, errs) = GroupTree::build(&src);
        assert!(
            errs.iter().any(|e| e.to_string().contains("cycle")),
            "{errs:?}"
        );
    }
}
