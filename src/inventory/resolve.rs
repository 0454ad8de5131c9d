//! Lazy, per-host evaluation of variables whose values are Jinja templates, as Ansible does:
//! a value is rendered only when used, with the host's own variables plus `inventory_hostname`,
//! `groups`, `group_names` and `hostvars` in scope; a value used by another is rendered first
//! (recursively). A reference cycle is an error naming the chain. A value that is a single
//! `{{ expr }}` keeps its type (a list stays a list), as Ansible's templating does.
//!
//! One file because the resolver, the lazy Jinja object it hands templates and the error
//! naming a cycle's chain are one mechanism: each calls into the others while one value renders.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, Value as J, ValueKind};
use minijinja::{Environment, ErrorKind};

use super::Value;
use super::error::{InventoryError, Location};
use super::limits;
use super::vars::Layers;

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
    /// Variables being rendered on this thread (resolver id, host, var): finds cycles.
    static STACK: RefCell<Vec<(usize, String, String)>> = const { RefCell::new(Vec::new()) };
    /// The error of a nested variable that made the outer template fail: reported instead of
    /// the outer "undefined value", since it names the real cause.
    static INNER: RefCell<Option<ResolveError>> = const { RefCell::new(None) };
}

/// Names Jinja provides besides the host's variables.
pub const MAGIC: &[&str] = &[
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
];

/// Every host's merged (unrendered) variables and the group map, rendered on demand.
pub struct Resolver {
    env: Environment<'static>,
    hosts: IndexMap<String, Layers>,
    groups: J,
    group_names: HashMap<String, Vec<String>>,
    /// Rendered templates by host, then variable (plain values are converted when asked),
    /// failures included: a template that fails slowly (out of steps, too big) fails once.
    /// Cycles are not kept: their message depends on where the walk entered them.
    cache: Mutex<HashMap<String, Rendered>>,
}

/// One host's rendered variables.
type Rendered = HashMap<String, Result<J, ResolveError>>;

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Resolver {
    /// `hosts`: host → its definitions; `groups`: group → members; `group_names`: host → its groups.
    pub fn new(
        hosts: IndexMap<String, Layers>,
        groups: &IndexMap<String, Vec<String>>,
        group_names: HashMap<String, Vec<String>>,
    ) -> Arc<Resolver> {
        let mut env = crate::template::environment();
        env.set_fuel(Some(limits::MAX_RENDER_STEPS));
        Arc::new(Resolver {
            env,
            hosts,
            groups: J::from_serialize(groups),
            group_names,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Whether `var` is defined for `host` (magic names included).
    pub fn has(&self, host: &str, var: &str) -> bool {
        MAGIC.contains(&var) || self.hosts.get(host).is_some_and(|v| v.contains_key(var))
    }

    /// The host's variable names, in precedence-merge order.
    pub fn names(&self, host: &str) -> Vec<String> {
        self.hosts.get(host).map(Layers::names).unwrap_or_default()
    }

    /// Where the winning definition of `var` for `host` was written.
    pub fn def_location(&self, host: &str, var: &str) -> Option<&Location> {
        self.hosts.get(host)?.get(var).map(|d| &d.at)
    }

    /// The Jinja context of one host: its variables (lazy) plus the magic names.
    pub fn context(self: &Arc<Self>, host: &str) -> J {
        J::from_object(HostCtx {
            r: self.clone(),
            host: host.to_string(),
        })
    }

    /// Render one variable for one host.
    pub fn resolve(self: &Arc<Self>, host: &str, var: &str) -> Result<J, ResolveError> {
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .and_then(|h| h.get(var))
        {
            return v.clone();
        }
        let Some(def) = self.hosts.get(host).and_then(|h| h.get(var)) else {
            return Err(ResolveError {
                host: host.into(),
                var: var.into(),
                at: Location::new("inventory", 0),
                msg: format!("{var} is not defined"),
                fix: format!("define {var} in config.yml or the hosts file"),
                kind: ResolveErrorKind::Undefined,
            });
        };
        if !has_template(&def.value) {
            return Ok(J::from_serialize(&def.value));
        }
        let key = (self.id(), host.to_string(), var.to_string());
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
        STACK.with(|s| s.borrow_mut().push(key));
        let out = self.render_value(host, var, &def.at, &def.value);
        STACK.with(|s| s.borrow_mut().pop());
        if !matches!(&out, Err(e) if e.kind == ResolveErrorKind::Cycle) {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(host.to_string())
                .or_default()
                .insert(var.to_string(), out.clone());
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
        INNER.with(|i| i.borrow_mut().take());
        let result = match single_expression(s) {
            Some(expr) => self
                .env
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
            None => self.env.render_str(s, &ctx).map(J::from),
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
        let env: &Environment<'_> = &self.env;
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

#[derive(Debug)]
struct HostCtx {
    r: Arc<Resolver>,
    host: String,
}

impl Object for HostCtx {
    fn get_value(self: &Arc<Self>, key: &J) -> Option<J> {
        let k = key.as_str()?;
        match k {
            "inventory_hostname" => Some(J::from(self.host.clone())),
            "inventory_hostname_short" => Some(J::from(
                self.host.split('.').next().unwrap_or("").to_string(),
            )),
            "groups" => Some(self.r.groups.clone()),
            "group_names" => Some(J::from_serialize(
                self.r
                    .group_names
                    .get(&self.host)
                    .cloned()
                    .unwrap_or_default(),
            )),
            "hostvars" => Some(J::from_object(HostVars { r: self.r.clone() })),
            _ if self.r.has(&self.host, k) => match self.r.resolve(&self.host, k) {
                Ok(v) => Some(v),
                Err(e) => {
                    INNER.with(|i| *i.borrow_mut() = Some(e));
                    None
                }
            },
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<J> = MAGIC.iter().map(|m| J::from(*m)).collect();
        keys.extend(self.r.names(&self.host).into_iter().map(J::from));
        Enumerator::Values(keys)
    }
}

#[derive(Debug)]
struct HostVars {
    r: Arc<Resolver>,
}

impl Object for HostVars {
    fn get_value(self: &Arc<Self>, key: &J) -> Option<J> {
        let h = key.as_str()?;
        self.r.hosts.contains_key(h).then(|| self.r.context(h))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.r.hosts.keys().map(|h| J::from(h.clone())).collect())
    }
}
