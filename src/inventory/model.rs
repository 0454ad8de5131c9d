//! The inventory as written, before any variable is resolved: groups with their hosts,
//! children and vars, and hosts with their vars, each remembering the file and line it came
//! from. Both the INI and the YAML readers produce this.

use indexmap::IndexMap;

use super::Value;
use super::error::Location;

/// One variable definition and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct VarDef {
    pub value: Value,
    pub at: Location,
}

/// Ordered variable definitions.
pub type VarDefs = IndexMap<String, VarDef>;

/// A group: `[name]`, `[name:vars]`, `[name:children]` in INI, or a key under `children` in YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    /// Where the group was first declared.
    pub at: Location,
    /// Hosts listed directly in the group, in file order.
    pub hosts: Vec<String>,
    /// Child groups (their hosts are members of this group too).
    pub children: Vec<String>,
    /// Child-group names with the line that listed them, for error messages.
    pub children_at: Vec<Location>,
    pub vars: VarDefs,
}

impl GroupDef {
    pub fn new(at: Location) -> GroupDef {
        GroupDef {
            at,
            hosts: Vec::new(),
            children: Vec::new(),
            children_at: Vec::new(),
            vars: VarDefs::new(),
        }
    }
}

/// A host: its first appearance, and the vars from every line that names it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostDef {
    pub at: Location,
    pub vars: VarDefs,
}

/// A parsed inventory file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// Groups in declaration order; `all` holds `[all:vars]`.
    pub groups: IndexMap<String, GroupDef>,
    /// Hosts in first-appearance order.
    pub hosts: IndexMap<String, HostDef>,
}

impl Source {
    /// The group, created at `at` when first seen.
    pub fn group_mut(&mut self, name: &str, at: &Location) -> &mut GroupDef {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| GroupDef::new(at.clone()))
    }

    /// The group, its position set to `at` if it had none yet (`all`, created implicitly).
    pub fn declare(&mut self, name: &str, at: &Location) -> &mut GroupDef {
        let g = self.group_mut(name, at);
        if g.at.line == 0 {
            g.at = at.clone();
        }
        g
    }

    /// Record that `host` is listed at `at`, in `group`, with these vars (later lines win,
    /// as in Ansible).
    pub fn add_host(&mut self, group: &str, host: &str, at: &Location, vars: VarDefs) {
        let h = self
            .hosts
            .entry(host.to_string())
            .or_insert_with(|| HostDef {
                at: at.clone(),
                vars: VarDefs::new(),
            });
        h.vars.extend(vars);
        let g = self.group_mut(group, at);
        if !g.hosts.iter().any(|x| x == host) {
            g.hosts.push(host.to_string());
        }
    }
}
