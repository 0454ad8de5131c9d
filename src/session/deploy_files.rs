//! The deploy machine's files as the planner asks for them (`plan::DeployFiles`):
//! [`ClusterFiles`] answers from the cluster's PKI and the artifact store, [`NoFiles`] for
//! steps that install nothing issued or stored (destroy, restore). Both hash a `copy` task's
//! local `src` the same way.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::Error;
use crate::artifacts::{ArtifactError, Store};
use crate::home::Home;
use crate::inventory::Inventory;
use crate::pki::Pki;
use crate::plan::{CertPem, DeployFiles, StoredBinary, StoredImage};

/// Certificates, kubeconfigs and binaries from the cluster's PKI and the artifact store. A
/// binary is hashed once per run, however many hosts receive it.
pub struct ClusterFiles {
    pub pki: Pki,
    pub store: Store,
    pub k8s_ver: Option<String>,
    binaries: Mutex<HashMap<String, StoredBinary>>,
}

impl ClusterFiles {
    /// Issue or reuse the cluster's certificates (for `spec`, `Session::pki_spec`) and open the
    /// artifact store: everything a plan takes from the deploy machine.
    pub fn open(home: &Home, inv: &Inventory, spec: &crate::pki::PkiSpec) -> Result<ClusterFiles, Error> {
        let pki = Pki::ensure(&inv.dir, spec)?;
        let store = Store::open(home)?;
        Ok(ClusterFiles::new(pki, store, super::k8s_ver(inv)))
    }

    pub fn new(pki: Pki, store: Store, k8s_ver: Option<String>) -> Self {
        ClusterFiles { pki, store, k8s_ver, binaries: Mutex::new(HashMap::new()) }
    }
}

impl DeployFiles for ClusterFiles {
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

    fn secret(&self, host: &str, name: &str) -> Result<String, String> {
        self.pki.secret_file(name, host).map(|s| s.expose().to_string()).map_err(|e| e.to_string())
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
            ArtifactError::Missing { .. } => e.to_string(),
            e => format!("{e}\n  fetch it with: {}", self.store.fetch_hint(&[name], ver)),
        })?;
        let b = StoredBinary { path: b.path, sha256: b.sha256 };
        self.binaries.lock().unwrap().insert(name.to_string(), b.clone());
        Ok(b)
    }

    fn image(&self, name: &str) -> Result<StoredImage, String> {
        let ver = self.k8s_ver.as_deref().ok_or("K8S_VER is not set in config.yml; it picks the artifact version set")?;
        let i = crate::artifacts::oci::image(&self.store, ver, name).map_err(|e| e.to_string())?;
        Ok(StoredImage { path: i.archive, sha256: i.record.archive_sha256, reference: i.record.reference, digest: i.record.digest })
    }

    fn local_file(&self, path: &Path) -> Result<String, String> {
        local_sha256(path)
    }
}

/// For plans that install nothing issued or stored on the deploy machine (`ezk destroy`,
/// `ezk restore`): any certificate, kubeconfig or binary a task asks for is an error naming
/// it, so such a plan never issues certificates or needs the artifact store. A local file
/// (restore's member data) is hashed as usual.
pub struct NoFiles;

impl DeployFiles for NoFiles {
    fn cert(&self, _: &str, id: &str) -> Result<CertPem, String> {
        Err(format!("certificate `{id}` asked for by a step that installs no files"))
    }
    fn kubeconfig(&self, _: &str, name: &str) -> Result<String, String> {
        Err(format!("kubeconfig `{name}` asked for by a step that installs no files"))
    }
    fn secret(&self, _: &str, name: &str) -> Result<String, String> {
        Err(format!("secret `{name}` asked for by a step that installs no files"))
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Err(format!("binary `{name}` asked for by a step that installs no files"))
    }
    fn image(&self, name: &str) -> Result<StoredImage, String> {
        Err(format!("image `{name}` asked for by a step that installs no files"))
    }
    fn local_file(&self, path: &Path) -> Result<String, String> {
        local_sha256(path)
    }
}

fn local_sha256(path: &Path) -> Result<String, String> {
    crate::artifacts::sha256_file(path).map_err(|e| e.to_string())
}
