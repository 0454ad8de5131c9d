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
mod node_facts;

use std::cell::OnceCell;
use std::path::Path;

use indexmap::IndexMap;

pub use deploy_files::{ClusterFiles, NoFiles};

use crate::exec::Connection;
use crate::exec::lock::{ClusterLock, LockError, lock_cluster};
use crate::home::Home;
use crate::inventory::{Inventory, InventoryErrors, Vars};
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
            let catalog = Catalog::load(&Library::with_overrides(self.home.root())?)?;
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

    /// The connection of every host, in inventory order.
    pub fn connections(&self) -> IndexMap<String, Connection> {
        self.inventory.hosts.iter().map(|h| (h.clone(), connection(&self.inventory, h))).collect()
    }

    /// The cluster lock (`clusters/<name>/.lock`), taken on first use and held until the
    /// session ends, so two runs on one cluster cannot interleave.
    pub fn lock(&mut self) -> Result<&ClusterLock, LockError> {
        if self.lock.is_none() {
            self.lock = Some(lock_cluster(&self.inventory.dir)?);
        }
        Ok(self.lock.as_ref().expect("set above"))
    }

    /// The cluster's artifact version set (K8S_VER).
    pub fn k8s_ver(&self) -> Option<String> {
        k8s_ver(&self.inventory)
    }
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
    /// `lab-debian` set: `1.20.2`).
    fn kube_version(&self) -> Option<String> {
        let manifest = crate::artifacts::Manifest::shipped().ok()?;
        let (_, set) = manifest.set(&k8s_ver(self)?).ok()?;
        set.artifact_for("kube-apiserver").map(|a| a.version.clone())
    }

    fn role_context(&self, host: &str, role: &str, role_defaults: &Vars, run_defaults: &Vars) -> Option<Result<minijinja::Value, String>> {
        Some(Inventory::role_context(self, host, role, role_defaults, run_defaults).map_err(|e| e.to_string()))
    }

    fn vars_for(&self, host: &str, role_defaults: &Vars) -> Result<Vars, String> {
        let mut v = Inventory::vars_for(self, host, role_defaults).map_err(|e| e.to_string())?;
        // Given once through `hostvars()` below, shared by every host's context.
        v.shift_remove("hostvars");
        Ok(v)
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
