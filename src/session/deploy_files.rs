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
use crate::plan::action::Content;
use crate::plan::{CertPem, DeployFiles, ImageBlobs, StoredBinary, StoredImage};

/// Certificates, kubeconfigs and binaries from the cluster's PKI and the artifact store. A
/// binary or an image archive is hashed once per run, however many hosts receive it and however
/// often the run plans again.
pub struct ClusterFiles {
    pub pki: Pki,
    pub store: Store,
    pub k8s_ver: Option<String>,
    binaries: Mutex<HashMap<String, StoredBinary>>,
    images: Mutex<HashMap<String, StoredImage>>,
    /// Certificates a plan asked for that a CA key kept offline must sign first (the
    /// message naming the key, once per message): planned with a placeholder, never applied.
    needs_ca_key: Mutex<Vec<String>>,
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
        ClusterFiles { pki, store, k8s_ver, binaries: Mutex::new(HashMap::new()), images: Mutex::new(HashMap::new()), needs_ca_key: Mutex::new(Vec::new()) }
    }

    /// `r`, or, when it needs a CA key that is not here, `placeholder()` with the reason
    /// remembered: a plan still shows everything else; `needs_ca_key` stops a run before it
    /// starts.
    fn or_pending<T>(&self, r: Result<T, crate::pki::PkiError>, placeholder: impl FnOnce() -> T) -> Result<T, String> {
        match r {
            Ok(v) => Ok(v),
            Err(e @ crate::pki::PkiError::NeedsCaKey { .. }) => {
                let msg = e.to_string();
                let mut seen = self.needs_ca_key.lock().unwrap();
                if !seen.contains(&msg) {
                    seen.push(msg);
                }
                Ok(placeholder())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Why the plans made so far cannot be applied: each certificate they install that must be
    /// issued by a CA whose key is not on this machine (empty: nothing is missing).
    pub fn needs_ca_key(&self) -> Vec<String> {
        self.needs_ca_key.lock().unwrap().clone()
    }

    fn version_set(&self) -> Result<&str, String> {
        Ok(self.k8s_ver.as_deref().ok_or("K8S_VER is not set in config.yml; it picks the artifact version set")?)
    }

    /// Binary `name` of set `ver` from the store, hashed once per run.
    fn stored(&self, name: &str, ver: &str) -> Result<StoredBinary, ArtifactError> {
        if let Some(b) = self.binaries.lock().unwrap().get(name) {
            return Ok(b.clone());
        }
        let b = self.store.binary(name, ver)?;
        let b = StoredBinary { path: b.path, sha256: b.sha256 };
        self.binaries.lock().unwrap().insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// A store error as the planner reports it, with the command that fetches the binary.
    fn explain(&self, e: ArtifactError, name: &str, ver: &str) -> String {
        match e {
            // Its message already ends with the command that fetches it.
            ArtifactError::Missing { .. } => e.to_string(),
            e => format!("{e}\n  fetch it with: {}", self.store.fetch_hint(&[name], ver)),
        }
    }
}

impl DeployFiles for ClusterFiles {
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String> {
        let files = self.pki.cert_files(id, host).map(|f| CertPem {
            cert_pem: f.cert_pem,
            key_pem: f.key_pem.map(|k| k.expose().to_string()),
            ca_pem: f.ca_pem,
        });
        self.or_pending(files, || {
            let p = format!("# {id}: to be issued once the CA key is present\n");
            CertPem { cert_pem: p.clone(), key_pem: Some(p.clone()), ca_pem: Some(p) }
        })
    }

    fn cluster_signing_file(&self) -> &'static str {
        self.pki.cluster_signing_file()
    }

    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String> {
        self.or_pending(self.pki.kubeconfig(name, host), || format!("# {name}: to be made once the CA key is present\n"))
    }

    fn secret(&self, host: &str, name: &str) -> Result<String, String> {
        self.pki.secret_file(name, host).map(|s| s.expose().to_string()).map_err(|e| e.to_string())
    }

    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        let ver = self.version_set()?;
        self.stored(name, ver).map_err(|e| self.explain(e, name, ver))
    }

    fn binary_content(&self, name: &str) -> Result<Content, String> {
        let ver = self.version_set()?;
        match self.stored(name, ver) {
            Ok(b) => Ok(Content::Local { path: b.path, sha256: b.sha256 }),
            Err(ArtifactError::Missing { cmd, .. }) => {
                let (_, set) = self.store.manifest().set(ver).map_err(|e| e.to_string())?;
                let a = set.artifact_for(name).or_else(|| set.build_output(name)).ok_or("not in the version set")?;
                Ok(Content::NotDownloaded {
                    name: name.to_string(),
                    version: a.version.clone(),
                    sha256: a.file_sha256(name),
                    fetch: cmd,
                })
            }
            // Renders like any release; only its download needs the release's checksum file.
            Err(ArtifactError::Unpinned { ver: release, minor, .. }) => {
                let m = self.store.manifest();
                let companion = m.minors.get(&minor).and_then(|mi| mi.companions.iter().find(|a| a.provides(name)));
                let kube = m.kubernetes.as_ref().is_some_and(|k| k.binaries.iter().any(|b| b == name));
                let (version, sha256) = match companion {
                    Some(a) => (a.version.clone(), a.file_sha256(name)),
                    None if kube => (release.clone(), None),
                    None => return Err(format!("binary {name:?} is not installed by Kubernetes {release}")),
                };
                Ok(Content::NotDownloaded {
                    name: name.to_string(),
                    version,
                    sha256,
                    fetch: format!("ezk download --k8s-ver {release} --sha256sums https://dl.k8s.io/release/v{release}/SHA256SUMS"),
                })
            }
            Err(e) => Err(self.explain(e, name, ver)),
        }
    }

    fn image(&self, name: &str) -> Result<StoredImage, String> {
        let ver = self.k8s_ver.as_deref().ok_or("K8S_VER is not set in config.yml; it picks the artifact version set")?;
        if let Some(i) = self.images.lock().unwrap().get(name) {
            return Ok(i.clone());
        }
        let i = crate::artifacts::oci::image(&self.store, ver, name).map_err(|e| e.to_string())?;
        let i = StoredImage { path: i.archive, sha256: i.record.archive_sha256, reference: i.record.reference, digest: i.record.digest };
        self.images.lock().unwrap().insert(name.to_string(), i.clone());
        Ok(i)
    }

    fn image_blobs(&self, name: &str) -> Result<ImageBlobs, String> {
        let ver = self.k8s_ver.as_deref().ok_or("K8S_VER is not set in config.yml; it picks the artifact version set")?;
        let rec = crate::artifacts::oci::image(&self.store, ver, name).map_err(|e| e.to_string())?.record;
        let r = crate::artifacts::registry::ImageRef::parse(&rec.reference)?;
        let l = crate::artifacts::oci::layout(&self.store, ver, name).map_err(|e| e.to_string())?;
        Ok(ImageBlobs {
            repository: r.mirror_repository(),
            tag: r.tag,
            manifest: (l.manifest.digest, l.manifest.path),
            blobs: l.blobs.into_iter().map(|b| (b.digest, b.path)).collect(),
        })
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

/// For `ezk check`: every certificate, kubeconfig and secret id is checked against the PKI's
/// catalog (an unknown one is the error a real plan would give; a certificate's parts are
/// those its kind has), but no content is made: no certificate is issued, nothing is read
/// from the store. Never used to build a plan that is applied or written.
pub struct CheckFiles;

impl DeployFiles for CheckFiles {
    fn cert(&self, _: &str, id: &str) -> Result<CertPem, String> {
        use crate::pki::IdKind;
        let kind = crate::pki::IDS.iter().find(|d| d.id == id && d.kind != IdKind::Secret).map(|d| d.kind);
        let (key, ca) = match kind {
            None => return Err(format!("unknown certificate id; known: {}", crate::pki::cert_ids().collect::<Vec<_>>().join(", "))),
            Some(IdKind::Ca(_)) => (false, true),
            Some(IdKind::SaKeyPair) => (true, false),
            Some(_) => (true, true),
        };
        Ok(CertPem { cert_pem: String::new(), key_pem: key.then(String::new), ca_pem: ca.then(String::new) })
    }
    fn kubeconfig(&self, _: &str, name: &str) -> Result<String, String> {
        crate::pki::kubeconfigs()
            .any(|(n, _)| n == name)
            .then(String::new)
            .ok_or_else(|| format!("unknown kubeconfig; known: {}", crate::pki::kubeconfigs().map(|(n, _)| n).collect::<Vec<_>>().join(", ")))
    }
    fn secret(&self, _: &str, name: &str) -> Result<String, String> {
        crate::pki::secret_ids()
            .any(|n| n == name)
            .then(String::new)
            .ok_or_else(|| format!("unknown secret; known: {}", crate::pki::secret_ids().collect::<Vec<_>>().join(", ")))
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Ok(StoredBinary { path: name.into(), sha256: String::new() })
    }
    fn image(&self, name: &str) -> Result<StoredImage, String> {
        Ok(StoredImage { path: name.into(), sha256: String::new(), reference: name.into(), digest: String::new() })
    }
    fn image_blobs(&self, name: &str) -> Result<ImageBlobs, String> {
        let digest = format!("sha256:{}", "0".repeat(64));
        Ok(ImageBlobs { repository: name.into(), tag: "check".into(), manifest: (digest, name.into()), blobs: Vec::new() })
    }
    /// Not hashed (no bytes are needed to find template errors), but a file that cannot be
    /// opened is the same error a real plan would report.
    fn local_file(&self, path: &Path) -> Result<String, String> {
        std::fs::File::open(path).map(|_| String::new()).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ezk check` finds an id a role names that the PKI does not have, and a part (`key:`) an
    /// id has none of, as a real plan would.
    #[test]
    fn check_files_know_the_pki_catalog() {
        assert!(CheckFiles.cert("h", "kubernetes").unwrap().key_pem.is_some());
        assert!(CheckFiles.cert("h", "ca").unwrap().key_pem.is_none());
        assert!(CheckFiles.cert("h", "sa").unwrap().ca_pem.is_none());
        let e = CheckFiles.cert("h", "kubernetess").unwrap_err();
        assert!(e.contains("unknown certificate id") && e.contains("apiserver-etcd-client"), "{e}");
        assert!(CheckFiles.kubeconfig("h", "kubelet").is_ok());
        assert!(CheckFiles.kubeconfig("h", "kubernetes").unwrap_err().contains("known: admin"));
        assert!(CheckFiles.secret("h", "encryption-config").is_ok());
        assert!(CheckFiles.cert("h", "encryption-config").is_err(), "a secret is no certificate");
    }
}
