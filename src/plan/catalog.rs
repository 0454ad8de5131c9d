//! Every role and playbook loaded and validated at once (so `ezk check` reports all problems in
//! one go), with the shared template environment holding every role template.

use std::collections::BTreeMap;

use minijinja::Environment;

use super::dag;
use super::error::PlanError;
use super::library::Library;
use super::playbook::{Body, Playbook};
use super::role::{Role, origin_error};
use super::load_checks;

/// Loaded roles and playbooks.
pub struct Catalog {
    pub roles: BTreeMap<String, Role>,
    /// Sorted by step number, then name.
    pub playbooks: Vec<Playbook>,
    env: Environment<'static>,
    run_defaults: crate::inventory::Vars,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("roles", &self.roles.keys())
            .field("steps", &self.steps())
            .finish()
    }
}

impl Catalog {
    /// Load and validate everything in `lib`; every error found is returned (as `Many`).
    pub fn load(lib: &Library) -> Result<Catalog, PlanError> {
        let mut env = crate::template::environment();
        let mut errors = Vec::new();
        let mut roles = BTreeMap::new();
        for name in lib.role_names() {
            match Role::load(lib, &name, &mut env) {
                Ok(r) => {
                    roles.insert(name, r);
                }
                Err(e) => errors.extend(e),
            }
        }
        let mut playbooks = Vec::new();
        for (path, entry) in lib.under("playbooks/") {
            let Some(stem) = path["playbooks/".len()..].strip_suffix(".yml") else {
                continue;
            };
            match entry
                .text()
                .and_then(|t| Playbook::parse(stem, &entry.display, t))
            {
                Ok(p) => playbooks.push(p),
                Err(e) => errors.push(e),
            }
        }
        playbooks.sort_by(|a, b| (a.number, &a.name).cmp(&(b.number, &b.name)));
        if errors.is_empty() {
            errors.extend(cross_check(&roles, &playbooks, &env));
        }
        if errors.is_empty() {
            errors.extend(borrow_defaults(&mut roles));
        }
        PlanError::collect(errors)?;
        Ok(Catalog {
            run_defaults: Catalog::merge_defaults(&roles),
            roles,
            playbooks,
            env,
        })
    }

    /// Every role's defaults merged: the lowest layer of the run's one context per host, which
    /// templates read as `hostvars` and the PKI reads for node names, the service CIDR and
    /// ports, so they agree with what each role renders (`K8S_NODENAME` is `k8s-<host>` in
    /// `hostvars`, in the kubelet's certificate and for `prepare` when the inventory does not
    /// set it). A role's own variables still see only its own defaults. A name two roles give
    /// different defaults is left out: no single value is the roles' one.
    pub fn run_defaults(&self) -> &crate::inventory::Vars {
        &self.run_defaults
    }

    /// Every role's defaults merged (see `run_defaults`).
    fn merge_defaults(roles: &BTreeMap<String, Role>) -> crate::inventory::Vars {
        let mut out = crate::inventory::Vars::new();
        let mut conflicting = std::collections::HashSet::new();
        for role in roles.values() {
            for (k, v) in &role.defaults {
                match out.get(k) {
                    Some(seen) if seen != v => {
                        conflicting.insert(k.clone());
                    }
                    Some(_) => {}
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        out.retain(|k, _| !conflicting.contains(k));
        out
    }

    /// The environment with every role template registered.
    pub fn env(&self) -> &Environment<'static> {
        &self.env
    }

    /// Available steps (`01.prepare`, `02.etcd`, ...), in order.
    pub fn steps(&self) -> Vec<&str> {
        self.playbooks.iter().map(|p| p.step.as_str()).collect()
    }

    /// The playbook a step name (`02`, `etcd`, `02.etcd`, `all`) refers to.
    pub fn playbook(&self, query: &str) -> Result<&Playbook, PlanError> {
        self.playbooks
            .iter()
            .find(|p| p.matches(query))
            .ok_or_else(|| PlanError::UnknownStep {
                step: query.to_string(),
                available: self.steps().join(", "),
            })
    }

    /// The playbooks to run for `query`, in order: the step itself, or what it imports.
    pub fn resolve_steps(&self, query: &str) -> Result<Vec<&Playbook>, PlanError> {
        let p = self.playbook(query)?;
        match &p.body {
            Body::Plays(_) => Ok(vec![p]),
            Body::Import(steps) => steps
                .iter()
                .map(|s| {
                    let q = self.playbook(s)?;
                    match q.body {
                        Body::Plays(_) => Ok(q),
                        Body::Import(_) => Err(PlanError::load(
                            &p.file,
                            None,
                            format!("imports `{s}`, which itself only imports"),
                        )),
                    }
                })
                .collect(),
        }
    }
}

/// `defaults_from`: each named role's own defaults are added below the role's, first named
/// first (a name the role or an earlier source defines keeps that value). Not transitive.
fn borrow_defaults(roles: &mut BTreeMap<String, Role>) -> Vec<PlanError> {
    let mut errors = Vec::new();
    let borrowed: Vec<(String, crate::inventory::Vars)> = roles
        .values()
        .filter(|r| !r.defaults_from.is_empty())
        .map(|r| {
            let mut vars = crate::inventory::Vars::new();
            for from in &r.defaults_from {
                match roles.get(from) {
                    Some(src) => {
                        for (k, v) in &src.defaults {
                            vars.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    None => errors.push(PlanError::load(
                        &r.meta_file(),
                        None,
                        format!(
                            "defaults_from names unknown role `{from}` (roles: {})",
                            roles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
            (r.name.clone(), vars)
        })
        .collect();
    for (name, vars) in borrowed {
        let role = roles.get_mut(&name).expect("listed above");
        for (k, v) in vars {
            role.defaults.entry(k).or_insert(v);
        }
    }
    errors
}

/// Checks across files: roles named by playbooks exist, `when` expressions compile, imports
/// resolve, and the whole role graph has no cycle.
fn cross_check(
    roles: &BTreeMap<String, Role>,
    playbooks: &[Playbook],
    env: &Environment<'static>,
) -> Vec<PlanError> {
    let mut errors = Vec::new();
    let available = || roles.keys().cloned().collect::<Vec<_>>().join(", ");
    for p in playbooks {
        match &p.body {
            Body::Plays(plays) => {
                for r in plays.iter().flat_map(|pl| &pl.roles) {
                    if !roles.contains_key(&r.role) {
                        errors.push(PlanError::MissingRole {
                            role: r.role.clone(),
                            by: r.origin.clone(),
                            available: available(),
                        });
                    }
                    if let Some(w) = &r.when
                        && let Err(msg) = load_checks::check_when(env, w)
                    {
                        errors.push(origin_error(&r.origin, msg));
                    }
                }
            }
            Body::Import(steps) => {
                for s in steps {
                    if !playbooks.iter().any(|q| q.matches(s)) {
                        errors.push(PlanError::load(
                            &p.file,
                            None,
                            format!("imports unknown step `{s}`"),
                        ));
                    }
                }
            }
        }
    }
    let all: Vec<(String, String)> = roles
        .keys()
        .map(|r| (r.clone(), roles[r].meta_file()))
        .collect();
    if let Err(e) = dag::order(roles, &all) {
        errors.extend(e.into_list());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(files: &[(&str, &str)]) -> (tempfile::TempDir, Library) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let lib = Library::from_dir(dir.path()).unwrap();
        (dir, lib)
    }

    #[test]
    fn defaults_from_adds_the_named_roles_defaults_below_the_roles_own() {
        let (_d, lib) = library(&[
            ("roles/db/tasks.yml", "[]\n"),
            ("roles/db/defaults.yml", "DATA: /var/lib/db\nPORT: 1\n"),
            ("roles/undo/tasks.yml", "[]\n"),
            ("roles/undo/defaults.yml", "PORT: 2\n"),
            ("roles/undo/meta.yml", "defaults_from: [db]\n"),
        ]);
        let c = Catalog::load(&lib).unwrap();
        let d = &c.roles["undo"].defaults;
        assert_eq!(d["DATA"], serde_yaml::Value::from("/var/lib/db"));
        assert_eq!(d["PORT"], serde_yaml::Value::from(2), "the role's own value wins");
        assert_eq!(c.roles["db"].defaults["PORT"], serde_yaml::Value::from(1), "the source is unchanged");
    }

    #[test]
    fn defaults_from_an_unknown_role_names_the_meta_file() {
        let (_d, lib) = library(&[
            ("roles/undo/tasks.yml", "[]\n"),
            ("roles/undo/meta.yml", "defaults_from: [nope]\n"),
        ]);
        let e = Catalog::load(&lib).unwrap_err().to_string();
        assert!(e.contains("roles/undo/meta.yml") && e.contains("unknown role `nope`"), "{e}");
    }

    /// Guards the shipped roles/ and playbooks/: they must load and validate as embedded.
    #[test]
    fn embedded_roles_and_playbooks_load() {
        if let Err(e) = Catalog::load(&Library::embedded()) {
            panic!("embedded roles/playbooks do not load:\n{e}");
        }
    }
}
