//! Lazy, per-host evaluation of variables whose values are Jinja templates, as Ansible does:
//! a value is rendered only when used, with the host's own variables plus `inventory_hostname`,
//! `groups`, `group_names` and `hostvars` in scope; a value used by another is rendered first
//! (recursively). A reference cycle is an error naming the chain. A value that is a single
//! `{{ expr }}` keeps its type (a list stays a list), as Ansible's templating does.
//!
//! Built once per inventory ([`Resolver`]) and linear in hosts: every host's definitions stay in
//! their layers (config.yml, `[all:vars]`, each group's vars, the host's vars, `-e`) and a
//! host's variable is looked up through its chain of layers, never copied per host. A
//! [`Scope`] adds one set of role defaults as the lowest layer; the inventory's own scope has
//! none. A value is rendered once per host: when its rendering read only inventory definitions
//! (no role default, and no name the host lacks, which a role default could supply), it is the
//! same in every scope and kept in the resolver's shared cache; otherwise in its scope's cache.
//!
//! One file because the resolver, the lazy Jinja object it hands templates and the error
//! naming a cycle's chain are one mechanism: each calls into the others while one value renders.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::{IndexMap, IndexSet};
use minijinja::value::{Enumerator, Object, Value as J, ValueKind};
use minijinja::{Environment, ErrorKind};

use super::Value;
use super::error::{InventoryError, Location};
use super::limits;
use super::model::{VarDef, VarDefs};

/// Why one variable could not be evaluated for one host.
#[derive(Debug, Clone)]
pub struct ResolveError {
    pub host: String,
    pub var: String,
    pub at: Location,
    pub msg: String,
    pub fix: String,
    pub kind: ResolveErrorKind,
}

/// What kind of failure a `ResolveError` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveErrorKind {
    /// A Jinja syntax error.
    Syntax,
    /// The template uses a variable that is not defined for the host.
    Undefined,
    /// Variables refer to each other in a cycle.
    Cycle,
    /// Anything else (bad index, failing filter...).
    Render,
}

impl From<ResolveError> for InventoryError {
    fn from(e: ResolveError) -> Self {
        InventoryError::Template {
            at: e.at,
            var: e.var,
            host: e.host,
            msg: e.msg,
            fix: e.fix,
        }
    }
}

thread_local! {
    /// Variables being rendered on this thread (scope id, host, var): finds cycles.
    static STACK: RefCell<Vec<(usize, usize, String)>> = const { RefCell::new(Vec::new()) };
    /// The error of a nested variable that made the outer template fail: reported instead of
    /// the outer "undefined value", since it names the real cause.
    static INNER: RefCell<Option<ResolveError>> = const { RefCell::new(None) };
    /// One flag per value being rendered: set when the rendering read something that depends on
    /// the scope's role defaults (so the value may differ in another scope).
    static SCOPED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

/// The value being rendered depends on its scope.
fn mark_scoped() {
    SCOPED.with(|s| {
        if let Some(top) = s.borrow_mut().last_mut() {
            *top = true;
        }
    });
}

/// Names Jinja provides besides the host's variables.
pub const MAGIC: &[&str] = &[
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
];

thread_local! {
    /// Variable values rendered on this thread (see `render_count`).
    static RENDERS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Variable values rendered so far on this thread, by every resolver (one variable for one
/// host in one scope; a value taken from a cache does not count): what shows, independently
/// of the machine, that resolving is linear in hosts (`tests/scale_linear.rs`).
pub fn render_count() -> u64 {
    RENDERS.with(|r| r.get())
}

thread_local! {
    /// `hostvars[host]` lookups on this thread (see `hostvars_lookups`).
    static HOSTVARS_LOOKUPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `hostvars[host]` lookups made so far on this thread: a role text that walks every host
/// (every node name in /etc/hosts) makes hosts lookups, hosts² if it is rendered per host
/// (`tests/scale_linear.rs`).
pub fn hostvars_lookups() -> u64 {
    HOSTVARS_LOOKUPS.with(|c| c.get())
}

/// Every host's definitions, as layers: `layers[chain[i]]`, lowest precedence first.
struct Defs {
    layers: Vec<VarDefs>,
    /// Per layer, the keys whose value holds Jinja (only those can fail to render).
    templated: Vec<Vec<usize>>,
    /// host → its chain of layers and its groups.
    hosts: IndexMap<String, HostEntry>,
}

struct HostEntry {
    /// Layer indices, lowest precedence first.
    chain: Vec<usize>,
    /// The host's groups, lowest precedence first (without `all`).
    groups: Vec<String>,
}

impl Defs {
    /// The winning inventory definition of `var` for host number `h`.
    fn get(&self, h: usize, var: &str) -> Option<&VarDef> {
        let (_, e) = self.hosts.get_index(h)?;
        e.chain.iter().rev().find_map(|&l| self.layers[l].get(var))
    }
}

fn templated_keys(defs: &VarDefs) -> Vec<usize> {
    defs.values().enumerate().filter(|(_, d)| has_template(&d.value)).map(|(i, _)| i).collect()
}

/// Rendered values per host (by host index), then by name, failures included: a template
/// that fails slowly (out of steps, too big) fails once. Plain values are not kept (converted
/// when asked), nor cycles (their message depends on where the walk entered them).
struct Cache(Mutex<Vec<HashMap<Box<str>, Result<J, ResolveError>>>>);

impl Cache {
    fn new(hosts: usize) -> Cache {
        Cache(Mutex::new((0..hosts).map(|_| HashMap::new()).collect()))
    }

    fn get(&self, h: usize, var: &str) -> Option<Result<J, ResolveError>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(h)?.get(var).cloned()
    }

    /// Rendered already, successfully.
    fn renders(&self, h: usize, var: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(h).is_some_and(|m| matches!(m.get(var), Some(Ok(_))))
    }

    fn put(&self, h: usize, var: &str, v: Result<J, ResolveError>) {
        if let Some(m) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get_mut(h) {
            m.insert(var.into(), v);
        }
    }
}

/// Every host's (unrendered) definitions and the group map, rendered on demand.
pub struct Resolver {
    env: Environment<'static>,
    defs: Defs,
    groups: J,
    /// Values that are the same in every scope (their rendering read no role default).
    shared: Cache,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("hosts", &self.defs.hosts.len()).finish()
    }
}

/// What the resolver is built from: the layers and, per host, its chain through them.
pub struct Layers {
    /// Definition layers (config.yml, `[all:vars]`, group vars, host vars, `-e`).
    pub layers: Vec<VarDefs>,
    /// host → (its layer indices lowest precedence first, its groups lowest first).
    pub hosts: IndexMap<String, (Vec<usize>, Vec<String>)>,
}

impl Resolver {
    /// The resolver of one inventory, and its own scope (no role defaults).
    pub fn build(layers: Layers, groups: &IndexMap<String, Vec<String>>) -> Arc<Scope> {
        let templated = layers.layers.iter().map(templated_keys).collect();
        let hosts: IndexMap<String, HostEntry> = layers
            .hosts
            .into_iter()
            .map(|(h, (chain, groups))| (h, HostEntry { chain, groups }))
            .collect();
        let mut env = crate::template::environment();
        env.set_fuel(Some(limits::MAX_RENDER_STEPS));
        let r = Arc::new(Resolver {
            env,
            shared: Cache::new(hosts.len()),
            defs: Defs { layers: layers.layers, templated, hosts },
            groups: J::from_serialize(groups),
        });
        Scope::new(r, VarDefs::new())
    }
}

static SCOPE_IDS: AtomicUsize = AtomicUsize::new(1);

/// The inventory's variables seen with one set of role defaults as the lowest layer (or none:
/// the inventory's own scope, which `hostvars`, validation and connections use).
pub struct Scope {
    r: Arc<Resolver>,
    id: usize,
    defaults: VarDefs,
    defaults_templated: Vec<usize>,
    /// Values of this scope that depend on its defaults.
    cache: Cache,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("id", &self.id).field("defaults", &self.defaults.len()).finish()
    }
}

impl Scope {
    fn new(r: Arc<Resolver>, defaults: VarDefs) -> Arc<Scope> {
        Arc::new(Scope {
            defaults_templated: templated_keys(&defaults),
            cache: Cache::new(r.defs.hosts.len()),
            r,
            id: SCOPE_IDS.fetch_add(1, Ordering::Relaxed),
            defaults,
        })
    }

    /// The same inventory with `defaults` (role defaults) as the lowest layer; shares every
    /// value that does not depend on them.
    pub fn with_defaults(&self, defaults: VarDefs) -> Arc<Scope> {
        Scope::new(self.r.clone(), defaults)
    }

    /// This scope's role defaults.
    pub fn defaults(&self) -> &VarDefs {
        &self.defaults
    }

    fn index(&self, host: &str) -> Option<usize> {
        self.r.defs.hosts.get_index_of(host)
    }

    /// The winning definition of `var` for host number `h`, and whether it is a role default.
    /// A host not in the inventory has none.
    fn def(&self, h: usize, var: &str) -> Option<(&VarDef, bool)> {
        if h >= self.r.defs.hosts.len() {
            return None;
        }
        match self.r.defs.get(h, var) {
            Some(d) => Some((d, false)),
            None => self.defaults.get(var).map(|d| (d, true)),
        }
    }

    /// Whether `var` is defined for `host` (magic names included).
    pub fn has(&self, host: &str, var: &str) -> bool {
        MAGIC.contains(&var) || self.index(host).is_some_and(|h| self.def(h, var).is_some())
    }

    /// The host's variable names, in precedence-merge order (defaults first, then each layer's
    /// new names, lowest layer first).
    pub fn names(&self, host: &str) -> Vec<String> {
        let Some(h) = self.index(host) else { return Vec::new() };
        let mut out: IndexSet<&str> = self.defaults.keys().map(String::as_str).collect();
        let (_, e) = self.r.defs.hosts.get_index(h).expect("indexed");
        for &l in &e.chain {
            out.extend(self.r.defs.layers[l].keys().map(String::as_str));
        }
        out.into_iter().map(String::from).collect()
    }

    /// The host's groups, lowest precedence first (without `all`).
    pub fn groups_of(&self, host: &str) -> &[String] {
        self.r.defs.hosts.get(host).map(|e| e.groups.as_slice()).unwrap_or(&[])
    }

    /// Where the winning definition of `var` for `host` was written.
    pub fn def_location(&self, host: &str, var: &str) -> Option<&Location> {
        self.def(self.index(host)?, var).map(|(d, _)| &d.at)
    }

    /// The Jinja context of one host: its variables (lazy) plus the magic names, `hostvars`
    /// seen in this scope (as while rendering a variable).
    pub fn context(self: &Arc<Self>, host: &str) -> J {
        self.context_with_hostvars(host, self)
    }

    /// The Jinja context of one host whose `hostvars` are seen in `hostvars` (a role's
    /// templates see every host's inventory variables without role defaults, as in Ansible).
    pub fn context_with_hostvars(self: &Arc<Self>, host: &str, hostvars: &Arc<Scope>) -> J {
        J::from_object(HostCtx {
            scope: self.clone(),
            hostvars: hostvars.clone(),
            h: self.index(host).unwrap_or(usize::MAX),
            name: host.to_string(),
        })
    }

    /// Render one variable for one host.
    pub fn resolve(self: &Arc<Self>, host: &str, var: &str) -> Result<J, ResolveError> {
        match self.index(host) {
            Some(h) => self.resolve_at(h, host, var),
            None => Err(undefined(host, var)),
        }
    }

    /// Every variable of `host` that holds Jinja, rendered in merge order: the first error
    /// that is not an undefined name (Ansible's laziness leaves those to where they are used).
    pub fn check_host(self: &Arc<Self>, host: &str) -> Result<(), ResolveError> {
        let Some(h) = self.index(host) else { return Ok(()) };
        let (_, e) = self.r.defs.hosts.get_index(h).expect("indexed");
        let layers = &self.r.defs.layers;
        // A name's place in the merge is its first definition, lowest layer first.
        let place = |var: &str| -> (usize, usize) {
            if let Some(i) = self.defaults.get_index_of(var) {
                return (0, i);
            }
            e.chain
                .iter()
                .enumerate()
                .find_map(|(rank, &l)| layers[l].get_index_of(var).map(|i| (rank + 1, i)))
                .unwrap_or((usize::MAX, 0))
        };
        let candidates = self.defaults_templated.iter().map(|&i| self.defaults.get_index(i).expect("indexed").0).chain(
            e.chain.iter().flat_map(|&l| self.r.defs.templated[l].iter().map(move |&i| layers[l].get_index(i).expect("indexed").0)),
        );
        let mut names: Vec<((usize, usize), &str)> = Vec::new();
        for var in candidates {
            // Rendered already: it renders.
            if self.r.shared.renders(h, var) || self.cache.renders(h, var) {
                continue;
            }
            if names.iter().all(|(_, n)| *n != var)
                && self.def(h, var).is_some_and(|(d, _)| has_template(&d.value))
            {
                names.push((place(var), var));
            }
        }
        names.sort();
        for (_, var) in names {
            match self.resolve_at(h, host, var) {
                Err(e) if e.kind != ResolveErrorKind::Undefined => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn resolve_at(self: &Arc<Self>, h: usize, host: &str, var: &str) -> Result<J, ResolveError> {
        if let Some(v) = self.r.shared.get(h, var) {
            return v;
        }
        if let Some(v) = self.cache.get(h, var) {
            mark_scoped();
            return v;
        }
        let Some((def, from_defaults)) = self.def(h, var) else {
            return Err(undefined(host, var));
        };
        if !has_template(&def.value) {
            if from_defaults {
                mark_scoped();
            }
            return Ok(J::from_serialize(&def.value));
        }
        let key = (self.id, h, var.to_string());
        let cycle = STACK.with(|s| {
            let s = s.borrow();
            s.iter().position(|e| *e == key).map(|pos| {
                let mut chain: Vec<String> = s[pos..].iter().map(|e| e.2.clone()).collect();
                chain.push(var.to_string());
                chain
            })
        });
        if let Some(chain) = cycle {
            return Err(ResolveError {
                host: host.into(),
                var: var.into(),
                at: def.at.clone(),
                msg: format!(
                    "variables refer to each other in a cycle: {}",
                    chain.join(" -> ")
                ),
                fix: "give one of these variables a plain value".into(),
                kind: ResolveErrorKind::Cycle,
            });
        }
        RENDERS.with(|r| r.set(r.get() + 1));
        STACK.with(|s| s.borrow_mut().push(key));
        SCOPED.with(|s| s.borrow_mut().push(from_defaults));
        let out = self.render_value(host, var, &def.at, &def.value);
        let scoped = SCOPED.with(|s| s.borrow_mut().pop()).unwrap_or(true);
        STACK.with(|s| s.borrow_mut().pop());
        if scoped {
            mark_scoped();
        }
        if !matches!(&out, Err(e) if e.kind == ResolveErrorKind::Cycle) {
            if scoped { &self.cache } else { &self.r.shared }.put(h, var, out.clone());
        }
        out
    }

    fn render_value(
        self: &Arc<Self>,
        host: &str,
        var: &str,
        at: &Location,
        v: &Value,
    ) -> Result<J, ResolveError> {
        match v {
            Value::String(s) if crate::template::is_template(s) => {
                self.render_str(host, var, at, s)
            }
            Value::Sequence(items) => items
                .iter()
                .map(|i| self.render_value(host, var, at, i))
                .collect::<Result<Vec<J>, _>>()
                .map(J::from),
            Value::Mapping(m) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, val) in m {
                    out.push((J::from_serialize(k), self.render_value(host, var, at, val)?));
                }
                Ok(J::from_iter(out))
            }
            other => Ok(J::from_serialize(other)),
        }
    }

    fn render_str(
        self: &Arc<Self>,
        host: &str,
        var: &str,
        at: &Location,
        s: &str,
    ) -> Result<J, ResolveError> {
        let normalized = crate::template::normalize(s);
        let s: &str = &normalized;
        let ctx = self.context(host);
        let env = &self.r.env;
        INNER.with(|i| i.borrow_mut().take());
        let result = match single_expression(s) {
            Some(expr) => env
                .compile_expression(expr)
                .and_then(|e| e.eval(&ctx))
                .and_then(|v| {
                    if v.is_undefined() {
                        Err(minijinja::Error::new(
                            ErrorKind::UndefinedError,
                            "undefined value",
                        ))
                    } else {
                        Ok(v)
                    }
                }),
            None => env.render_str(s, &ctx).map(J::from),
        };
        match result {
            Ok(v) => {
                INNER.with(|i| i.borrow_mut().take());
                if size_over(&v, limits::MAX_VALUE_BYTES) {
                    return Err(ResolveError {
                        host: host.into(),
                        var: var.into(),
                        at: at.clone(),
                        msg: format!(
                            "the value renders to more than {} MiB",
                            limits::MAX_VALUE_BYTES >> 20
                        ),
                        fix: "check the templates it uses: one that repeats another (x + x) \
                              doubles with every level"
                            .into(),
                        kind: ResolveErrorKind::Render,
                    });
                }
                Ok(v)
            }
            Err(e) => {
                if let Some(inner) = INNER.with(|i| i.borrow_mut().take()) {
                    return Err(inner);
                }
                Err(self.describe(host, var, at, s, &e))
            }
        }
    }

    fn describe(
        &self,
        host: &str,
        var: &str,
        at: &Location,
        s: &str,
        e: &minijinja::Error,
    ) -> ResolveError {
        let mk = |msg: String, fix: String, kind| ResolveError {
            host: host.into(),
            var: var.into(),
            at: at.clone(),
            msg,
            fix,
            kind,
        };
        if e.kind() == ErrorKind::OutOfFuel {
            return mk(
                format!(
                    "the template takes more than {} steps to render",
                    limits::MAX_RENDER_STEPS
                ),
                "check its loops (a loop over a huge range, or loops nested too deep)".into(),
                ResolveErrorKind::Render,
            );
        }
        if e.kind() == ErrorKind::SyntaxError {
            return mk(
                format!("Jinja syntax error in {s:?}: {}", detail(e)),
                "fix the template syntax".into(),
                ResolveErrorKind::Syntax,
            );
        }
        let env: &Environment<'_> = &self.r.env;
        let missing: Vec<String> = match env.template_from_str(s) {
            Ok(t) => {
                let mut m: Vec<String> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|n| !self.has(host, n))
                    .collect();
                m.sort();
                m
            }
            Err(_) => Vec::new(),
        };
        if !missing.is_empty() {
            let names = missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ");
            return mk(
                format!("template {s:?} uses undefined variable {names}"),
                format!(
                    "define {} in config.yml or [all:vars], or correct the name",
                    missing.join(", ")
                ),
                ResolveErrorKind::Undefined,
            );
        }
        let kind = if e.kind() == ErrorKind::UndefinedError {
            ResolveErrorKind::Undefined
        } else {
            ResolveErrorKind::Render
        };
        mk(
            format!("cannot render {s:?}: {}", detail(e)),
            "check the names and indexes the template uses".into(),
            kind,
        )
    }
}

fn undefined(host: &str, var: &str) -> ResolveError {
    ResolveError {
        host: host.into(),
        var: var.into(),
        at: Location::new("inventory", 0),
        msg: format!("{var} is not defined"),
        fix: format!("define {var} in config.yml or the hosts file"),
        kind: ResolveErrorKind::Undefined,
    }
}

fn detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Whether the rendered value `v` is bigger than `limit` bytes (strings count their bytes,
/// each list or map item 8 more); stops counting once over.
fn size_over(v: &J, limit: usize) -> bool {
    fn walk(v: &J, left: &mut usize) -> bool {
        if let Some(s) = v.as_str() {
            return match left.checked_sub(s.len()) {
                Some(l) => {
                    *left = l;
                    false
                }
                None => true,
            };
        }
        // The lazy host objects (`hostvars`, a host's context) are not data: not walked.
        let lazy = v.downcast_object_ref::<HostCtx>().is_some()
            || v.downcast_object_ref::<HostVars>().is_some();
        if !lazy
            // Iterable: `a + b` of two lists is a lazy chain, walked like a list.
            && matches!(v.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable)
            && let Ok(items) = v.try_iter()
        {
            for k in items {
                let Some(l) = left.checked_sub(8) else {
                    return true;
                };
                *left = l;
                let item = if v.kind() == ValueKind::Map {
                    v.get_item(&k).unwrap_or_default()
                } else {
                    k
                };
                if walk(&item, left) {
                    return true;
                }
            }
        }
        false
    }
    let mut left = limit;
    walk(v, &mut left)
}

/// Whether rendering can change `v` (a string with Jinja markup, at any depth).
pub(super) fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => crate::template::is_template(s),
        Value::Sequence(items) => items.iter().any(has_template),
        Value::Mapping(m) => m.values().any(has_template),
        Value::Tagged(t) => has_template(&t.value),
        _ => false,
    }
}

/// `{{ expr }}` alone (whitespace control allowed): the expression, to evaluate with its type.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    Some(inner.strip_suffix('-').unwrap_or(inner))
}

/// One host's variables as Jinja sees them: looked up (and rendered) when used.
#[derive(Debug)]
struct HostCtx {
    scope: Arc<Scope>,
    /// The scope `hostvars` reads.
    hostvars: Arc<Scope>,
    /// The host's index (`usize::MAX`: not in the inventory).
    h: usize,
    name: String,
}

impl Object for HostCtx {
    fn get_value(self: &Arc<Self>, key: &J) -> Option<J> {
        let k = key.as_str()?;
        let s = &self.scope;
        match k {
            "inventory_hostname" => Some(J::from(self.name.clone())),
            "inventory_hostname_short" => Some(J::from(
                self.name.split('.').next().unwrap_or("").to_string(),
            )),
            "groups" => Some(s.r.groups.clone()),
            "group_names" => Some(J::from_serialize(s.groups_of(&self.name))),
            "hostvars" => Some(J::from_object(HostVars { scope: self.hostvars.clone() })),
            _ => {
                if let Some(Ok(v)) = s.r.shared.get(self.h, k) {
                    return Some(v);
                }
                if s.def(self.h, k).is_none() {
                    // Absent here; a role default elsewhere could define it.
                    mark_scoped();
                    return None;
                }
                match s.resolve_at(self.h, &self.name, k) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        INNER.with(|i| *i.borrow_mut() = Some(e));
                        None
                    }
                }
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        mark_scoped();
        let mut keys: Vec<J> = MAGIC.iter().map(|m| J::from(*m)).collect();
        keys.extend(self.scope.names(&self.name).into_iter().map(J::from));
        Enumerator::Values(keys)
    }
}

#[derive(Debug)]
struct HostVars {
    scope: Arc<Scope>,
}

impl Object for HostVars {
    fn get_value(self: &Arc<Self>, key: &J) -> Option<J> {
        let h = key.as_str()?;
        HOSTVARS_LOOKUPS.with(|c| c.set(c.get() + 1));
        self.scope.index(h).is_some().then(|| self.scope.context(h))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.scope.r.defs.hosts.keys().map(|h| J::from(h.clone())).collect())
    }
}
