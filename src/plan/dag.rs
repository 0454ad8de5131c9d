//! The role DAG: `meta.yml` `depends` edges over the roles a step uses (and everything they
//! depend on). Gives a topological order and waves: roles in one wave have no path between
//! them, so they may run at the same time.

use std::collections::{BTreeMap, HashMap};

use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use super::error::PlanError;
use super::role::Role;

/// Roles of a step, ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOrder {
    /// Topological order (dependencies first; ties in the order roles were first named).
    pub order: Vec<String>,
    /// Waves: every role's dependencies are in earlier waves.
    pub waves: Vec<Vec<String>>,
}

/// Build the DAG over `start` (roles in playbook order, each with the place that named it) and
/// their `depends` closure.
pub fn order(
    roles: &BTreeMap<String, Role>,
    start: &[(String, String)],
) -> Result<RoleOrder, PlanError> {
    let mut graph: DiGraph<String, ()> = DiGraph::new();
    let mut index: HashMap<String, NodeIndex> = HashMap::new();
    let mut queue: Vec<(String, String)> = start.to_vec();
    let mut i = 0;
    let mut errors = Vec::new();
    while i < queue.len() {
        let (name, by) = queue[i].clone();
        i += 1;
        if index.contains_key(&name) {
            continue;
        }
        let Some(role) = roles.get(&name) else {
            errors.push(PlanError::MissingRole {
                role: name,
                by,
                available: roles.keys().cloned().collect::<Vec<_>>().join(", "),
            });
            continue;
        };
        index.insert(name.clone(), graph.add_node(name.clone()));
        for d in &role.depends {
            queue.push((d.clone(), role.meta_file()));
        }
    }
    PlanError::collect(errors)?;
    for (name, &n) in &index {
        for d in &roles[name].depends {
            graph.update_edge(index[d], n, ());
        }
    }
    let topo = toposort(&graph, None).map_err(|_| cycle_error(&graph, roles))?;
    // First-named position breaks ties so the order is stable and follows the playbook.
    let pos: HashMap<&str, usize> = queue
        .iter()
        .enumerate()
        .rev()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut level: HashMap<NodeIndex, usize> = HashMap::new();
    for &n in &topo {
        let l = graph
            .neighbors_directed(n, Direction::Incoming)
            .map(|p| level[&p] + 1)
            .max()
            .unwrap_or(0);
        level.insert(n, l);
    }
    let mut nodes: Vec<NodeIndex> = graph.node_indices().collect();
    nodes.sort_by_key(|n| (level[n], pos[graph[*n].as_str()]));
    let mut waves: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        let l = level[n];
        if waves.len() <= l {
            waves.resize(l + 1, Vec::new());
        }
        waves[l].push(graph[*n].clone());
    }
    Ok(RoleOrder {
        order: nodes.iter().map(|n| graph[*n].clone()).collect(),
        waves,
    })
}

/// Name one cycle, walking "depends on" edges, and the meta.yml files to edit.
fn cycle_error(graph: &DiGraph<String, ()>, roles: &BTreeMap<String, Role>) -> PlanError {
    let scc = tarjan_scc(graph)
        .into_iter()
        .find(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .expect("toposort found a cycle");
    let mut path: Vec<NodeIndex> = vec![scc[0]];
    loop {
        let cur = *path.last().unwrap();
        // Incoming edges come from the roles `cur` depends on.
        let next = graph
            .neighbors_directed(cur, Direction::Incoming)
            .find(|p| scc.contains(p))
            .unwrap();
        if let Some(i) = path.iter().position(|&p| p == next) {
            let mut names: Vec<String> = path[i..].iter().map(|&p| graph[p].clone()).collect();
            let files = names.iter().map(|n| roles[n].meta_file()).collect();
            names.push(graph[next].clone());
            return PlanError::Cycle {
                roles: names,
                files,
            };
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(spec: &[(&str, &[&str])]) -> BTreeMap<String, Role> {
        spec.iter()
            .map(|(n, deps)| {
                let r = Role {
                    name: n.to_string(),
                    dir: format!("roles/{n}"),
                    tasks: Vec::new(),
                    defaults: Default::default(),
                    depends: deps.iter().map(|d| d.to_string()).collect(),
                    defaults_from: Vec::new(),
                    serial: None,
                    needs_nodes: false,
                    templates: Default::default(),
                    files: Default::default(),
                };
                (n.to_string(), r)
            })
            .collect()
    }

    fn start(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), "playbooks/01.x.yml:3".to_string()))
            .collect()
    }

    #[test]
    fn diamond_gives_dependency_order_and_waves_without_paths_inside_a_wave() {
        let r = roles(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["c", "b"]),
            ("e", &[]),
        ]);
        let o = order(&r, &start(&["d", "e"])).unwrap();
        // Ties follow the order roles were first named: e by the playbook, c before b by d's meta.
        assert_eq!(o.waves, vec![vec!["e", "a"], vec!["c", "b"], vec!["d"]]);
        assert_eq!(o.order, vec!["e", "a", "c", "b", "d"]);
    }

    #[test]
    fn only_the_roles_a_step_uses_and_their_dependencies_are_ordered() {
        let r = roles(&[
            ("prepare", &[]),
            ("etcd", &["prepare"]),
            ("kube-master", &["etcd"]),
            ("harbor", &[]),
        ]);
        let o = order(&r, &start(&["etcd"])).unwrap();
        assert_eq!(o.order, vec!["prepare", "etcd"]);
        assert_eq!(o.waves.len(), 2);
    }

    #[test]
    fn cycle_is_named_with_the_meta_files_to_edit() {
        let r = roles(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("ok", &[])]);
        let e = order(&r, &start(&["ok", "a"])).unwrap_err();
        let PlanError::Cycle { roles, files } = &e else {
            panic!("{e}")
        };
        assert_eq!(roles.first(), roles.last(), "a closed cycle");
        assert_eq!(roles.len(), 4);
        let mut files = files.clone();
        files.sort();
        assert_eq!(
            files,
            vec!["roles/a/meta.yml", "roles/b/meta.yml", "roles/c/meta.yml"]
        );
        let msg = e.to_string();
        assert!(
            msg.contains("a -> b -> c -> a")
                || msg.contains("b -> c -> a -> b")
                || msg.contains("c -> a -> b -> c"),
            "{msg}"
        );
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let r = roles(&[("a", &["a"])]);
        assert!(matches!(
            order(&r, &start(&["a"])),
            Err(PlanError::Cycle { .. })
        ));
    }

    #[test]
    fn missing_dependency_names_the_role_and_the_meta_file() {
        let r = roles(&[("etcd", &["prepare"])]);
        let e = order(&r, &start(&["etcd"])).unwrap_err().to_string();
        assert!(
            e.contains("roles/etcd/meta.yml: role `prepare` does not exist"),
            "{e}"
        );
    }
}
