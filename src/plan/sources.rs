//! What the engine needs from the rest of ezk, as traits so the plan stays independent of
//! their implementations: per-host variables (the inventory) and file contents issued or
//! stored on the deploy machine (the PKI and the artifact store). The lead wires `Inventory`,
//! `Pki` and `Store` in; tests use hand-made doubles.

use std::path::PathBuf;

use indexmap::IndexMap;

use crate::inventory::Vars;

/// Groups and per-host variables of one cluster.
pub trait VarSource {
    /// group → member hosts, in inventory order. `all`, when present, gives the host order.
    fn groups(&self) -> &IndexMap<String, Vec<String>>;

    /// Every variable of `host` for a role whose defaults are `role_defaults` (lowest
    /// precedence), fully rendered. The engine adds `inventory_hostname`, `groups` and
    /// `hostvars` (from [`VarSource::hostvars`]) when they are missing.
    fn vars_for(&self, host: &str, role_defaults: &Vars) -> Result<Vars, String>;

    /// `hostvars` (host → that host's variables) for templates. Given here, it is converted
    /// once per step and shared by every host's context; included in every `vars_for` answer
    /// instead, it is converted per host and role — quadratic in the number of hosts.
    fn hostvars(&self) -> Option<Vars> {
        None
    }

    /// Every host, in inventory order.
    fn hosts(&self) -> Vec<String> {
        let g = self.groups();
        if let Some(all) = g.get("all") {
            return all.clone();
        }
        let mut out: Vec<String> = Vec::new();
        for h in g.values().flatten() {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        out
    }
}

/// PEM material of one certificate as a host receives it.
#[derive(Debug, Clone)]
pub struct CertPem {
    pub cert_pem: String,
    /// Private key PEM, when the id carries one; installed 0600 and marked secret.
    pub key_pem: Option<String>,
    /// The issuing CA's certificate PEM, when the id has one.
    pub ca_pem: Option<String>,
}

/// A verified binary in the artifact store.
#[derive(Debug, Clone)]
pub struct StoredBinary {
    pub path: PathBuf,
    /// Hex sha256 of the file at `path`.
    pub sha256: String,
}

/// File contents that come from the deploy machine rather than from templates.
pub trait Sources {
    /// Certificate `id` (e.g. `etcd`, `kubernetes`, `kubelet`) as issued for `host`.
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String>;
    /// Kubeconfig `name` (admin, kube-controller-manager, kube-scheduler, kube-proxy, kubelet)
    /// for `host`.
    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String>;
    /// Binary `name` from the artifact store.
    fn binary(&self, name: &str) -> Result<StoredBinary, String>;
}

/// For `ezk check`: certs, kubeconfigs and binaries are not needed to find template and
/// variable errors, so they are answered with empty content. Never used to build a plan that
/// is applied or written.
pub(crate) struct CheckOnly;

impl Sources for CheckOnly {
    fn cert(&self, _: &str, _: &str) -> Result<CertPem, String> {
        Ok(CertPem {
            cert_pem: String::new(),
            key_pem: Some(String::new()),
            ca_pem: Some(String::new()),
        })
    }
    fn kubeconfig(&self, _: &str, _: &str) -> Result<String, String> {
        Ok(String::new())
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Ok(StoredBinary {
            path: PathBuf::from(name),
            sha256: String::new(),
        })
    }
}

/// For plans that install nothing from the deploy machine (`ezk destroy`): any certificate,
/// kubeconfig or binary a task asks for is an error naming it, so such a plan never issues
/// certificates or needs the artifact store.
pub struct NoFiles;

impl Sources for NoFiles {
    fn cert(&self, _: &str, id: &str) -> Result<CertPem, String> {
        Err(format!("certificate `{id}` asked for by a step that installs no files"))
    }
    fn kubeconfig(&self, _: &str, name: &str) -> Result<String, String> {
        Err(format!("kubeconfig `{name}` asked for by a step that installs no files"))
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Err(format!("binary `{name}` asked for by a step that installs no files"))
    }
}
