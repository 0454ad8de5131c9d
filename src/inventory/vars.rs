//! Group membership and Ansible variable precedence.
//!
//! Precedence, lowest first (as the ezk contract fixes it): role defaults < config.yml <
//! `[all:vars]` < group vars < host vars < `-e key=value`. Group vars apply in Ansible's
//! order: by depth in the group tree (a child group overrides its parents), then by name.
//! Note: kubeasz passes config.yml to Ansible as `-e @config.yml`, which would put it on top;
//! ezk deliberately ranks it under the inventory so `hosts` can override cluster-wide settings.

use std::collections::{HashMap, HashSet};

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
    /// host → its groups, lowest precedence first, without `all` (made once: asking each
    /// host's groups by scanning every group's members is quadratic in hosts).
    of_host: HashMap<String, Vec<String>>,
}

impl GroupTree {
    /// Resolve membership; a `children` cycle is reported with the line that closes it.
    pub fn build(src: &Source) -> (GroupTree, Vec<InventoryError>) {
        let mut tree = GroupTree::default();
        let mut errors = Vec::new();
        for name in src.groups.keys() {
            let mut stack = Vec::new();
            let mut out = Vec::new();
            collect(src, name, &mut stack, &mut out, &mut HashSet::new(), &mut errors);
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
        for (g, members) in tree.members.iter().filter(|(g, _)| *g != "all") {
            for h in members {
                tree.of_host.entry(h.clone()).or_default().push(g.clone());
            }
        }
        for gs in tree.of_host.values_mut() {
            gs.sort_by_key(|g| (tree.depth.get(g).copied().unwrap_or(1), g.clone()));
        }
        errors.dedup();
        (tree, errors)
    }

    /// Groups containing `host`, lowest precedence first, without `all`.
    pub fn groups_of(&self, host: &str) -> &[String] {
        self.of_host.get(host).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn collect(
    src: &Source,
    g: &str,
    stack: &mut Vec<String>,
    out: &mut Vec<String>,
    seen: &mut HashSet<String>,
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
        if seen.insert(h.clone()) {
            out.push(h.clone());
        }
    }
    stack.push(g.to_string());
    for c in &def.children {
        collect(src, c, stack, out, seen, errors);
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

/// The layers that apply to one host, lowest precedence first: `layers` (config.yml,
/// `[all:vars]`, then each group's vars, each host's vars, `-e`) as the resolver keeps them,
/// and per host the indices of its layers in precedence order. Nothing is copied per host.
pub fn layers(
    src: &Source,
    tree: &GroupTree,
    config: &VarDefs,
    extra: &VarDefs,
) -> super::resolve::Layers {
    let mut layers = vec![config.clone()];
    let mut common = vec![0];
    if let Some(all) = src.groups.get("all") {
        layers.push(all.vars.clone());
        common.push(1);
    }
    let mut group_layer: HashMap<&str, usize> = HashMap::new();
    for (g, def) in src.groups.iter().filter(|(g, d)| *g != "all" && !d.vars.is_empty()) {
        group_layer.insert(g, layers.len());
        layers.push(def.vars.clone());
    }
    let extra_layer = layers.len();
    layers.push(extra.clone());
    let mut hosts = IndexMap::new();
    for (h, def) in &src.hosts {
        let mut chain = common.clone();
        let groups = tree.groups_of(h).to_vec();
        chain.extend(groups.iter().filter_map(|g| group_layer.get(g.as_str())));
        if !def.vars.is_empty() {
            chain.push(layers.len());
            layers.push(def.vars.clone());
        }
        chain.push(extra_layer);
        hosts.insert(h.clone(), (chain, groups));
    }
    super::resolve::Layers { layers, hosts }
}

/// The layers that apply to one host, merged lowest first: later definitions replace earlier.
/// (What the resolver's layer lookup must agree with; a test compares them.)
#[cfg(test)]
pub fn merge_for_host(
    src: &Source,
    tree: &GroupTree,
    defaults: &VarDefs,
    config: &VarDefs,
    extra: &VarDefs,
    host: &str,
) -> VarDefs {
    let mut out: VarDefs = defaults.clone();
    let mut put = |defs: &VarDefs| {
        for (k, v) in defs {
            out.insert(k.clone(), v.clone());
        }
    };
    put(config);
    if let Some(all) = src.groups.get("all") {
        put(&all.vars);
    }
    for g in tree.groups_of(host) {
        if let Some(def) = src.groups.get(g) {
            put(&def.vars);
        }
    }
    if let Some(h) = src.hosts.get(host) {
        put(&h.vars);
    }
    put(extra);
    out
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
        // The resolver's layers (nothing merged per host) give the same winner, in the same order.
        let groups = tree.members.clone();
        let scope = super::super::resolve::Resolver::build(layers(&src, &tree, &config, &extra), &groups)
            .with_defaults(defaults.clone());
        assert_eq!(scope.names("h1"), m.keys().cloned().collect::<Vec<_>>());
        for (k, d) in &m {
            assert_eq!(scope.def_location("h1", k), Some(&d.at), "{k}");
            assert_eq!(scope.resolve("h1", k).unwrap().as_str(), d.value.as_str(), "{k}");
        }
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
