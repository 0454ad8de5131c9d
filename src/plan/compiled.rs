//! Role texts compiled once per step: every host (and every loop item) renders the same Jinja
//! of a task's arguments and `when`s, so parsing it and listing the names it uses per host
//! made a step cost hosts × tasks parses. Here each distinct text is parsed once, and its
//! names listed once; a text that does not compile is not kept (the caller compiles it again
//! to report the error as before). A template text that reads only what every host of the
//! step shares (`groups`, `hostvars`: e.g. every node's name for /etc/hosts) renders the same
//! for every host: it is rendered once per step, so a text that walks every host costs hosts,
//! not hosts². The plan holds such a render, and every command text and file content, once per
//! step (interned, one allocation shared by the hosts whose text is the same): copied into each
//! host's plan, a text that lists every node made the plan's memory hosts × nodes (2 GB at
//! 5000 hosts).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use minijinja::{Environment, Expression, Value};

use super::convert::Used;

/// The names a text uses, as `undeclared_variables(false)` lists them, and whether it guards
/// them.
pub type Names = Rc<Used>;

thread_local! {
    /// Task texts compiled on this thread (see `compile_count`).
    static COMPILES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Task texts (arguments, `when`s) compiled so far on this thread: the same for any number of
/// hosts (`tests/scale_linear.rs`).
pub fn compile_count() -> u64 {
    COMPILES.with(|c| c.get())
}

fn counted() {
    COMPILES.with(|c| c.set(c.get() + 1));
}

/// Compiled task texts of one planning run.
pub struct Compiled<'env> {
    env: &'env Environment<'static>,
    /// By the text the expression came from (`{{ x }}` or a `when`'s `x`).
    exprs: RefCell<HashMap<String, (Rc<Expression<'env, 'static>>, Names)>>,
    /// Template texts, each a template named by its own text (the catalog's environment is
    /// shared and read-only; this one holds nothing else).
    texts: RefCell<Environment<'static>>,
    text_names: RefCell<HashMap<String, Names>>,
    /// Renders of texts that read only `SHARED` names, by text.
    shared_renders: RefCell<HashMap<String, Arc<str>>>,
    /// Command texts and file contents the step's plan holds, each once.
    strs: RefCell<HashSet<Arc<str>>>,
    bytes: RefCell<HashSet<Arc<[u8]>>>,
}

/// A rendered template text.
pub enum Rendered {
    /// The same for every host of the step (it reads only `SHARED` names): rendered once.
    Shared(Arc<str>),
    /// This host's.
    Own(String),
}

impl Rendered {
    pub fn into_string(self) -> String {
        match self {
            Rendered::Shared(s) => s.to_string(),
            Rendered::Own(s) => s,
        }
    }
}

/// The names whose value is the same in every host's context during one step.
const SHARED: &[&str] = &["groups", "hostvars"];

impl<'env> Compiled<'env> {
    pub fn new(env: &'env Environment<'static>) -> Self {
        Compiled {
            env,
            exprs: RefCell::default(),
            texts: RefCell::new(crate::template::environment()),
            text_names: RefCell::default(),
            shared_renders: RefCell::default(),
            strs: RefCell::default(),
            bytes: RefCell::default(),
        }
    }

    /// `s` as the step's one allocation of that text.
    pub fn intern_str(&self, s: String) -> Arc<str> {
        let mut set = self.strs.borrow_mut();
        if let Some(a) = set.get(s.as_str()) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        set.insert(a.clone());
        a
    }

    /// `b` as the step's one allocation of those bytes.
    pub fn intern_bytes(&self, b: Vec<u8>) -> Arc<[u8]> {
        let mut set = self.bytes.borrow_mut();
        if let Some(a) = set.get(b.as_slice()) {
            return a.clone();
        }
        let a: Arc<[u8]> = b.into();
        set.insert(a.clone());
        a
    }

    /// The expression `expr` compiled, and the names it uses (`src`: the text it came from,
    /// which says whether they are guarded); None when it does not compile.
    pub fn expression(&self, src: &str, expr: &str) -> Option<(Rc<Expression<'env, 'static>>, Names)> {
        if let Some(e) = self.exprs.borrow().get(src) {
            return Some(e.clone());
        }
        counted();
        let e = self.env.compile_expression_owned(expr.to_string()).ok()?;
        let names = Rc::new(Used::new(src, e.undeclared_variables(false)));
        let entry = (Rc::new(e), names);
        self.exprs.borrow_mut().insert(src.to_string(), entry.clone());
        Some(entry)
    }

    /// Render template text `s` with `ctx`, and the names it uses; None when it does not
    /// compile.
    pub fn render(&self, s: &str, ctx: &Value) -> Option<(Result<Rendered, minijinja::Error>, Names)> {
        let known = self.text_names.borrow().get(s).cloned();
        let names = match known {
            Some(n) => n,
            None => {
                counted();
                self.texts.borrow_mut().add_template_owned(s.to_string(), s.to_string()).ok()?;
                let texts = self.texts.borrow();
                let names = Rc::new(Used::new(s, texts.get_template(s).ok()?.undeclared_variables(false)));
                self.text_names.borrow_mut().insert(s.to_string(), names.clone());
                names
            }
        };
        let host_independent = names.names.iter().all(|n| SHARED.contains(&n.as_str()));
        if host_independent && let Some(out) = self.shared_renders.borrow().get(s) {
            return Some((Ok(Rendered::Shared(out.clone())), names));
        }
        let texts = self.texts.borrow();
        let t = texts.get_template(s).ok()?;
        let out = match t.render(ctx) {
            Ok(r) if host_independent => {
                let r = self.intern_str(r);
                self.shared_renders.borrow_mut().insert(s.to_string(), r.clone());
                Ok(Rendered::Shared(r))
            }
            Ok(r) => Ok(Rendered::Own(r)),
            Err(e) => Err(e),
        };
        Some((out, names))
    }
}
