//! A step's plan: which hosts each role runs on (play groups ∩ inventory, the role's `when`
//! per host, plus the hosts of roles that depend on it), in DAG waves, each host's tasks
//! rendered. Pure: no host is contacted. [`check_all`] plans every step for `ezk check`,
//! collecting every problem instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::action::{HostRolePlan, StepPlan, Wave};
use super::catalog::Catalog;
use super::compiled::Compiled;
use super::dag;
use super::error::PlanError;
use super::playbook::{Body, Playbook};
use super::host_render::{HostRender, RenderFailure};
use super::inputs::{DeployFiles, Variables};
use super::library::Library;
use minijinja::Value;
use minijinja::value::merge_maps;

/// Plans steps of one cluster.
pub struct Planner<'a> {
    pub catalog: &'a Catalog,
    pub vars: &'a dyn Variables,
    pub files: &'a dyn DeployFiles,
    /// The cluster's registered nodes as templates see them (`k8s_nodes`: node name →
    /// `{pod_cidr, address}`); None: not known (no API yet, or not asked for), an empty map.
    pub nodes: Option<Value>,
}

impl Planner<'_> {
    /// Plans for a step name (`02`, `etcd`, `02.etcd`, or `all`/`90` which expands to its
    /// imported steps), in run order.
    pub fn plan_steps(&self, query: &str) -> Result<Vec<StepPlan>, PlanError> {
        let books = self.catalog.resolve_steps(query)?;
        let mut plans = Vec::new();
        let mut errors = Vec::new();
        for b in books {
            match self.plan_playbook(b) {
                Ok(p) => plans.push(p),
                Err(e) => errors.extend(e.into_list()),
            }
        }
        PlanError::collect(errors)?;
        Ok(plans)
    }

    /// The plan of one step that holds plays (not an `import` list).
    pub fn plan_step(&self, query: &str) -> Result<StepPlan, PlanError> {
        let b = self.catalog.playbook(query)?;
        if let Body::Import(_) = b.body {
            return Err(PlanError::load(
                &b.file,
                None,
                format!(
                    "step {} only imports other steps; plan them one by one",
                    b.step
                ),
            ));
        }
        self.plan_playbook(b)
    }

    fn plan_playbook(&self, book: &Playbook) -> Result<StepPlan, PlanError> {
        let Body::Plays(plays) = &book.body else {
            return Err(PlanError::load(&book.file, None, "nested import"));
        };
        let roles = &self.catalog.roles;
        let start: Vec<(String, String)> = plays
            .iter()
            .flat_map(|p| &p.roles)
            .map(|r| (r.role.clone(), r.origin.clone()))
            .collect();
        let order = dag::order(roles, &start)?;
        let all_hosts = self.vars.hosts();
        let groups = self.vars.groups();
        let shared = Shared {
            groups: std::cell::OnceCell::new(),
            hostvars: std::cell::OnceCell::new(),
            kube: self
                .vars
                .kube_version()
                .and_then(|v| super::kube::KubeRelease::for_version(&v))
                .map(|k| k.value()),
            images: self.vars.images().map(|i| Value::from_serialize(&i)),
            nodes: self.nodes.clone().unwrap_or_else(|| Value::from(std::collections::BTreeMap::<String, Value>::new())),
            signing: Value::from(self.files.cluster_signing_file()),
        };
        let mut cache: HashMap<(String, String), Result<Value, String>> = HashMap::new();
        let compiled = Compiled::new(self.catalog.env());
        let mut errors: Failures = Failures::default();

        // Hosts of each role named by a play.
        // Sets, so that a thousand-host inventory stays linear.
        let mut hosts: HashMap<String, HashSet<String>> = HashMap::new();
        let members: HashMap<&str, HashSet<&str>> = groups
            .iter()
            .map(|(g, m)| (g.as_str(), m.iter().map(String::as_str).collect()))
            .collect();
        for play in plays {
            let play_hosts: Vec<&String> = all_hosts
                .iter()
                .filter(|h| {
                    play.hosts.iter().any(|g| {
                        g == "all"
                            || members
                                .get(g.as_str())
                                .is_some_and(|m| m.contains(h.as_str()))
                    })
                })
                .collect();
            for r in &play.roles {
                let role = &roles[&r.role];
                for h in &play_hosts {
                    if let Some(w) = &r.when {
                        let Some(base) = self.host_vars(&mut cache, &shared, h, role, &mut errors)
                        else {
                            continue;
                        };
                        match self.render_for(&compiled, role, h, &base).when(w, &base) {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(msg) => {
                                errors.add(
                                    RenderFailure {
                                        origin: r.origin.clone(),
                                        msg,
                                    },
                                    h,
                                );
                                continue;
                            }
                        }
                    }
                    hosts
                        .entry(r.role.clone())
                        .or_default()
                        .insert((*h).clone());
                }
            }
        }
        // A dependency runs wherever a role depending on it runs (dependents come later in
        // topological order, so walking backwards carries hosts down transitively).
        for name in order.order.iter().rev() {
            let mine = hosts.get(name).cloned().unwrap_or_default();
            for d in &roles[name].depends {
                hosts
                    .entry(d.clone())
                    .or_default()
                    .extend(mine.iter().cloned());
            }
        }

        let mut waves = Vec::new();
        for wave_roles in &order.waves {
            let mut wave = Wave {
                roles: wave_roles.clone(),
                hosts: Vec::new(),
                serial: wave_roles
                    .iter()
                    .filter_map(|r| roles[r].serial.map(|n| (r.clone(), n)))
                    .collect(),
            };
            for name in wave_roles {
                let role = &roles[name];
                let on = hosts.get(name).cloned().unwrap_or_default();
                for h in all_hosts.iter().filter(|h| on.contains(h.as_str())) {
                    let Some(base) = self.host_vars(&mut cache, &shared, h, role, &mut errors)
                    else {
                        continue;
                    };
                    match self.render_for(&compiled, role, h, &base).tasks() {
                        Ok(tasks) => wave.hosts.push(HostRolePlan {
                            host: h.clone(),
                            role: name.clone(),
                            tasks,
                        }),
                        Err(fails) => fails.into_iter().for_each(|f| errors.add(f, h)),
                    }
                }
            }
            waves.push(wave);
        }
        errors.into_result()?;
        Ok(StepPlan {
            step: book.step.clone(),
            needs_nodes: order.order.iter().any(|r| roles[r].needs_nodes && hosts.get(r).is_some_and(|h| !h.is_empty())),
            waves,
        })
    }

    /// What renders `role`'s `when`s and tasks for `host` in the context `base`.
    fn render_for<'b, 'c>(
        &'b self,
        compiled: &'b Compiled<'c>,
        role: &'b super::role::Role,
        host: &'b str,
        base: &'b Value,
    ) -> HostRender<'b, 'c> {
        HostRender { env: self.catalog.env(), compiled, role, host, base, files: self.files }
    }

    /// The template context of `host` for `role`: its variables, with `inventory_hostname`,
    /// `groups` and `hostvars` added when the source leaves them out, and `kube` (the
    /// version-dependent choices). Cached per (host, role).
    fn host_vars(
        &self,
        cache: &mut HashMap<(String, String), Result<Value, String>>,
        shared: &Shared,
        host: &str,
        role: &super::role::Role,
        errors: &mut Failures,
    ) -> Option<Value> {
        let key = (host.to_string(), role.name.clone());
        let r = cache.entry(key).or_insert_with(|| {
            let own = match self.vars.role_context(host, &role.name, &role.defaults, self.catalog.run_defaults()) {
                Some(ctx) => ctx,
                None => self.vars.vars_for(host, &role.defaults).map(|v| {
                    let mut magic: Vec<(&str, Value)> = Vec::new();
                    if !v.contains_key("inventory_hostname") {
                        magic.push(("inventory_hostname", Value::from(host)));
                    }
                    if !v.contains_key("groups") {
                        magic.push(("groups", shared.groups(self.vars).clone()));
                    }
                    if let Some(hv) = shared.hostvars(self.vars)
                        && !v.contains_key("hostvars")
                    {
                        magic.push(("hostvars", hv.clone()));
                    }
                    merge_maps([Value::from_serialize(&v), Value::from_iter(magic)])
                }),
            };
            own.map(|own| {
                let mut extra: Vec<(&str, Value)> = Vec::new();
                if let Some(k) = &shared.kube {
                    extra.push(("kube", k.clone()));
                }
                // An inventory variable named `images` wins (the first map does).
                if let Some(i) = &shared.images {
                    extra.push(("images", i.clone()));
                }
                extra.push(("k8s_nodes", shared.nodes.clone()));
                extra.push(("cluster_ca_signing_file", shared.signing.clone()));
                // Layered, not copied: the shared values are converted once per step.
                merge_maps([own, Value::from_iter(extra)])
            })
        });
        match r {
            Ok(v) => Some(v.clone()),
            Err(msg) => {
                errors.add(
                    RenderFailure {
                        origin: role.dir.clone(),
                        msg: format!("variables: {msg}"),
                    },
                    host,
                );
                None
            }
        }
    }
}

/// All problems found in `lib` rendered against `vars`; empty when every step renders.
///
/// `files` answers what the deploy machine would provide; for `ezk check` it checks each id
/// and name but gives no content (certificates, kubeconfigs and binaries cannot hold template
/// errors), so neither the PKI nor the artifact store is needed.
pub fn check_all(lib: &Library, vars: &dyn Variables, files: &dyn DeployFiles) -> Vec<PlanError> {
    let catalog = match Catalog::load(lib) {
        Ok(c) => c,
        Err(e) => return e.into_list(),
    };
    check_catalog(&catalog, vars, files)
}

/// Render every step of an already loaded catalog; see [`check_all`].
pub fn check_catalog(catalog: &Catalog, vars: &dyn Variables, files: &dyn DeployFiles) -> Vec<PlanError> {
    let planner = Planner {
        catalog,
        vars,
        files,
        nodes: None,
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for book in catalog
        .playbooks
        .iter()
        .filter(|b| matches!(b.body, Body::Plays(_)))
    {
        if let Err(e) = planner.plan_step(&book.step) {
            // A role used by several steps fails the same way in each: report it once.
            for e in e.into_list() {
                if seen.insert(e.to_string()) {
                    out.push(e);
                }
            }
        }
    }
    out
}

/// Values every host's context shares, converted to template values once per step.
struct Shared {
    /// `groups` and `hostvars` for contexts made from `vars_for` (when the variables give no
    /// `role_context`), converted on first use.
    groups: std::cell::OnceCell<Value>,
    hostvars: std::cell::OnceCell<Option<Value>>,
    /// The version-dependent choices (`plan::kube`), when the cluster's version is known.
    kube: Option<Value>,
    /// The artifact set's images by name (`Variables::images`).
    images: Option<Value>,
    /// `k8s_nodes`.
    nodes: Value,
    /// `cluster_ca_signing_file` (`DeployFiles::cluster_signing_file`).
    signing: Value,
}

/// Failures keyed by (origin, message), each with the hosts it happened on, in first-seen order:
/// an undefined variable in a template is reported once with every host, not once per host.
#[derive(Default)]
struct Failures {
    seen: BTreeMap<(String, String), usize>,
    list: Vec<(RenderFailure, Vec<String>)>,
}

impl Failures {
    fn add(&mut self, f: RenderFailure, host: &str) {
        let key = (f.origin.clone(), f.msg.clone());
        let i = *self.seen.entry(key).or_insert_with(|| {
            self.list.push((f, Vec::new()));
            self.list.len() - 1
        });
        if !self.list[i].1.iter().any(|h| h == host) {
            self.list[i].1.push(host.to_string());
        }
    }

    fn into_result(self) -> Result<(), PlanError> {
        PlanError::collect(
            self.list
                .into_iter()
                .map(|(f, hosts)| PlanError::Render {
                    origin: f.origin,
                    hosts,
                    msg: f.msg,
                })
                .collect(),
        )
    }
}

impl Shared {
    fn groups(&self, vars: &dyn Variables) -> &Value {
        self.groups.get_or_init(|| Value::from_serialize(vars.groups()))
    }

    fn hostvars(&self, vars: &dyn Variables) -> Option<&Value> {
        self.hostvars.get_or_init(|| vars.hostvars().map(|h| Value::from_serialize(&h))).as_ref()
    }
}
