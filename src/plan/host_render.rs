//! Rendering one role for one host: `loop`/`item`, per-task `when`, Jinja-rendered arguments
//! typed into `action::Task`s, `notify`, and the `DaemonReload` a unit-file change calls for.

use std::rc::Rc;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, Expression, Value, context};

use super::action::{Action, FileSpec, Task};
use super::compiled::{Compiled, Names, Rendered};
use super::convert::{
    clip, missing, parse_mode, scalar, short, strip_braces, unguarded, whole_expr,
};
use super::role::Role;
use super::inputs::DeployFiles;
use super::task::{self, Arg, TaskDef};
use crate::template::is_template;

/// Where systemd reads unit files from; a file landing here, or removed from here, calls for a
/// daemon-reload.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system/",
    "/lib/systemd/system/",
    "/usr/lib/systemd/system/",
];

/// A rendering failure: where (task or template `file:line`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub origin: String,
    pub msg: String,
}

/// Everything needed to render tasks for one host.
pub struct HostRender<'a, 'c> {
    pub env: &'a Environment<'static>,
    /// Task texts compiled once for every host of the step.
    pub compiled: &'a Compiled<'c>,
    pub role: &'a Role,
    pub host: &'a str,
    /// The host's variables as a template context (see `Planner`).
    pub base: &'a Value,
    pub files: &'a dyn DeployFiles,
}

impl<'c> HostRender<'_, 'c> {
    /// Render every task of the role; all failures are returned, not just the first.
    pub fn tasks(&self) -> Result<Vec<Task>, Vec<RenderFailure>> {
        let base = self.base.clone();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for t in &self.role.tasks {
            let (tasks, errs) = self.task(t, &base);
            out.extend(tasks);
            errors.extend(errs);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        add_daemon_reload(&mut out);
        Ok(out)
    }

    /// The tasks of one role task (one per loop item), and every item's failure: a loop over
    /// five binaries missing from the store names all five, not the first.
    fn task(&self, t: &TaskDef, base: &Value) -> (Vec<Task>, Vec<RenderFailure>) {
        let fail = |msg: String| RenderFailure {
            origin: t.origin.clone(),
            msg,
        };
        let items: Vec<Option<Value>> = match &t.loop_ {
            None => vec![None],
            Some(l) => match self.value(l, base) {
                Ok(Arg::Sequence(v)) => v.iter().map(|x| Some(Value::from_serialize(x))).collect(),
                Ok(Arg::Null) => Vec::new(),
                Ok(other) => {
                    let msg = format!("`loop` must give a list, got {}", short(&other));
                    return (Vec::new(), vec![fail(msg)]);
                }
                Err(e) => return (Vec::new(), vec![fail(e)]),
            },
        };
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for item in items {
            match self.item(t, base, item) {
                Ok(tasks) => out.extend(tasks),
                Err(e) => errors.push(e),
            }
        }
        (out, errors)
    }

    /// One loop item of a task (or the task itself when it has no loop).
    fn item(&self, t: &TaskDef, base: &Value, item: Option<Value>) -> Result<Vec<Task>, RenderFailure> {
        let fail = |msg: String| RenderFailure {
            origin: t.origin.clone(),
            msg,
        };
        let ctx = match &item {
            Some(i) => context! { item => i.clone(), ..base.clone() },
            None => base.clone(),
        };
        if let Some(w) = &t.when
            && !self.when(w, &ctx).map_err(fail)?
        {
            return Ok(Vec::new());
        }
        let notify = t
            .notify
            .iter()
            .map(|n| self.string(n, &ctx, "notify"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let name = match &item {
            Some(i) => format!(
                "{} ({})",
                t.name,
                short(&serde_yaml::to_value(i).unwrap_or(Arg::Null))
            ),
            None => t.name.clone(),
        };
        Ok(self
            .actions(t, &ctx)?
            .into_iter()
            .map(|action| Task {
                name: name.clone(),
                origin: t.origin.clone(),
                action,
                notify: notify.clone(),
            })
            .collect())
    }

    /// Evaluate a `when`: an expression, a list of them (all must hold), or a bool.
    pub fn when(&self, w: &Arg, ctx: &Value) -> Result<bool, String> {
        match w {
            Arg::Bool(b) => Ok(*b),
            Arg::Sequence(v) => {
                for x in v {
                    if !self.when(x, ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Arg::String(s) => {
                let expr = strip_braces(s);
                let (e, used) = self
                    .expression(s, expr)
                    .map_err(|e| format!("when `{s}`: {}", task::detail(&e)))?;
                let v = e.eval(ctx).map_err(|err| {
                    format!("when `{s}`: {}", self.explain(&err, &used.names, ctx))
                })?;
                if v.is_undefined() {
                    return Err(format!(
                        "when `{s}`: undefined {}",
                        missing(used.names.iter(), ctx, self.env)
                    ));
                }
                unguarded(&used, ctx, self.env).map_err(|m| format!("when `{s}`: {m}"))?;
                Ok(v.is_true())
            }
            _ => Err("`when` must be an expression, a list of expressions, or a boolean".into()),
        }
    }

    /// Render an argument value: strings through Jinja; a string that is exactly `{{ expr }}`
    /// keeps the expression's native type (a list stays a list), as in Ansible.
    pub(super) fn value(&self, v: &Arg, ctx: &Value) -> Result<Arg, String> {
        Ok(match v {
            Arg::String(s) if is_template(s) => match whole_expr(s) {
                Some(expr) => {
                    let (e, used) = self
                        .expression(s, expr)
                        .map_err(|e| format!("{}: {}", clip(s), task::detail(&e)))?;
                    let val = e.eval(ctx).map_err(|err| {
                        format!("{}: {}", clip(s), self.explain(&err, &used.names, ctx))
                    })?;
                    if val.is_undefined() {
                        return Err(format!(
                            "{}: undefined {}",
                            clip(s),
                            missing(used.names.iter(), ctx, self.env)
                        ));
                    }
                    unguarded(&used, ctx, self.env).map_err(|m| format!("{}: {m}", clip(s)))?;
                    serde_yaml::to_value(&val).map_err(|e| format!("{}: {e}", clip(s)))?
                }
                None => Arg::String(self.render_text(s, ctx)?.into_string()),
            },
            Arg::Sequence(v) => Arg::Sequence(
                v.iter()
                    .map(|x| self.value(x, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Arg::Mapping(m) => {
                let mut out = serde_yaml::Mapping::new();
                for (k, x) in m {
                    out.insert(self.value(k, ctx)?, self.value(x, ctx)?);
                }
                Arg::Mapping(out)
            }
            other => other.clone(),
        })
    }

    /// Render template text `s` (not a whole `{{ expr }}`): shared by every host when it reads
    /// only what every host shares.
    fn render_text(&self, s: &str, ctx: &Value) -> Result<Rendered, String> {
        let Some((r, used)) = self.compiled.render(s, ctx) else {
            // Does not compile: the same error as ever.
            let e = self.env.template_from_str(s).err();
            return Err(format!(
                "{}: {}",
                clip(s),
                e.map_or_else(|| "cannot compile".to_string(), |e| task::detail(&e))
            ));
        };
        let r = r.map_err(|err| format!("{}: {}", clip(s), self.explain(&err, &used.names, ctx)))?;
        unguarded(&used, ctx, self.env).map_err(|m| format!("{}: {m}", clip(s)))?;
        Ok(r)
    }

    /// A string argument as the step's one allocation of that text (see `Compiled`), for the
    /// texts a plan holds: the same as `string`, without a per-host copy of a text every host
    /// shares.
    pub(super) fn text(&self, v: &Arg, ctx: &Value, field: &str) -> Result<Arc<str>, String> {
        if let Arg::String(s) = v
            && is_template(s)
            && whole_expr(s).is_none()
        {
            return Ok(match self.render_text(s, ctx)? {
                Rendered::Shared(r) => r,
                Rendered::Own(r) => self.compiled.intern_str(r),
            });
        }
        Ok(self.compiled.intern_str(self.string(v, ctx, field)?))
    }

    pub(super) fn opt_text(&self, v: &Option<Arg>, ctx: &Value, field: &str) -> Result<Option<Arc<str>>, String> {
        v.as_ref().map(|v| self.text(v, ctx, field)).transpose()
    }

    pub(super) fn string(&self, v: &Arg, ctx: &Value, field: &str) -> Result<String, String> {
        scalar(&self.value(v, ctx)?).ok_or_else(|| format!("`{field}` must be a string"))
    }

    pub(super) fn opt_string(
        &self,
        v: &Option<Arg>,
        ctx: &Value,
        field: &str,
    ) -> Result<Option<String>, String> {
        v.as_ref().map(|v| self.string(v, ctx, field)).transpose()
    }

    pub(super) fn path(&self, v: &Arg, ctx: &Value, field: &str) -> Result<String, String> {
        let p = self.string(v, ctx, field)?;
        if !p.starts_with('/') {
            return Err(format!("`{field}` must be an absolute path, got {p:?}"));
        }
        Ok(p)
    }

    pub(super) fn bool(
        &self,
        v: &Option<Arg>,
        ctx: &Value,
        field: &str,
        default: bool,
    ) -> Result<bool, String> {
        let Some(v) = v else { return Ok(default) };
        match self.value(v, ctx)? {
            Arg::Bool(b) => Ok(b),
            Arg::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => Ok(true),
                "no" | "false" | "off" | "0" | "" => Ok(false),
                o => Err(format!("`{field}` must be a boolean, got {o:?}")),
            },
            Arg::Number(n) => Ok(n.as_i64() != Some(0)),
            _ => Err(format!("`{field}` must be a boolean")),
        }
    }

    pub(super) fn mode(&self, v: &Option<Arg>, ctx: &Value, default: u32) -> Result<u32, String> {
        v.as_ref()
            .map_or(Ok(default), |v| parse_mode(&self.value(v, ctx)?))
    }

    pub(super) fn list(&self, v: &Arg, ctx: &Value, field: &str) -> Result<Vec<String>, String> {
        match self.value(v, ctx)? {
            Arg::Sequence(v) => v
                .iter()
                .map(|x| scalar(x).ok_or_else(|| format!("`{field}` entries must be strings")))
                .collect(),
            Arg::String(s) => Ok(vec![s]),
            _ => Err(format!("`{field}` must be a list")),
        }
    }

    /// The compiled expression `expr` (once per step) and the names it uses, or why it does
    /// not compile.
    fn expression(&self, src: &str, expr: &str) -> Result<(Rc<Expression<'c, 'static>>, Names), minijinja::Error> {
        match self.compiled.expression(src, expr) {
            Some(e) => Ok(e),
            None => Err(self.env.compile_expression(expr).err().unwrap_or_else(|| {
                minijinja::Error::new(ErrorKind::InvalidOperation, "cannot compile")
            })),
        }
    }

    /// A minijinja error with the variables the failing text uses but the host lacks.
    pub(super) fn explain(
        &self,
        err: &minijinja::Error,
        used: &std::collections::HashSet<String>,
        ctx: &Value,
    ) -> String {
        if err.kind() == ErrorKind::UndefinedError {
            let m = missing(used, ctx, self.env);
            return format!("undefined {m}");
        }
        task::detail(err)
    }
}

/// Insert `DaemonReload` before the first `Service` task that follows a unit-file task (or at
/// the end when no service task follows), so systemd sees the new unit before it is started.
fn add_daemon_reload(tasks: &mut Vec<Task>) {
    let Some(first_unit) = tasks.iter().position(
        |t| match &t.action {
            // A removed drop-in or unit stays loaded until the next daemon-reload, too.
            Action::File(FileSpec { path, .. }) | Action::Absent { path } => {
                UNIT_DIRS.iter().any(|d| path.starts_with(d))
            }
            _ => false,
        },
    ) else {
        return;
    };
    let reload = Task {
        name: "systemd daemon-reload".into(),
        origin: tasks[first_unit].origin.clone(),
        action: Action::DaemonReload,
        notify: Vec::new(),
    };
    let at = tasks[first_unit..]
        .iter()
        .position(|t| matches!(t.action, Action::Service { .. }))
        .map_or(tasks.len(), |i| first_unit + i);
    tasks.insert(at, reload);
}
