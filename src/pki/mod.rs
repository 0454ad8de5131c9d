//! In-process PKI (rcgen): CAs, component certificates, kubeconfigs under clusters/<name>/ssl/.
//!
//! `Pki::ensure` issues what is missing or stale and reuses the rest (`issue`, with the
//! manifest of `ssl_dir` saying what each file was issued from); `cert_files`/`kubeconfig`
//! hand out exactly the files a host's role may receive (`access`; the server each kubeconfig
//! names is chosen in `kubeconfig`) — workers never get a CA key or the service-account key.
//! Certificate ids are documented in `cert_ids`; `inspect` reads certificates back for
//! `ezk certs`.
//!
//! Safer than kubeasz's cfssl setup: separate etcd and front-proxy CAs, a dedicated
//! service-account key pair instead of the CA key, ECDSA P-256 keys, 0600 keys in a 0700 dir.

mod access;
mod adopt;
mod ca;
pub mod cert_ids;
pub mod encryption;
mod error;
mod from_inventory;
pub mod inspect;
mod issue;
mod keys;
pub mod kubeconfig;
pub mod rotate;
pub mod spec;
pub mod ssl_dir;
pub mod user;

use std::path::{Path, PathBuf};

pub use ca::sha256_hex;
pub use cert_ids::{CaKind, IDS, IdDef, IdKind, Role, Server, cert_ids, help_table, kubeconfigs, secret_ids};
pub use error::PkiError;
pub use from_inventory::from_inventory;
pub use spec::{Member, PkiSpec};

use cert_ids::LeafDef;
use ssl_dir::{KEY_MODE, ensure_private_dir, read_opt, write_atomic};

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
    /// Leaf stems found in place (not issued by ezk, e.g. kubeasz's) and kept as they are.
    pub kept: Vec<String>,
}

/// The PKI of one cluster, after `ensure`.
#[derive(Debug)]
pub struct Pki {
    ssl: PathBuf,
    spec: PkiSpec,
    leaves: Vec<LeafDef>,
    outcome: Outcome,
    /// One CA signs everything (a PKI kubeasz made; see `adopt`).
    one_ca: bool,
    /// In a one-CA PKI, etcd has its own CA all the same (moved there by a rotation).
    own_etcd_ca: bool,
    /// The CA rotations under way or finished (`rotate`: etcd's, the cluster CA's): what the
    /// trust files hold.
    rotations: Vec<rotate::Rotation>,
    /// Leaf stems that must be issued by a CA whose key is not here, with that key's path.
    pending: Vec<(String, PathBuf)>,
}

impl Pki {
    /// Issue or reuse everything under `cluster_dir/ssl/`; also writes the deploy machine's
    /// admin kubeconfig to `cluster_dir/kubectl.kubeconfig` (kubeasz's name).
    pub fn ensure(cluster_dir: &Path, spec: &PkiSpec) -> Result<Pki, PkiError> {
        issue::ensure_all(cluster_dir, spec, false, false)
    }

    /// Open without issuing or writing anything (for reports such as `ezk certs`).
    pub fn open(cluster_dir: &Path, spec: &PkiSpec) -> Result<Pki, PkiError> {
        spec.validate()?;
        let ssl = cluster_dir.join("ssl");
        let manifest = ssl_dir::Manifest::load(&ssl)?;
        let one_ca = adopt::one_ca(&ssl, &manifest);
        Ok(Pki {
            ssl,
            spec: spec.clone(),
            leaves: cert_ids::leaves(spec)?,
            outcome: Outcome::default(),
            one_ca,
            own_etcd_ca: manifest.own_etcd_ca,
            rotations: manifest.rotation.into_iter().chain(manifest.cluster_rotation).collect(),
            pending: Vec::new(),
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
        if let Some(ca) = rotate::in_progress(cluster_dir)? {
            return Err(PkiError::BadFile {
                path: ssl_dir::Manifest::path(&cluster_dir.join("ssl")),
                msg: format!("records a rotation of the {ca} CA under way; finish it first (`ezk rotate-ca <cluster> {ca}`)"),
            });
        }
        let backup = backup_ssl(cluster_dir)?;
        Ok((issue::ensure_all(cluster_dir, spec, true, new_ca)?, backup))
    }

    /// What this `ensure`/`renew` issued, reused or created.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// `clusters/<name>/ssl`.
    pub fn ssl_dir(&self) -> &Path {
        &self.ssl
    }

    /// Whether one CA (`ca.pem`) signs everything: a PKI kubeasz made, kept as it is.
    pub fn one_ca(&self) -> bool {
        self.one_ca
    }

    /// The file stem of the CA that signs what `kind` names here (`ca` for all in a one-CA PKI,
    /// but for etcd once a rotation gave it a CA of its own).
    pub fn ca_stem(&self, kind: CaKind) -> &'static str {
        if self.one_ca && !(kind == CaKind::Etcd && self.own_etcd_ca) { CaKind::Cluster.stem() } else { kind.stem() }
    }

    /// The rotation that bundles what holders of `kind`'s certificates trust: etcd's for the
    /// etcd CA; the cluster CA's for every kind that CA signs (in a one-CA PKI, front-proxy too).
    fn bundling_rotation(&self, kind: CaKind) -> Option<&rotate::Rotation> {
        self.rotations.iter().filter(|r| r.bundling()).find(|r| match r.kind() {
            CaKind::Etcd => kind == CaKind::Etcd,
            rotated => self.ca_stem(kind) == rotated.stem(),
        })
    }

    /// The CA certificates a holder of `kind`'s certificates trusts: the signing CA, and during
    /// phases 1 and 2 of a rotation of that CA the old and the new one (`rotate`).
    fn trust_pem(&self, kind: CaKind) -> Result<String, PkiError> {
        if let Some(files) = self.bundling_rotation(kind).and_then(|r| r.bundle_files()) {
            let mut out = String::new();
            for f in files {
                let pem = self.read(&f)?;
                out.push_str(pem.trim_end());
                out.push('\n');
            }
            return Ok(out);
        }
        self.read(&format!("{}.pem", self.ca_stem(kind)))
    }

    /// The file on the masters that holds the certificate kube-controller-manager signs with
    /// (`--cluster-signing-cert-file`, beside `ca-key.pem`): `ca.pem`, but while `ca.pem` holds
    /// two CAs (phases 1 and 2 of a cluster CA rotation) `ca-signing.pem`, the signing CA
    /// alone — the controller-manager refuses a signing file with more than one certificate.
    pub fn cluster_signing_file(&self) -> &'static str {
        if self.bundling_rotation(CaKind::Cluster).is_some() { "ca-signing.pem" } else { "ca.pem" }
    }

    /// `ssl/etcd-trust.pem`: what the etcd client tools on this machine verify the members
    /// with (the etcd CA; both CAs while a rotation hands out certificates of either).
    pub fn etcd_trust_path(&self) -> PathBuf {
        self.ssl.join(rotate::TRUST_FILE)
    }

    /// Write `etcd-trust.pem` when its content changed (see `etcd_trust_path`).
    fn write_etcd_trust(&self) -> Result<(), PkiError> {
        let Ok(pem) = self.trust_pem(CaKind::Etcd) else { return Ok(()) };
        let path = self.etcd_trust_path();
        if read_opt(&path)?.as_deref() != Some(pem.as_str()) {
            write_atomic(&path, pem.as_bytes(), ssl_dir::CERT_MODE)?;
        }
        Ok(())
    }

    /// The error for a certificate that must be issued by a CA whose key is offline.
    fn pending_error(&self, stem: &str) -> Option<PkiError> {
        self.pending.iter().find(|(s, _)| s == stem).map(|(s, key)| PkiError::NeedsCaKey {
            what: format!("certificate {s}.pem"),
            key: key.clone(),
        })
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
        if let Some(e) = self.pending_error(&def.stem) {
            return Err(e);
        }
        Ok((c, k, self.ssl.join(format!("{}.pem", self.ca_stem(def.ca)))))
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
            let pem = self.trust_pem(kind)?;
            Ok(CertFiles {
                cert_pem: pem.clone(),
                key_pem: None,
                ca_pem: Some(pem),
            })
        };
        match cert_ids::id_def(id).map(|d| d.kind) {
            Some(IdKind::Ca(kind)) => ca_only(kind),
            // The signing CA alone (trust bundles are for `ca`), with its key.
            Some(IdKind::CaWithKey) => {
                let pem = self.read(&format!("{}.pem", self.ca_stem(CaKind::Cluster)))?;
                let mut f = CertFiles { cert_pem: pem.clone(), key_pem: None, ca_pem: Some(pem) };
                let key = self.ssl.join("ca-key.pem");
                if !key.exists() {
                    return Err(PkiError::NeedsCaKey { what: "ca-key (kube-controller-manager signs with it)".into(), key });
                }
                f.key_pem = Some(SecretPem(self.read("ca-key.pem")?));
                Ok(f)
            }
            Some(IdKind::SaKeyPair) if self.one_ca && !self.ssl.join("sa.key").exists() => Err(PkiError::NeedsCaKey {
                what: "sa.key (kubeasz signs ServiceAccount tokens with its CA key; ezk signs with the same key so that the tokens pods hold stay valid)".into(),
                key: self.ssl.join("ca-key.pem"),
            }),
            Some(IdKind::SaKeyPair) => Ok(CertFiles {
                cert_pem: self.read("sa.pub")?,
                key_pem: Some(SecretPem(self.read("sa.key")?)),
                ca_pem: None,
            }),
            Some(IdKind::Leaf { .. }) => {
                let def = self
                    .leaves
                    .iter()
                    .find(|l| l.stem == stem)
                    .ok_or_else(|| unknown(id))?;
                if let Some(e) = self.pending_error(stem) {
                    return Err(e);
                }
                Ok(CertFiles {
                    cert_pem: self.read(&format!("{stem}.pem"))?,
                    key_pem: Some(SecretPem(self.read(&format!("{stem}-key.pem"))?)),
                    ca_pem: Some(self.trust_pem(def.ca)?),
                })
            }
            Some(IdKind::Secret) | None => Err(unknown(id)),
        }
    }
}

/// Copy every file of `cluster_dir/ssl/` to a new `ssl.bak-<unix time>[-n]/` (0700, files 0600)
/// and return its path; nothing to copy when there is no ssl/ yet.
pub(crate) fn backup_ssl(cluster_dir: &Path) -> Result<PathBuf, PkiError> {
    let ssl = cluster_dir.join("ssl");
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    // Two backups within one second must not share (and overwrite) one directory.
    let backup = (0..)
        .map(|n| cluster_dir.join(if n == 0 { format!("ssl.bak-{stamp}") } else { format!("ssl.bak-{stamp}-{n}") }))
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
    Ok(backup)
}

/// An id that is not in the catalog.
fn unknown(id: &str) -> PkiError {
    PkiError::Unknown {
        id: id.into(),
        known: IDS.iter().map(|d| d.id).collect::<Vec<_>>().join(", "),
    }
}

