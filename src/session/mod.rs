//! A session: one cluster, loaded once, as every operation (`ops`) works on it. It knows
//! nothing of the command line; every operation builds it with [`Session::open`].
//!
//! What it holds, each made when first asked for (so an operation pays only for what it uses,
//! in the order it uses it, and a failure is reported where it happened before):
//! - the inventory (hosts + config.yml + `-e`), validated when opened;
//! - the resolved per-host variables for the planner (`impl Variables for Inventory`, below);
//! - the role library: every role and playbook, embedded or overridden under the home
//!   ([`Session::catalog`]);
//! - the deploy machine's files: certificates issued or reused and the artifact store
//!   ([`Session::files`], see `deploy_files`);
//! - the connection of every host ([`Session::connections`], see `exec::Connection`);
//! - the cluster lock, held from the first run on hosts to the end of the operation
//!   ([`Session::lock`]);
//! - facts read from the running cluster: each registered node's pod subnet and address, for
//!   the roles that lay routes between nodes ([`Session::fetch_node_facts`], see `node_facts`).

mod deploy_files;
mod kubectl;
mod node_facts;

use std::cell::OnceCell;
use std::path::Path;

use indexmap::IndexMap;

pub use deploy_files::{CheckFiles, ClusterFiles, NoFiles};

use crate::exec::Connection;
use crate::exec::lock::{ClusterLock, LockError, lock_cluster};
use crate::home::Home;
use crate::inventory::{Inventory, InventoryError, InventoryErrors, Location, Vars, validate, values};
use crate::plan::action::StepPlan;
use crate::plan::{Catalog, DeployFiles, Library, PlanError, Planner, Variables};

/// Any error an operation reports; each carries its own context (file, line, host, fix).
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One loaded cluster.
pub struct Session {
    home: Home,
    /// The cluster's inventory (`clusters/<name>/hosts`, `config.yml`, `-e`).
    pub inventory: Inventory,
    catalog: OnceCell<Catalog>,
    files: OnceCell<ClusterFiles>,
    lock: Option<ClusterLock>,
    /// `k8s_nodes` for templates, once fetched.
    nodes: Option<minijinja::Value>,
}

impl Session {
    /// Open cluster `cluster` under `home`: read and validate its inventory (every problem at
    /// once, each with file:line and fix). Nothing else is read or written yet.
    pub fn open(home: &Home, cluster: &str, extra_vars: &[(String, String)]) -> Result<Session, InventoryErrors> {
        Ok(Session::with(home, Inventory::load(home, cluster, extra_vars)?))
    }

    /// Open without validating the inventory (syntax errors are still errors): `ezk check`
    /// validates itself, to add its own findings to the report.
    pub fn open_unvalidated(
        home: &Home,
        cluster: &str,
        extra_vars: &[(String, String)],
    ) -> Result<Session, InventoryErrors> {
        Ok(Session::with(home, Inventory::parse(home, cluster, extra_vars)?))
    }

    /// A session over an inventory read elsewhere (an edit not yet written: `ezk add-node`).
    pub fn with_inventory(home: &Home, inventory: Inventory) -> Session {
        Session::with(home, inventory)
    }

    fn with(home: &Home, inventory: Inventory) -> Session {
        Session { home: home.clone(), inventory, catalog: OnceCell::new(), files: OnceCell::new(), lock: None, nodes: None }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// `clusters/<name>/`.
    pub fn dir(&self) -> &Path {
        &self.inventory.dir
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.inventory.cluster
    }

    /// Every role and playbook (embedded, overridden by the home's `roles/` and `playbooks/`),
    /// loaded and validated on first use.
    pub fn catalog(&self) -> Result<&Catalog, PlanError> {
        if self.catalog.get().is_none() {
            let lib = Library::with_overrides(self.home.root())?;
            let catalog = Catalog::load(&lib)?;
            // A role's default reaches the hosts like an inventory value: checked the same way.
            PlanError::collect(
                role_default_errors(&lib, &self.inventory, true)
                    .into_iter()
                    .map(|e| match e {
                        InventoryError::Invalid { at, msg, fix } => {
                            PlanError::load(&at.file.display().to_string(), Some(at.line), format!("{msg}\n  fix: {fix}"))
                        }
                        other => PlanError::load("roles", None, other.to_string()),
                    })
                    .collect(),
            )?;
            let _ = self.catalog.set(catalog);
        }
        Ok(self.catalog.get().expect("set above"))
    }

    /// The deploy machine's files for plans: certificates issued or reused under ssl/ and the
    /// artifact store opened, on first use.
    pub fn files(&self) -> Result<&ClusterFiles, Error> {
        if self.files.get().is_none() {
            let files = ClusterFiles::open(&self.home, &self.inventory, &self.pki_spec()?)?;
            let _ = self.files.set(files);
        }
        Ok(self.files.get().expect("set above"))
    }

    /// Drop the files opened by `files`, so that the next call ensures the PKI again (after
    /// an operation changed what it hands out: a CA rotation's next phase).
    pub fn forget_files(&mut self) {
        self.files = OnceCell::new();
    }

    /// The PKI's inputs, read from the run's context (`Inventory::run_context`: the inventory
    /// over every role's defaults), as templates read `hostvars`: node names, service CIDR and
    /// ports as the roles render them. A problem names the inventory file.
    pub fn pki_spec(&self) -> Result<crate::pki::PkiSpec, Error> {
        let defaults = self.catalog()?.run_defaults();
        let inv = &self.inventory;
        Ok(crate::pki::from_inventory(inv, defaults).map_err(|e| format!("{}: {e}", inv.hosts_path().display()))?)
    }

    /// A planner over this cluster's variables and catalog, with `files` answering
    /// certificates, kubeconfigs, binaries and local files.
    pub fn planner<'a>(&'a self, files: &'a dyn DeployFiles) -> Result<Planner<'a>, PlanError> {
        Ok(Planner { catalog: self.catalog()?, vars: &self.inventory, files, nodes: self.nodes.clone() })
    }

    /// The plans of `step` (`02`, `etcd`, `all`, …), in run order.
    pub fn plan(&self, step: &str, files: &dyn DeployFiles) -> Result<Vec<StepPlan>, PlanError> {
        self.planner(files)?.plan_steps(step)
    }

    /// The connection of every host, in inventory order, once their SSH settings are checked
    /// on this machine (`check_connections`: key files, jump hosts). Only what connects asks:
    /// a render or a plan needs no key.
    pub fn connections(&self) -> Result<IndexMap<String, Connection>, InventoryErrors> {
        let errors = check_connections(&self.inventory);
        if !errors.is_empty() {
            return Err(InventoryErrors(errors));
        }
        Ok(self.inventory.hosts.iter().map(|h| (h.clone(), connection(&self.inventory, h))).collect())
    }

    /// The cluster lock (`clusters/<name>/.lock`), taken on first use and held until the
    /// session ends, so two runs on one cluster cannot interleave.
    pub fn lock(&mut self) -> Result<&ClusterLock, LockError> {
        if self.lock.is_none() {
            self.lock = Some(lock_cluster(&self.inventory.dir)?);
        }
        Ok(self.lock.as_ref().expect("set above"))
    }

    /// Give the cluster lock up before the session ends, for an operation that goes on with
    /// another session over the same cluster (an inventory with a host more or less).
    pub fn unlock(&mut self) {
        self.lock = None;
    }

    /// The cluster's artifact version set (K8S_VER).
    pub fn k8s_ver(&self) -> Option<String> {
        k8s_ver(&self.inventory)
    }
}

/// Every role's `defaults.yml` checked against the inventory (`validate::role_defaults`): a
/// bad default path, port or name is found before a step uses it. `templates`: see there.
pub fn role_default_errors(lib: &Library, inv: &Inventory, templates: bool) -> Vec<InventoryError> {
    let mut errors = Vec::new();
    for role in lib.role_names() {
        let Some(entry) = lib.get(&format!("roles/{role}/defaults.yml")) else {
            continue;
        };
        if let Ok(text) = entry.text() {
            errors.extend(validate::role_defaults(inv, &entry.display, text, templates));
        }
    }
    errors
}

/// The SSH settings of every host as its connection will use them, checked on this machine
/// (by `ezk check`, and before any connection):
/// a key file that exists, is readable and not readable by others (ssh ignores it otherwise),
/// no empty key-file variable, jump hosts that are `[user@]host[:port]`. Reported once per
/// place written.
pub fn check_connections(inv: &Inventory) -> Vec<InventoryError> {
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for h in &inv.hosts {
        let conn = connection(inv, h);
        let written = |names: &[&'static str]| names.iter().copied().find(|n| inv.var_location(h, n).is_some());
        let mut found = Vec::new();
        if let Some(var) = written(&["ansible_ssh_private_key_file", "ansible_private_key_file"]) {
            match &conn.key_file {
                Some(k) => found.extend(values::key_file(var, k).map(|p| (var, p))),
                None => found.push((
                    var,
                    values::Problem {
                        msg: format!("{var} is empty"),
                        fix: format!("point {var} at the private key file, or remove it to use ssh's own keys"),
                    },
                )),
            }
        }
        if let (Some(spec), Some(var)) = (&conn.jump, written(&["ansible_ssh_common_args", "ansible_ssh_extra_args"])) {
            found.extend(values::jump(var, spec).map(|p| (var, p)));
        }
        for (var, p) in found {
            let at = inv.var_location(h, var).cloned().unwrap_or_else(|| Location::new(inv.hosts_path(), 0));
            let e = InventoryError::invalid(at, p.msg, p.fix);
            if seen.insert(e.to_string()) {
                errors.push(e);
            }
        }
    }
    errors
}

/// How to reach inventory host `host`: its Ansible connection variables read by
/// `exec::Connection::from_ansible_vars`.
pub fn connection(inv: &Inventory, host: &str) -> Connection {
    Connection::from_ansible_vars(host, |name| inv.var_str(host, name))
}

/// The Kubernetes version set of a cluster (`K8S_VER` in config.yml), as the artifact store
/// names it.
pub fn k8s_ver(inv: &Inventory) -> Option<String> {
    let first = inv.hosts.first()?;
    inv.var_str(first, "K8S_VER")
}

/// The inventory as the planner reads it: each host's context per role, its variables resolved
/// lazily (once per run) with the role's defaults as the lowest layer, and Ansible's `hostvars`
/// shared by every host's context.
impl Variables for Inventory {
    fn groups(&self) -> &indexmap::IndexMap<String, Vec<String>> {
        &self.groups
    }

    /// The version of the kube-apiserver that K8S_VER's artifact set installs (the lab's
    /// `lab-debian` set: `1.20.2`; an unpinned release: itself).
    fn kube_version(&self) -> Option<String> {
        crate::artifacts::Manifest::shipped().ok()?.kube_version(&k8s_ver(self)?)
    }

    /// The images of K8S_VER's artifact set, by name, with what their references say.
    fn images(&self) -> Option<indexmap::IndexMap<String, crate::plan::ImageName>> {
        // Always defined: a release not pinned yet (or one whose set lists no images) has none,
        // so `PRELOAD_IMAGES | map('extract', images)` renders for it as for any other.
        let mut out = indexmap::IndexMap::new();
        let manifest = crate::artifacts::Manifest::shipped().ok();
        let set = manifest.as_ref().zip(k8s_ver(self)).and_then(|(m, v)| m.set(&v).ok().map(|(_, s)| s));
        for i in set.iter().flat_map(|s| &s.images) {
            let Ok(r) = crate::artifacts::registry::ImageRef::parse(&i.reference) else { continue };
            out.insert(
                i.name.clone(),
                crate::plan::ImageName { reference: i.reference.clone(), registry: r.registry, repository: r.repository, tag: r.tag },
            );
        }
        Some(out)
    }

    fn role_context(&self, host: &str, role: &str, role_defaults: &Vars, run_defaults: &Vars) -> Option<Result<minijinja::Value, String>> {
        Some(Inventory::role_context(self, host, role, role_defaults, run_defaults).map_err(|e| e.to_string()))
    }

    fn vars_for(&self, host: &str, role_defaults: &Vars) -> Result<Vars, String> {
        // `hostvars` is given once through `hostvars()` below, shared by every host's context.
        Inventory::vars_without_hostvars(self, host, role_defaults).map_err(|e| e.to_string())
    }

    fn hostvars(&self) -> Option<Vars> {
        let serde_yaml::Value::Mapping(m) = Inventory::hostvars(self) else {
            return None;
        };
        Some(
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect(),
        )
    }
}
