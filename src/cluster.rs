//! A loaded cluster: the inventory, the role library, the PKI and the artifact store, joined
//! into what the planner needs (`VarSource` + `Sources`). `render`, `setup` and `check` start
//! here, so each of them plans with exactly the same inputs.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::artifacts::Store;
use crate::cli::Context;
use crate::inventory::{Inventory, Vars};
use crate::pki::Pki;
use crate::plan::{CertPem, Sources, StoredBinary, VarSource};

impl VarSource for Inventory {
    fn groups(&self) -> &indexmap::IndexMap<String, Vec<String>> {
        &self.groups
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

/// The Kubernetes version set of a cluster (`K8S_VER` in config.yml), as the artifact store
/// names it.
pub fn k8s_ver(inv: &Inventory) -> Option<String> {
    let first = inv.hosts.first()?;
    inv.var_str(first, "K8S_VER")
}

/// Certificates, kubeconfigs and binaries for the planner, from the cluster's PKI and the
/// artifact store. A binary is hashed once per run, however many hosts receive it.
pub struct ClusterSources {
    pub pki: Pki,
    pub store: Store,
    pub k8s_ver: Option<String>,
    binaries: Mutex<HashMap<String, StoredBinary>>,
}

impl ClusterSources {
    pub fn new(pki: Pki, store: Store, k8s_ver: Option<String>) -> Self {
        ClusterSources { pki, store, k8s_ver, binaries: Mutex::new(HashMap::new()) }
    }
}

impl Sources for ClusterSources {
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String> {
        let f = self.pki.cert_files(id, host).map_err(|e| e.to_string())?;
        Ok(CertPem {
            cert_pem: f.cert_pem,
            key_pem: f.key_pem.map(|k| k.expose().to_string()),
            ca_pem: f.ca_pem,
        })
    }

    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String> {
        self.pki.kubeconfig(name, host).map_err(|e| e.to_string())
    }

    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        if let Some(b) = self.binaries.lock().unwrap().get(name) {
            return Ok(b.clone());
        }
        let ver = self
            .k8s_ver
            .as_deref()
            .ok_or("K8S_VER is not set in config.yml; it picks the artifact version set")?;
        let b = self.store.binary(name, ver).map_err(|e| match e {
            // Its message already ends with the command that fetches it.
            crate::artifacts::ArtifactError::Missing { .. } => e.to_string(),
            e => format!("{e}\n  fetch it with: {}", self.store.fetch_hint(&[name], ver)),
        })?;
        let b = StoredBinary { path: b.path, sha256: b.sha256 };
        self.binaries.lock().unwrap().insert(name.to_string(), b.clone());
        Ok(b)
    }
}

/// Load and validate a cluster's inventory; on errors print them (each with file:line) and
/// return the exit code to use.
pub fn load_inventory(ctx: &Context, cluster: &str, extra: &[(String, String)]) -> Result<Inventory, i32> {
    match Inventory::load(&ctx.home, cluster, extra) {
        Ok(inv) => Ok(inv),
        Err(errors) => {
            eprint!("{errors}");
            Err(1)
        }
    }
}

/// Issue or reuse the cluster's certificates and open the artifact store: everything a plan
/// takes from the deploy machine.
pub fn sources(ctx: &Context, inv: &Inventory) -> Result<ClusterSources, crate::cli::CliError> {
    let spec = crate::pki::from_inventory(inv)?;
    let pki = Pki::ensure(&inv.dir, &spec)?;
    let store = Store::open(&ctx.home)?;
    Ok(ClusterSources::new(pki, store, k8s_ver(inv)))
}
