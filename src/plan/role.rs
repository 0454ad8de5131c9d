//! One role as loaded from the library: tasks, defaults, `meta.yml` dependencies, templates
//! (compiled into the shared environment, so syntax errors surface at load with file:line) and
//! static files.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Environment;
use serde::Deserialize;

use super::error::PlanError;
use super::library::Library;
use super::task::{self, TaskDef};
use super::load_checks::{self, RoleFiles};
use crate::inventory::Vars;

/// A loaded, validated role.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    /// The role folder as shown in messages.
    pub dir: String,
    pub tasks: Vec<TaskDef>,
    /// `defaults.yml`: lowest-precedence variables.
    pub defaults: Vars,
    /// `meta.yml` `depends`: roles that must run before this one.
    pub depends: Vec<String>,
    /// `meta.yml` `defaults_from`: roles whose defaults this role reads too (below its own), so
    /// a role that undoes another (`clean-etcd`) names the same paths without a second copy.
    pub defaults_from: Vec<String>,
    /// `meta.yml` `serial`: at most this many hosts restart this role's services at a time,
    /// each staying in its place until its role (waits included) is done. Only restarts of
    /// running services are limited: first starts run together (a new etcd cluster needs its
    /// members to start at once). For members of a quorum (etcd, kube-apiserver): 1.
    pub serial: Option<u32>,
    /// `meta.yml` `facts: [nodes]`: the role reads `k8s_nodes` (each registered node's pod
    /// subnet and address, from the cluster's API), so its step is planned again, with fresh
    /// facts, right before it runs.
    pub needs_nodes: bool,
    /// Template names relative to `templates/`.
    pub templates: BTreeSet<String>,
    /// Static files relative to `files/`, with their bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(default)]
    depends: Vec<String>,
    #[serde(default)]
    defaults_from: Vec<String>,
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    facts: Vec<Fact>,
}

/// Cluster facts a role may ask for in `meta.yml`.
#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Fact {
    Nodes,
}

impl Role {
    /// Name under which a template of this role is registered in the environment.
    pub fn template_name(&self, src: &str) -> String {
        format!("{}/templates/{src}", self.dir)
    }

    /// `meta.yml` as shown in messages.
    pub fn meta_file(&self) -> String {
        format!("{}/meta.yml", self.dir)
    }

    /// Load role `name` from `lib`, adding its templates to `env`. Returns every problem found.
    pub fn load(
        lib: &Library,
        name: &str,
        env: &mut Environment<'static>,
    ) -> Result<Role, Vec<PlanError>> {
        let dir = lib.role_display(name);
        let mut errors = Vec::new();
        let prefix = format!("roles/{name}/");
        let mut templates = BTreeSet::new();
        let mut files = BTreeMap::new();
        for (path, entry) in lib.under(&prefix) {
            let rel = &path[prefix.len()..];
            if let Some(t) = rel.strip_prefix("templates/") {
                match entry.text() {
                    Ok(text) => {
                        if let Err(e) =
                            env.add_template_owned(format!("{dir}/templates/{t}"), text.to_string())
                        {
                            errors.push(PlanError::load(
                                &entry.display,
                                e.line(),
                                format!("Jinja syntax error: {}", task::detail(&e)),
                            ));
                        }
                    }
                    Err(e) => errors.push(e),
                }
                templates.insert(t.to_string());
            } else if let Some(f) = rel.strip_prefix("files/") {
                files.insert(f.to_string(), entry.bytes.to_vec());
            }
        }
        let yaml = |file: &str| lib.get(&format!("{prefix}{file}"));
        let tasks = match yaml("tasks.yml") {
            None => {
                errors.push(PlanError::load(
                    &format!("{dir}/tasks.yml"),
                    None,
                    "missing: every role needs a tasks.yml",
                ));
                Vec::new()
            }
            Some(e) => match e.text() {
                Ok(text) => {
                    let (tasks, errs) = task::parse_tasks(&e.display, text);
                    errors.extend(errs);
                    let rf = RoleFiles {
                        templates: &templates,
                        files: &files.keys().cloned().collect(),
                    };
                    for t in &tasks {
                        if let Err(msg) = load_checks::validate(t, env, &rf) {
                            errors.push(origin_error(&t.origin, msg));
                        }
                    }
                    tasks
                }
                Err(err) => {
                    errors.push(err);
                    Vec::new()
                }
            },
        };
        let defaults: Vars = parse_opt(yaml("defaults.yml"), &mut errors).unwrap_or_default();
        let meta: Meta = parse_opt(yaml("meta.yml"), &mut errors).unwrap_or_default();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Role {
            name: name.to_string(),
            dir,
            tasks,
            defaults,
            depends: meta.depends,
            defaults_from: meta.defaults_from,
            serial: meta.serial.filter(|n| *n > 0),
            needs_nodes: meta.facts.contains(&Fact::Nodes),
            templates,
            files,
        })
    }
}

/// A load error at a task origin (`file:line`).
pub(crate) fn origin_error(origin: &str, msg: String) -> PlanError {
    match origin
        .rsplit_once(':')
        .and_then(|(f, l)| l.parse().ok().map(|l| (f, l)))
    {
        Some((file, line)) => PlanError::load(file, Some(line), msg),
        None => PlanError::load(origin, None, msg),
    }
}

fn parse_opt<T: for<'de> Deserialize<'de>>(
    entry: Option<&super::library::Entry>,
    errors: &mut Vec<PlanError>,
) -> Option<T> {
    let e = entry?;
    let text = match e.text() {
        Ok(t) => t,
        Err(err) => {
            errors.push(err);
            return None;
        }
    };
    match serde_yaml::from_str::<Option<T>>(text) {
        Ok(v) => v,
        Err(err) => {
            errors.push(PlanError::yaml(&e.display, &err));
            None
        }
    }
}
