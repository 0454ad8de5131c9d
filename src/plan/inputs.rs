//! What the planner reads from outside the plan, as traits so the plan stays independent of
//! their implementations: [`Variables`] (groups and every host's variables: the inventory) and
//! [`DeployFiles`] (contents made or kept on the deploy machine: certificates and kubeconfigs
//! from the PKI, binaries from the artifact store, a `copy` task's absolute `src`). The session
//! wires the real ones in (`session::ClusterFiles`, `impl Variables for Inventory`); tests use
//! hand-made doubles. Besides these and the role library, the planner reads nothing.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::action::Content;
use crate::inventory::Vars;

/// Groups and per-host variables of one cluster.
pub trait Variables {
    /// group → member hosts, in inventory order. `all`, when present, gives the host order.
    fn groups(&self) -> &IndexMap<String, Vec<String>>;

    /// Every variable of `host` for a role whose defaults are `role_defaults` (lowest
    /// precedence), fully rendered. The engine adds `inventory_hostname`, `groups` and
    /// `hostvars` (from [`Variables::hostvars`]) when they are missing.
    fn vars_for(&self, host: &str, role_defaults: &Vars) -> Result<Vars, String>;

    /// The whole template context of `host` for role `role` (whose defaults are
    /// `role_defaults`): every variable, `inventory_hostname`, `groups`, `group_names` and
    /// `hostvars` (every host's variables over `run_defaults`, every role's defaults), made
    /// lazily from values resolved once per run (`Inventory::role_context`). None: the planner
    /// makes it from [`Variables::vars_for`] and [`Variables::hostvars`].
    fn role_context(
        &self,
        _host: &str,
        _role: &str,
        _role_defaults: &Vars,
        _run_defaults: &Vars,
    ) -> Option<Result<minijinja::Value, String>> {
        None
    }

    /// `hostvars` (host → that host's variables) for templates. Given here, it is converted
    /// once per step and shared by every host's context; included in every `vars_for` answer
    /// instead, it is converted per host and role — quadratic in the number of hosts.
    fn hostvars(&self) -> Option<Vars> {
        None
    }

    /// The Kubernetes version the cluster installs (`1.20.2`, `1.36.3`: the version of the
    /// artifact set's kube-apiserver). The planner gives templates its version-dependent
    /// choices as `kube` (`plan::kube`); None leaves `kube` undefined.
    fn kube_version(&self) -> Option<String> {
        None
    }

    /// The images of the cluster's artifact set, by name, as templates see them (`images`);
    /// None leaves `images` undefined.
    fn images(&self) -> Option<IndexMap<String, ImageName>> {
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

/// A container image archive on the deploy machine (OCI layout, `ctr images import` reads it).
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub path: PathBuf,
    /// Hex sha256 of the archive file.
    pub sha256: String,
    /// The reference containerd names it by (`ezk.local/pause:3.4`).
    pub reference: String,
    /// The image's manifest digest (`sha256:…`), as `ctr images ls` shows it.
    pub digest: String,
}

/// What a registry needs to serve an image of the store: the repository it is served under
/// (`<registry>/<repository>`, e.g. `registry.k8s.io/pause`), its tag, its manifest and the
/// config and layer blobs the manifest names, each a verified file: (digest `sha256:…`, path).
#[derive(Debug, Clone)]
pub struct ImageBlobs {
    pub repository: String,
    pub tag: String,
    pub manifest: (String, PathBuf),
    pub blobs: Vec<(String, PathBuf)>,
}

/// An image of the artifact set as templates see it (`images.<name>.registry`, …): what its
/// reference says, from the versions manifest (nothing needs to be downloaded).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageName {
    pub reference: String,
    /// Registry host as the reference writes it (`registry.k8s.io`, `docker.io`, `ezk.local`).
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

/// File contents that come from the deploy machine rather than from templates.
pub trait DeployFiles {
    /// Certificate `id` (e.g. `etcd`, `kubernetes`, `kubelet`) as issued for `host`.
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String>;
    /// Kubeconfig `name` (admin, kube-controller-manager, kube-scheduler, kube-proxy, kubelet)
    /// for `host`.
    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String>;
    /// Secret file `name` (e.g. `encryption-config`) for `host`, made on the deploy machine.
    fn secret(&self, host: &str, name: &str) -> Result<String, String>;
    /// Binary `name` from the artifact store.
    fn binary(&self, name: &str) -> Result<StoredBinary, String>;
    /// Binary `name` as a file a host receives: the stored file, or (files that know the
    /// version set) `Content::NotDownloaded` when the store does not hold it yet, so a plan
    /// or a render works before any download.
    fn binary_content(&self, name: &str) -> Result<Content, String> {
        let b = self.binary(name)?;
        Ok(Content::Local { path: b.path, sha256: b.sha256 })
    }
    /// Image `name` of the artifact set from the store.
    fn image(&self, name: &str) -> Result<StoredImage, String>;
    /// The manifest and blobs of image `name`, for a registry to serve (`image: {registry_dir}`).
    fn image_blobs(&self, name: &str) -> Result<ImageBlobs, String> {
        Err(format!("image `{name}`: its blobs are not available here"))
    }
    /// The sha256 (hex) of a file on the deploy machine, for a `copy` whose `src` is an absolute
    /// path (as in Ansible): the file is streamed from disk at apply time, never held in the
    /// plan. The error names the path.
    fn local_file(&self, path: &Path) -> Result<String, String>;
    /// The file name (under `ca_dir`) of the certificate kube-controller-manager signs with,
    /// as templates see it (`cluster_ca_signing_file`): `ca.pem` unless the PKI says otherwise
    /// (while a cluster CA rotation has `ca.pem` hold two CAs).
    fn cluster_signing_file(&self) -> &'static str {
        "ca.pem"
    }
}
