//! Inventory: kubeasz `clusters/<name>/hosts` (Ansible INI) or a YAML inventory
//! (`clusters/<name>/hosts.yml`), plus `config.yml`, resolved per host with Ansible precedence
//! and validated before any connection.
//!
//! CONTRACT (other modules code against this):
//! - `Inventory::load(home, cluster, extra_vars)` parses and validates, returning every error
//!   at once (each naming file + line + fix). `Inventory::parse` only reads (for `ezk check`,
//!   which then runs `validate::validate` and adds its own findings).
//! - `groups` / `hosts_in(group)` / `hosts` in inventory order.
//! - `vars_for(host, role_defaults)` merges role defaults < config.yml < [all:vars] < group vars
//!   < host vars < -e, and renders every templated value for that host (lazy Jinja, with
//!   `inventory_hostname`, `groups`, `hostvars`). `context(host, role_defaults)` gives the same
//!   as a lazy minijinja value; `role_context(host, role, role_defaults, run_defaults)` is
//!   what the planner renders a role with: one scope per role made once per run, each host's
//!   values rendered once and shared between scopes when they do not depend on role defaults
//!   (planning is linear in hosts: nothing is merged or copied per host × role), `hostvars`
//!   read in `run_context(run_defaults)`, which the PKI reads too.
//! - `var_str(host, name)` answers one variable as text (how `exec::Connection` reads a host's
//!   Ansible connection variables, through `session::connection`).
//!
//! Files: `load.rs` reads a cluster's files into an `Inventory` (this file: its queries),
//! `ini.rs`/`yaml.rs` parse, `range.rs` expands host ranges, `literal.rs` types INI values,
//! `vars.rs` merges, `resolve.rs` renders, `validate.rs` validates (`values.rs`: what
//! each known variable becomes and its check), `limits.rs` bounds sizes
//! (and reads the files), `select.rs` is `--limit`,
//! `examples.rs` what `ezk new` writes (address helpers are in `crate::addr`).

// Errors carry file, line, host and fix text; they are collected for a report, not raised in
// a hot path, so their size does not matter.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use indexmap::IndexMap;

pub mod edit;
mod error;
pub mod examples;
mod ini;
pub mod limits;
mod literal;
mod load;
mod range;
pub mod model;
mod resolve;
mod select;
pub mod validate;
pub mod values;
mod vars;
mod yaml;

pub use error::{InventoryError, InventoryErrors, Location};
pub use resolve::{ResolveError, ResolveErrorKind, Scope, hostvars_lookups, render_count};

/// A variable value (YAML data model: strings, numbers, bools, lists, maps).
pub type Value = serde_yaml::Value;
/// An ordered variable map.
pub type Vars = IndexMap<String, Value>;

/// The kubeasz groups; they always exist in `Inventory::groups`, possibly empty.
pub const KUBEASZ_GROUPS: &[&str] = &[
    "etcd",
    "kube_master",
    "kube_node",
    "ex_lb",
    "chrony",
    "harbor",
];

/// Parsed inventory of one cluster.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub cluster: String,
    /// `clusters/<name>/`.
    pub dir: PathBuf,
    /// group → member hostnames, in file order; includes `all`, and the kubeasz groups even when
    /// empty (`etcd`, `kube_master`, `kube_node`, `ex_lb`, `chrony`, `harbor`).
    pub groups: IndexMap<String, Vec<String>>,
    /// Every host (inventory_hostname), in file order.
    pub hosts: Vec<String>,
    hosts_file: PathBuf,
    config_file: PathBuf,
    source: model::Source,
    /// The inventory's own scope, without role defaults (what `hostvars`, `validate` and
    /// `var_str` use); every scope with role defaults shares its resolver.
    base: Arc<resolve::Scope>,
    /// The scope of each role (by name) the planner asked for, made once per run.
    scopes: Arc<Mutex<HashMap<String, Arc<resolve::Scope>>>>,
    hostvars: OnceLock<Value>,
}

impl Inventory {
    /// Members of a group (through children), in file order; empty for an unknown group.
    pub fn hosts_in(&self, group: &str) -> &[String] {
        self.groups.get(group).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// The inventory file that was read (`hosts` or `hosts.yml`).
    pub fn hosts_path(&self) -> &Path {
        &self.hosts_file
    }

    /// `clusters/<name>/config.yml` (it may not exist).
    pub fn config_path(&self) -> &Path {
        &self.config_file
    }

    /// The raw inventory as read (groups, hosts and their definitions with lines).
    pub fn source(&self) -> &model::Source {
        &self.source
    }

    /// Groups containing `host`, lowest precedence first (without `all`).
    pub fn groups_of(&self, host: &str) -> &[String] {
        self.base.groups_of(host)
    }

    /// Where the winning definition of `var` for `host` is (role defaults not considered).
    pub fn var_location(&self, host: &str, var: &str) -> Option<&Location> {
        self.base.def_location(host, var)
    }

    /// Variable names defined for `host` (role defaults not considered).
    pub fn var_names(&self, host: &str) -> Vec<String> {
        self.base.names(host)
    }

    /// One variable rendered for `host` (no role defaults), as minijinja data.
    pub fn resolve(&self, host: &str, var: &str) -> Result<minijinja::Value, ResolveError> {
        self.base.resolve(host, var)
    }

    /// One variable for `host` as a string (numbers and booleans converted), or None when it is
    /// undefined or cannot be rendered.
    pub fn var_str(&self, host: &str, name: &str) -> Option<String> {
        if !self.base.has(host, name) {
            return None;
        }
        let v = self.base.resolve(host, name).ok()?;
        if v.is_none() || v.is_undefined() {
            None
        } else {
            Some(v.to_string())
        }
    }

    /// Every variable of `host` rendered, with role defaults as the lowest layer (variables
    /// that use a name undefined for this host are left out, as Ansible's laziness would never
    /// evaluate them unless used; syntax errors and cycles are errors), plus
    /// `inventory_hostname`, `groups`, `group_names` and `hostvars` (every host's inventory
    /// variables, without role defaults — as in Ansible).
    pub fn vars_for(&self, host: &str, role_defaults: &Vars) -> Result<Vars, InventoryError> {
        let mut out = self.vars_without_hostvars(host, role_defaults)?;
        out.insert("hostvars".into(), self.hostvars().clone());
        Ok(out)
    }

    /// `vars_for` without `hostvars`, for a caller that shares one `hostvars` between hosts:
    /// copying every host's variables into every host's answer would cost hosts² × variables.
    pub fn vars_without_hostvars(
        &self,
        host: &str,
        role_defaults: &Vars,
    ) -> Result<Vars, InventoryError> {
        let r = self.resolver(role_defaults);
        let mut out = Vars::new();
        for name in r.names(host) {
            match r.resolve(host, &name) {
                Ok(v) => {
                    out.insert(name, to_yaml(&v));
                }
                // Ansible is lazy: a value that needs a name this host lacks (K8S_NODENAME on an
                // etcd-only host without k8s_nodename) is an error only where it is used, so it
                // is left out here and a template using it fails with "undefined".
                Err(e) if e.kind == ResolveErrorKind::Undefined => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.insert("inventory_hostname".into(), Value::String(host.to_string()));
        out.insert(
            "groups".into(),
            serde_yaml::to_value(&self.groups).unwrap_or(Value::Null),
        );
        out.insert(
            "group_names".into(),
            serde_yaml::to_value(self.groups_of(host)).unwrap_or(Value::Null),
        );
        Ok(out)
    }

    /// The lazy Jinja context of `host` with role defaults: renders only what a template uses.
    pub fn context(&self, host: &str, role_defaults: &Vars) -> minijinja::Value {
        self.resolver(role_defaults).context(host)
    }

    /// The template context of `host` for role `role` (whose defaults are `role_defaults`),
    /// as the planner renders the role's tasks and templates with: every variable lazily (the
    /// role's defaults the lowest layer), `inventory_hostname`, `groups`, `group_names`, and
    /// `hostvars`: every host's variables in the run's context (`run_context`). The role's
    /// scope is made once per run and every host's values in it are rendered once, shared with
    /// every other scope when they do not depend on role defaults. Fails, like `vars_for`, on
    /// the first variable of the host that holds Jinja and cannot be rendered (an undefined name
    /// is left to where it is used).
    pub fn role_context(
        &self,
        host: &str,
        role: &str,
        role_defaults: &Vars,
        run_defaults: &Vars,
    ) -> Result<minijinja::Value, InventoryError> {
        let scope = self.scope(role, role_defaults);
        scope.check_host(host)?;
        Ok(scope.context_with_hostvars(host, &self.run_context(run_defaults)))
    }

    /// The run's one context per host: the inventory's variables over `run_defaults` (every
    /// role's defaults, `Catalog::run_defaults`), made once per run. Templates read it as
    /// `hostvars`; the PKI reads it, so certificates name what the roles render.
    pub fn run_context(&self, run_defaults: &Vars) -> Arc<Scope> {
        // No role is named "": the run's own entry.
        self.scope("", run_defaults)
    }

    /// The scope named `name` (a role), made on first use.
    fn scope(&self, name: &str, defaults: &Vars) -> Arc<Scope> {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = || self.resolver(defaults);
        let s = scopes.entry(name.to_string()).or_insert_with(fresh);
        // Another set of defaults under the same name (a test's catalog): its own scope.
        if !same_defaults(s.defaults(), defaults) {
            *s = fresh();
        }
        s.clone()
    }

    /// A scope with `defaults` (definitions with their file:line) as the lowest layer, not
    /// kept: for checking a role's defaults where they win (`validate::role_defaults`).
    fn resolver_over(&self, defaults: &model::VarDefs) -> Arc<resolve::Scope> {
        self.base.with_defaults(defaults.clone())
    }

    fn resolver(&self, role_defaults: &Vars) -> Arc<resolve::Scope> {
        if role_defaults.is_empty() {
            return self.base.clone();
        }
        self.base.with_defaults(vars::default_defs(role_defaults))
    }

    /// Every host's inventory variables (no role defaults), computed once: Ansible's `hostvars`.
    pub fn hostvars(&self) -> &Value {
        self.hostvars.get_or_init(|| {
            let mut all = serde_yaml::Mapping::new();
            for h in &self.hosts {
                let mut m = serde_yaml::Mapping::new();
                m.insert("inventory_hostname".into(), h.clone().into());
                for name in self.base.names(h) {
                    if let Ok(v) = self.base.resolve(h, &name) {
                        m.insert(name.into(), to_yaml(&v));
                    }
                }
                all.insert(h.clone().into(), Value::Mapping(m));
            }
            Value::Mapping(all)
        })
    }
}

/// Whether a scope's defaults are `role_defaults` (same names, same values).
fn same_defaults(defs: &model::VarDefs, role_defaults: &Vars) -> bool {
    defs.len() == role_defaults.len()
        && defs.iter().zip(role_defaults).all(|((k, d), (k2, v))| k == k2 && d.value == *v)
}

fn to_yaml(v: &minijinja::Value) -> Value {
    serde_yaml::to_value(v).unwrap_or_else(|_| Value::String(v.to_string()))
}
