//! In-process PKI (rcgen): CAs, component certificates, kubeconfigs under clusters/<name>/ssl/.
//!
//! `Pki::ensure` issues what is missing or stale and reuses the rest (see `store` for how);
//! `cert_files`/`kubeconfig` hand out exactly the files a host's role may receive — workers
//! never get a CA key or the service-account key. Certificate ids are documented in `catalog`.
//!
//! Safer than kubeasz's cfssl setup: separate etcd and front-proxy CAs, a dedicated
//! service-account key pair instead of the CA key, ECDSA P-256 keys, 0600 keys in a 0700 dir.

mod ca;
pub mod catalog;
mod cli;
mod error;
mod from_inventory;
pub mod installed;
mod issue;
mod keys;
pub mod kubeconfig;
pub mod report;
pub mod spec;
pub mod store;

use std::path::{Path, PathBuf};

pub use catalog::{CERT_IDS, CaKind, Role};
pub use cli::{cli_certs, cli_issue, cli_kca_renew};
pub use error::PkiError;
pub use from_inventory::from_inventory;
pub use kubeconfig::KUBECONFIG_NAMES;
pub use spec::{Member, PkiSpec};

use catalog::{LeafDef, allowed_roles, leaves, roles_of};
use store::{CERT_MODE, KEY_MODE, Manifest, ensure_private_dir, read_opt, write_atomic};

/// A private key in PEM. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    /// The PEM text, for writing to a file on a host. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// The files of one certificate id for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate (for `sa`: the public key).
    pub cert_pem: String,
    /// The private key, when this id carries one (`ca`, `etcd-ca`, `front-proxy-ca`: none).
    pub key_pem: Option<SecretPem>,
    /// The CA certificate that verifies `cert_pem` (`sa`: none).
    pub ca_pem: Option<String>,
}

/// What one `ensure`/`renew` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// CA stems created this run.
    pub created_cas: Vec<String>,
    /// Leaf stems issued this run.
    pub issued: Vec<String>,
    /// Leaf stems kept from a previous run.
    pub reused: Vec<String>,
}

/// The PKI of one cluster, after `ensure`.
#[derive(Debug)]
pub struct Pki {
    ssl: PathBuf,
    spec: PkiSpec,
    leaves: Vec<LeafDef>,
    outcome: Outcome,
}

impl Pki {
    /// Issue or reuse everything under `cluster_dir/ssl/`; also writes the deploy machine's
    /// admin kubeconfig to `cluster_dir/kubectl.kubeconfig` (kubeasz's name).
    pub fn ensure(cluster_dir: &Path, spec: &PkiSpec) -> Result<Pki, PkiError> {
        Self::run(cluster_dir, spec, false, false)
    }

    /// Open without issuing or writing anything (for reports such as `ezk certs`).
    pub fn open(cluster_dir: &Path, spec: &PkiSpec) -> Result<Pki, PkiError> {
        spec.validate()?;
        Ok(Pki {
            ssl: cluster_dir.join("ssl"),
            spec: spec.clone(),
            leaves: leaves(spec)?,
            outcome: Outcome::default(),
        })
    }

    /// `kca-renew`: back up ssl/ to `ssl.bak-<unix time>/`, then reissue every leaf
    /// certificate; with `new_ca`, the three CAs too. The service-account key pair is kept
    /// (rotating it would invalidate every token in the cluster).
    pub fn renew(
        cluster_dir: &Path,
        spec: &PkiSpec,
        new_ca: bool,
    ) -> Result<(Pki, PathBuf), PkiError> {
        // A bad spec must fail before the backup is made: nothing written on bad input.
        spec.validate()?;
        let ssl = cluster_dir.join("ssl");
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        // Two renewals within one second must not share (and overwrite) one backup.
        let backup = (0..)
            .map(|n| {
                cluster_dir.join(if n == 0 {
                    format!("ssl.bak-{stamp}")
                } else {
                    format!("ssl.bak-{stamp}-{n}")
                })
            })
            .find(|p| !p.exists())
            .expect("some backup name is free");
        if ssl.is_dir() {
            ensure_private_dir(&backup)?;
            for e in std::fs::read_dir(&ssl).map_err(PkiError::io(&ssl))? {
                let e = e.map_err(PkiError::io(&ssl))?;
                if e.file_type().map_err(PkiError::io(e.path()))?.is_file() {
                    let data = std::fs::read(e.path()).map_err(PkiError::io(e.path()))?;
                    write_atomic(&backup.join(e.file_name()), &data, KEY_MODE)?;
                }
            }
        }
        Ok((Self::run(cluster_dir, spec, true, new_ca)?, backup))
    }

    fn run(cluster_dir: &Path, spec: &PkiSpec, force: bool, new_ca: bool) -> Result<Pki, PkiError> {
        spec.validate()?;
        let ssl = cluster_dir.join("ssl");
        ensure_private_dir(&ssl)?;
        let mut outcome = Outcome::default();
        let ca_validity = spec.ca_validity()?;
        let mut cas = Vec::new();
        for kind in CaKind::ALL {
            let c = ca::load_or_create(&ssl, kind, ca_validity, new_ca)?;
            if c.created {
                outcome.created_cas.push(kind.stem().to_string());
            }
            cas.push(c);
        }
        ensure_sa(&ssl)?;

        let validity = spec.cert_validity()?;
        let mut manifest = Manifest::load(&ssl)?;
        let before = manifest.certs.clone();
        let leaves = leaves(spec)?;
        for def in &leaves {
            let ca = cas
                .iter()
                .find(|c| c.kind == def.ca)
                .expect("all CAs loaded");
            let inputs = issue::inputs_hash(def, ca, &spec.cert_expiry);
            if !force && issue::reusable(&ssl, def, manifest.certs.get(&def.stem), &inputs)? {
                outcome.reused.push(def.stem.clone());
                continue;
            }
            let entry = issue::issue(&ssl, def, ca, validity, inputs)?;
            manifest.certs.insert(def.stem.clone(), entry);
            outcome.issued.push(def.stem.clone());
        }
        // Forget certificates the spec no longer asks for (a removed node); files stay for audit.
        manifest
            .certs
            .retain(|stem, _| leaves.iter().any(|l| &l.stem == stem));
        if manifest.certs != before || !Manifest::path(&ssl).exists() {
            manifest.version = 1;
            manifest.save(&ssl)?;
        }
        let pki = Pki {
            ssl,
            spec: spec.clone(),
            leaves,
            outcome,
        };
        let local = cluster_dir.join("kubectl.kubeconfig");
        let text = pki.local_admin_kubeconfig()?;
        if read_opt(&local)?.as_deref() != Some(text.as_str()) {
            write_atomic(&local, text.as_bytes(), KEY_MODE)?;
        }
        Ok(pki)
    }

    /// What this `ensure`/`renew` issued, reused or created.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// `clusters/<name>/ssl`.
    pub fn ssl_dir(&self) -> &Path {
        &self.ssl
    }

    /// The spec this PKI was ensured for.
    pub fn spec(&self) -> &PkiSpec {
        &self.spec
    }

    /// Files of certificate `id` for inventory host `host`; refused when the host's roles may
    /// not receive it (see the table in `catalog`).
    pub fn cert_files(&self, id: &str, host: &str) -> Result<CertFiles, PkiError> {
        self.check_access(id, host)?;
        let stem = match id {
            "kubelet" => self.kubelet_def(host)?.stem.clone(),
            other => other.to_string(),
        };
        self.files_for(id, &stem)
    }

    /// Paths on the deploy machine of certificate `id` (cert, key, CA), for local tools such as
    /// etcdctl with `etcd-client`. For `kubelet`, `node` names the inventory host.
    pub fn local_paths(
        &self,
        id: &str,
        node: Option<&str>,
    ) -> Result<(PathBuf, PathBuf, PathBuf), PkiError> {
        let def = match (id, node) {
            ("kubelet", Some(h)) => self.kubelet_def(h)?,
            _ => self
                .leaves
                .iter()
                .find(|l| l.id == id && l.host.is_none())
                .ok_or_else(|| unknown(id))?,
        };
        let (c, k) = issue::leaf_paths(&self.ssl, &def.stem);
        Ok((c, k, self.ssl.join(format!("{}.pem", def.ca.stem()))))
    }

    /// Kubeconfig `name` (see `KUBECONFIG_NAMES`) for `host`, with the server each component
    /// uses: admin → VIP:EX_APISERVER_PORT (else first master:SECURE_PORT); controller-manager
    /// and scheduler → 127.0.0.1:SECURE_PORT; kube-proxy and kubelet → the node-local LB.
    pub fn kubeconfig(&self, name: &str, host: &str) -> Result<String, PkiError> {
        if !KUBECONFIG_NAMES.contains(&name) {
            return Err(PkiError::Unknown {
                id: name.into(),
                known: KUBECONFIG_NAMES.join(", "),
            });
        }
        let files = self.cert_files(name, host)?;
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let server = match name {
            "admin" => self.admin_server(),
            "kube-controller-manager" | "kube-scheduler" => {
                kubeconfig::server_url(loopback, self.spec.secure_port)
            }
            _ => kubeconfig::server_url(loopback, self.spec.node_lb_port),
        };
        let user = match name {
            "kubelet" => self.kubelet_def(host)?.cn.clone(),
            other => other.to_string(),
        };
        Ok(self.render_kubeconfig(&user, &server, &files))
    }

    /// The admin kubeconfig for the deploy machine (same as a master's).
    pub fn local_admin_kubeconfig(&self) -> Result<String, PkiError> {
        let files = self.files_for("admin", "admin")?;
        Ok(self.render_kubeconfig("admin", &self.admin_server(), &files))
    }

    fn render_kubeconfig(&self, user: &str, server: &str, f: &CertFiles) -> String {
        kubeconfig::render(&kubeconfig::KubeconfigInput {
            cluster: &self.spec.cluster_name,
            context: &self.spec.context_name,
            user,
            server,
            ca_pem: f.ca_pem.as_deref().unwrap_or_default(),
            cert_pem: &f.cert_pem,
            key_pem: f.key_pem.as_ref().map(|k| k.expose()).unwrap_or_default(),
        })
    }

    fn admin_server(&self) -> String {
        match self.spec.vips.first() {
            Some(vip) => kubeconfig::server_url(*vip, self.spec.ex_apiserver_port),
            None => kubeconfig::server_url(self.spec.masters[0].ip, self.spec.secure_port),
        }
    }

    fn check_access(&self, id: &str, host: &str) -> Result<(), PkiError> {
        let allowed = allowed_roles(id).ok_or_else(|| unknown(id))?;
        let roles = roles_of(&self.spec, host);
        if roles.is_empty() {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: "the host is in no etcd, kube_master or kube_node group".into(),
            });
        }
        if allowed.is_empty() {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: "it is for the deploy machine only (use Pki::local_paths)".into(),
            });
        }
        if !roles.iter().any(|r| allowed.contains(r)) {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: format!("only {allowed:?} hosts may; this host is {roles:?}"),
            });
        }
        Ok(())
    }

    fn kubelet_def(&self, host: &str) -> Result<&LeafDef, PkiError> {
        self.leaves
            .iter()
            .find(|l| l.id == "kubelet" && l.host.as_deref() == Some(host))
            .ok_or_else(|| PkiError::NotAllowed {
                id: "kubelet".into(),
                host: host.into(),
                why: "the host is not a node".into(),
            })
    }

    fn read(&self, file: &str) -> Result<String, PkiError> {
        let p = self.ssl.join(file);
        read_opt(&p)?.ok_or_else(|| PkiError::BadFile {
            path: p,
            msg: "missing (not issued yet)".into(),
        })
    }

    fn files_for(&self, id: &str, stem: &str) -> Result<CertFiles, PkiError> {
        let ca_only = |kind: CaKind| -> Result<CertFiles, PkiError> {
            let pem = self.read(&format!("{}.pem", kind.stem()))?;
            Ok(CertFiles {
                cert_pem: pem.clone(),
                key_pem: None,
                ca_pem: Some(pem),
            })
        };
        match id {
            "ca" => ca_only(CaKind::Cluster),
            "etcd-ca" => ca_only(CaKind::Etcd),
            "front-proxy-ca" => ca_only(CaKind::FrontProxy),
            "ca-key" => {
                let mut f = ca_only(CaKind::Cluster)?;
                f.key_pem = Some(SecretPem(self.read("ca-key.pem")?));
                Ok(f)
            }
            "sa" => Ok(CertFiles {
                cert_pem: self.read("sa.pub")?,
                key_pem: Some(SecretPem(self.read("sa.key")?)),
                ca_pem: None,
            }),
            _ => {
                let def = self
                    .leaves
                    .iter()
                    .find(|l| l.stem == stem)
                    .ok_or_else(|| unknown(id))?;
                Ok(CertFiles {
                    cert_pem: self.read(&format!("{stem}.pem"))?,
                    key_pem: Some(SecretPem(self.read(&format!("{stem}-key.pem"))?)),
                    ca_pem: Some(self.read(&format!("{}.pem", def.ca.stem()))?),
                })
            }
        }
    }
}

fn unknown(id: &str) -> PkiError {
    PkiError::Unknown {
        id: id.into(),
        known: CERT_IDS.join(", "),
    }
}

/// The service-account key pair: created once, kept across runs and renewals.
fn ensure_sa(ssl: &Path) -> Result<(), PkiError> {
    let (key_path, pub_path) = (ssl.join("sa.key"), ssl.join("sa.pub"));
    match (read_opt(&key_path)?, read_opt(&pub_path)?) {
        (Some(k), Some(p)) => {
            let key = keys::key_from_pem(&k).map_err(|msg| PkiError::BadFile {
                path: key_path.clone(),
                msg,
            })?;
            if key.public_key_pem().trim() != p.trim() {
                return Err(PkiError::BadFile {
                    path: pub_path,
                    msg: "is not the public half of sa.key; delete sa.pub to re-derive it".into(),
                });
            }
            Ok(())
        }
        (Some(k), None) => {
            let key = keys::key_from_pem(&k).map_err(|msg| PkiError::BadFile {
                path: key_path,
                msg,
            })?;
            write_atomic(&pub_path, key.public_key_pem().as_bytes(), CERT_MODE)
        }
        (None, Some(_)) => Err(PkiError::HalfCa {
            present: pub_path,
            missing: key_path,
        }),
        (None, None) => {
            let key = rcgen::KeyPair::generate().map_err(|source| PkiError::Sign {
                id: "sa".into(),
                source,
            })?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
            write_atomic(&pub_path, key.public_key_pem().as_bytes(), CERT_MODE)
        }
    }
}
