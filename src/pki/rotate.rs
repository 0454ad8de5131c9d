//! Rotating a CA (the etcd CA, or the cluster's Kubernetes CA) without cutting anyone off: the
//! state under `ssl/` that the PKI hands out from, phase by phase (`ops::rotate_ca` rolls each
//! phase out to the hosts). Each CA kind has a rotation state of its own; the files of a kind
//! are named after its CA's stem (`etcd-ca`, `ca`):
//!
//! 1. **trust both**: a new CA is made beside the old one (`<stem>-new.pem`, key beside it);
//!    the old CA certificate is copied to `<stem>-old.pem`. Every trust file of that CA handed
//!    out (for etcd: the members' `etcd-ca.pem`, the apiservers' `apiserver-etcd-ca.pem`, this
//!    machine's `etcd-trust.pem`; for the cluster CA: every `ca.pem`, every kubeconfig's
//!    certificate-authority-data, this machine's `kubectl.kubeconfig`) is old + new; every
//!    certificate is still the old CA's.
//! 2. **re-issue**: the new CA takes the old one's place (`<stem>.pem` + key; in a one-CA PKI
//!    that kubeasz made, etcd gets this CA of its own: `own_etcd_ca`), so every certificate it
//!    signs is issued from it; trust stays old + new.
//! 3. **drop the old**: trust files hold the new CA only.
//!
//! The state is recorded in `ssl/manifest.json` (`rotation` for etcd, `cluster_rotation` for
//! the cluster CA) before anything is handed out from it, and whether the phase reached every
//! host (`rolled`) after it did, so a run killed anywhere is continued by the next. Every
//! transition is idempotent: the swap of phase 2 copies the same files again when it is
//! repeated. The finished rotation stays recorded, so a re-run changes nothing; another
//! rotation is asked for explicitly. One rotation at a time: another CA's waits.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use super::ca::{load_or_create_at, sha256_hex};
use super::cert_ids::CaKind;
use super::error::PkiError;
// `clusters/<name>/.pki.lock`, held while ssl/ is written, as issuing holds it.
use super::issue::issue_lock as lock;
use super::ssl_dir::{CERT_MODE, KEY_MODE, Manifest, read_opt, write_atomic};

/// This machine's etcd trust file (for etcdctl in backup, restore, add-etcd, del-etcd).
pub const TRUST_FILE: &str = "etcd-trust.pem";

/// The CAs `ezk rotate-ca` rotates, as the command names them.
pub const ROTATED: [(&str, CaKind); 2] = [("etcd", CaKind::Etcd), ("kubernetes", CaKind::Cluster)];

/// The command's name of CA `kind`.
pub fn ca_name(kind: CaKind) -> &'static str {
    ROTATED.iter().find(|(_, k)| *k == kind).map_or("front-proxy", |(n, _)| n)
}

/// The new CA's file stem until it takes the old one's place (`etcd-ca-new`, `ca-new`).
pub fn new_stem(kind: CaKind) -> String {
    format!("{}-new", kind.stem())
}

/// The old CA's certificate, kept for the trust bundle until phase 3 (`etcd-ca-old.pem`).
pub fn old_file(kind: CaKind) -> String {
    format!("{}-old.pem", kind.stem())
}

/// The phases, as `--plan` and the run name them, for CA `kind`.
pub fn phases(kind: CaKind) -> [&'static str; 3] {
    match kind {
        CaKind::Etcd => [
            "trust both: every etcd trust file becomes the old + the new CA",
            "re-issue: etcd's server/peer certificate and every etcd client certificate from the new CA",
            "drop the old CA: every etcd trust file holds the new CA only",
        ],
        _ => [
            "trust both: every file that trusts the cluster CA (ca.pem, kubeconfigs, the pods' kube-root-ca.crt) becomes the old + the new CA",
            "re-issue: the apiserver's serving certificate, every client certificate and the controller-manager's signing CA from the new CA",
            "drop the old CA: every file that trusts the cluster CA holds the new CA only",
        ],
    }
}

/// One rotation of a CA, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The CA rotated: `etcd`, `kubernetes`.
    pub ca: String,
    /// The phase handed out now (1, 2, 3).
    pub phase: u8,
    /// Whether this phase reached every host (each restarted and healthy).
    pub rolled: bool,
    /// sha256 of the old and the new CA certificate (DER).
    pub old_sha256: String,
    pub new_sha256: String,
    /// The stem of the CA that signed the certificates before (`ca` for kubeasz's one CA).
    pub old_stem: String,
    /// Unix time the last phase reached every host: the rotation is finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
}

impl Rotation {
    /// The CA kind this rotation rotates.
    pub fn kind(&self) -> CaKind {
        ROTATED.iter().find(|(n, _)| *n == self.ca).map_or(CaKind::Etcd, |(_, k)| *k)
    }

    /// The CA files the trust bundle is made of, while it holds two CAs.
    pub fn bundle_files(&self) -> Option<[String; 2]> {
        let kind = self.kind();
        (self.finished.is_none() && self.phase < 3).then(|| [old_file(kind), format!("{}.pem", new_stem(kind))])
    }

    /// Whether trust files hold both CAs now (phases 1 and 2, not finished).
    pub fn bundling(&self) -> bool {
        self.bundle_files().is_some()
    }
}

impl Manifest {
    /// The rotation state of CA `kind`.
    pub fn rotation_of(&mut self, kind: CaKind) -> &mut Option<Rotation> {
        match kind {
            CaKind::Cluster => &mut self.cluster_rotation,
            _ => &mut self.rotation,
        }
    }
}

/// The rotation of CA `kind` recorded for `cluster_dir` (None: never rotated).
pub fn status(cluster_dir: &Path, kind: CaKind) -> Result<Option<Rotation>, PkiError> {
    Ok(Manifest::load(&cluster_dir.join("ssl"))?.rotation_of(kind).clone())
}

/// Whether a rotation of any CA is under way (not finished): other CA changes must wait for
/// it. Returns the command's name of the CA under rotation.
pub fn in_progress(cluster_dir: &Path) -> Result<Option<&'static str>, PkiError> {
    for (name, kind) in ROTATED {
        if status(cluster_dir, kind)?.is_some_and(|r| r.finished.is_none()) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn der_of(path: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, p) = parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::BadFile { path: path.to_path_buf(), msg: format!("not a PEM certificate: {e}") })?;
    Ok(p.contents)
}

/// Start a rotation of CA `kind` (phase 1, not rolled yet): back up ssl/, copy the old CA
/// certificate to `<stem>-old.pem`, make the new CA. The PKI must have been ensured (the old CA
/// exists). Returns the rotation and the backup directory.
pub fn begin(cluster_dir: &Path, kind: CaKind, validity: ::time::Duration) -> Result<(Rotation, PathBuf), PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    if let Some(r) = manifest.rotation_of(kind).as_ref().filter(|r| r.finished.is_none()) {
        return Ok((r.clone(), PathBuf::new()));
    }
    if let Some(other) = ROTATED.iter().find(|(_, k)| *k != kind && manifest.rotation_of(*k).as_ref().is_some_and(|r| r.finished.is_none())) {
        return Err(PkiError::BadFile {
            path: Manifest::path(&ssl),
            msg: format!("records a rotation of the {0} CA under way; finish it first (`ezk rotate-ca <cluster> {0}`), then rotate this one", other.0),
        });
    }
    let old_stem = match kind {
        CaKind::Etcd if manifest.one_ca && !manifest.own_etcd_ca => CaKind::Cluster.stem(),
        CaKind::Cluster if manifest.one_ca && !manifest.own_etcd_ca => {
            return Err(PkiError::BadFile {
                path: ssl.join("ca.pem"),
                msg: "signs the etcd certificates too (one CA, as kubeasz makes it): rotate the etcd CA first (`ezk rotate-ca <cluster> etcd` gives etcd a CA of its own), then the cluster CA".into(),
            });
        }
        _ => kind.stem(),
    };
    let old_path = ssl.join(format!("{old_stem}.pem"));
    let old_pem = read_opt(&old_path)?.ok_or_else(|| PkiError::BadFile { path: old_path.clone(), msg: format!("missing: there is no {} CA to rotate (set the cluster up first)", ca_name(kind)) })?;
    let old_der = der_of(&old_path, &old_pem)?;
    let backup = super::backup_ssl(cluster_dir)?;
    write_atomic(&ssl.join(old_file(kind)), old_pem.as_bytes(), CERT_MODE)?;
    // A new CA left by a begin that died before the manifest was written is taken as it is.
    let cn = format!("{}-{}", kind.common_name(), ::time::OffsetDateTime::now_utc().unix_timestamp());
    let new = load_or_create_at(&ssl, kind, &new_stem(kind), &cn, validity, false)?;
    if new.fingerprint == sha256_hex(&old_der) {
        return Err(PkiError::BadFile { path: ssl.join(format!("{}.pem", new_stem(kind))), msg: "is the old CA itself; remove it and run again".into() });
    }
    let r = Rotation {
        ca: ca_name(kind).into(),
        phase: 1,
        rolled: false,
        old_sha256: sha256_hex(&old_der),
        new_sha256: new.fingerprint.clone(),
        old_stem: old_stem.into(),
        finished: None,
    };
    *manifest.rotation_of(kind) = Some(r.clone());
    manifest.save(&ssl)?;
    Ok((r, backup))
}

/// Record that the current phase of `kind`'s rotation reached every host; after phase 3 the
/// rotation is finished and the files only it used are removed (the backup made by `begin`
/// keeps the old CA).
pub fn mark_rolled(cluster_dir: &Path, kind: CaKind) -> Result<Rotation, PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    let r = manifest.rotation_of(kind).as_mut().ok_or_else(|| no_rotation(&ssl))?;
    r.rolled = true;
    if r.phase == 3 && r.finished.is_none() {
        r.finished = Some(::time::OffsetDateTime::now_utc().unix_timestamp());
    }
    let r = r.clone();
    manifest.save(&ssl)?;
    if r.finished.is_some() {
        let new = new_stem(kind);
        for f in [format!("{new}.pem"), format!("{new}-key.pem"), old_file(kind)] {
            match std::fs::remove_file(ssl.join(&f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(PkiError::io(ssl.join(&f))(e)),
                _ => {}
            }
        }
    }
    Ok(r)
}

/// Go to the next phase of `kind`'s rotation once the current one is rolled: 1 → 2 puts the
/// new CA in the old one's place (key first, then certificate; repeated as a whole when
/// interrupted).
pub fn advance(cluster_dir: &Path, kind: CaKind) -> Result<Rotation, PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    let r = manifest.rotation_of(kind).clone().ok_or_else(|| no_rotation(&ssl))?;
    if !r.rolled || r.phase >= 3 {
        return Ok(r);
    }
    if r.phase == 1 {
        let new = new_stem(kind);
        let read = |f: String| -> Result<String, PkiError> {
            let p = ssl.join(&f);
            read_opt(&p)?.ok_or_else(|| PkiError::BadFile { path: p, msg: "missing: the new CA of the rotation under way; restore it from the newest ssl.bak-*/".into() })
        };
        let (cert, key) = (read(format!("{new}.pem"))?, read(format!("{new}-key.pem"))?);
        if sha256_hex(&der_of(&ssl.join(format!("{new}.pem")), &cert)?) != r.new_sha256 {
            return Err(PkiError::BadFile { path: ssl.join(format!("{new}.pem")), msg: "is not the new CA this rotation started with".into() });
        }
        write_atomic(&ssl.join(format!("{}-key.pem", kind.stem())), key.as_bytes(), KEY_MODE)?;
        write_atomic(&ssl.join(format!("{}.pem", kind.stem())), cert.as_bytes(), CERT_MODE)?;
        if kind == CaKind::Etcd && manifest.one_ca {
            manifest.own_etcd_ca = true;
        }
    }
    let next = manifest.rotation_of(kind).as_mut().expect("loaded above");
    next.phase += 1;
    next.rolled = false;
    let next = next.clone();
    manifest.save(&ssl)?;
    Ok(next)
}

/// Forget a finished rotation of `kind`, so that the next `begin` starts another.
pub fn forget_finished(cluster_dir: &Path, kind: CaKind) -> Result<(), PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    if manifest.rotation_of(kind).as_ref().is_some_and(|r| r.finished.is_some()) {
        *manifest.rotation_of(kind) = None;
        manifest.save(&ssl)?;
    }
    Ok(())
}

fn no_rotation(ssl: &Path) -> PkiError {
    PkiError::BadFile { path: Manifest::path(ssl), msg: "records no CA rotation".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Pki, PkiSpec};

    fn spec() -> PkiSpec {
        serde_yaml::from_str(
            "cluster_name: c\ncontext_name: c\netcd: [{host: 10.0.0.1, name: etcd-10.0.0.1, ip: 10.0.0.1}]\nmasters: [{host: 10.0.0.1, name: m1, ip: 10.0.0.1}]\nnodes: [{host: 10.0.0.1, name: m1, ip: 10.0.0.1}]\nvips: []\nmaster_cert_hosts: []\nservice_cidr: 10.68.0.0/16\ncluster_dns_domain: cluster.local\nsecure_port: 6443\nex_apiserver_port: 8443\nnode_lb_port: 6443\nca_expiry: 876000h\ncert_expiry: 438000h\n",
        )
        .unwrap()
    }

    fn count_certs(pem: &str) -> usize {
        pem.matches("BEGIN CERTIFICATE").count()
    }

    #[test]
    fn phases_hand_out_both_then_new_certs_then_new_trust_only() {
        let d = tempfile::tempdir().unwrap();
        let spec = spec();
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let old_ca = pki.cert_files("etcd-ca", "10.0.0.1").unwrap().cert_pem;
        let old_etcd = pki.cert_files("etcd", "10.0.0.1").unwrap().cert_pem;
        let (r, backup) = begin(d.path(), CaKind::Etcd, spec.ca_validity().unwrap()).unwrap();
        assert!(backup.join("etcd-ca-key.pem").exists());
        assert_eq!((r.phase, r.rolled), (1, false));
        // Phase 1: trust both, certificates unchanged.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let f = pki.cert_files("etcd", "10.0.0.1").unwrap();
        assert_eq!(f.cert_pem, old_etcd);
        assert_eq!(count_certs(f.ca_pem.as_deref().unwrap()), 2);
        assert!(f.ca_pem.as_deref().unwrap().contains(old_ca.trim()));
        assert_eq!(std::fs::read_to_string(pki.etcd_trust_path()).unwrap(), f.ca_pem.clone().unwrap());
        // Advancing before the roll does nothing.
        assert_eq!(advance(d.path(), CaKind::Etcd).unwrap().phase, 1);
        mark_rolled(d.path(), CaKind::Etcd).unwrap();
        let r = advance(d.path(), CaKind::Etcd).unwrap();
        assert_eq!((r.phase, r.rolled), (2, false));
        // Phase 2: new certificates from the new CA, trust still both.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let f = pki.cert_files("etcd", "10.0.0.1").unwrap();
        assert_ne!(f.cert_pem, old_etcd);
        assert_eq!(count_certs(f.ca_pem.as_deref().unwrap()), 2);
        assert!(pki.outcome().issued.iter().any(|s| s == "etcd-client"));
        mark_rolled(d.path(), CaKind::Etcd).unwrap();
        assert_eq!(advance(d.path(), CaKind::Etcd).unwrap().phase, 3);
        // Phase 3: trust the new CA only.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let f = pki.cert_files("etcd", "10.0.0.1").unwrap();
        let ca = f.ca_pem.unwrap();
        assert_eq!(count_certs(&ca), 1);
        assert!(!ca.contains(old_ca.trim()));
        let r = mark_rolled(d.path(), CaKind::Etcd).unwrap();
        assert!(r.finished.is_some());
        assert!(!d.path().join("ssl").join(old_file(CaKind::Etcd)).exists());
        // A re-run of ensure reissues nothing.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        assert!(pki.outcome().issued.is_empty(), "{:?}", pki.outcome());
        assert!(in_progress(d.path()).unwrap().is_none());
    }

    fn key_of(pem: &str) -> Vec<u8> {
        let (_, p) = parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, c) = parse_x509_certificate(&p.contents).unwrap();
        c.public_key().raw.to_vec()
    }

    #[test]
    fn cluster_ca_phases_bundle_trust_keep_the_signing_ca_single_and_the_sa_key() {
        let d = tempfile::tempdir().unwrap();
        let spec = spec();
        let ssl = d.path().join("ssl");
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let old_ca = std::fs::read_to_string(ssl.join("ca.pem")).unwrap();
        let old_admin = pki.cert_files("admin", "10.0.0.1").unwrap().cert_pem;
        let old_etcd_ca = std::fs::read_to_string(ssl.join("etcd-ca.pem")).unwrap();
        let sa = std::fs::read_to_string(ssl.join("sa.key")).unwrap();
        begin(d.path(), CaKind::Cluster, spec.ca_validity().unwrap()).unwrap();
        // Another CA waits for this one.
        let e = begin(d.path(), CaKind::Etcd, spec.ca_validity().unwrap()).unwrap_err().to_string();
        assert!(e.contains("rotate-ca <cluster> kubernetes"), "{e}");
        // Phase 1: ca.pem, kubeconfigs and this machine's kubeconfig trust both; the signing CA is the old one, alone.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let ca = pki.cert_files("ca", "10.0.0.1").unwrap().cert_pem;
        assert_eq!(count_certs(&ca), 2);
        assert!(ca.contains(old_ca.trim()));
        let signing = pki.cert_files("ca-key", "10.0.0.1").unwrap();
        assert_eq!(signing.cert_pem.trim(), old_ca.trim());
        assert_eq!(pki.cert_files("admin", "10.0.0.1").unwrap().cert_pem, old_admin);
        let local = std::fs::read_to_string(d.path().join("kubectl.kubeconfig")).unwrap();
        assert!(local.contains(&crate::pki::kubeconfig::base64(ca.as_bytes())), "{local}");
        assert_eq!(pki.cluster_signing_file(), "ca-signing.pem");
        mark_rolled(d.path(), CaKind::Cluster).unwrap();
        advance(d.path(), CaKind::Cluster).unwrap();
        // Phase 2: every cluster-CA certificate from the new CA, trust still both; the signing CA is the new one.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let new_ca = std::fs::read_to_string(ssl.join("ca.pem")).unwrap();
        assert_ne!(new_ca, old_ca);
        assert!(pki.outcome().issued.iter().any(|s| s == "admin"));
        assert!(pki.outcome().issued.iter().any(|s| s == "kubernetes"));
        assert!(!pki.outcome().issued.iter().any(|s| s.starts_with("etcd")), "{:?}", pki.outcome());
        assert_eq!(count_certs(&pki.cert_files("kubernetes", "10.0.0.1").unwrap().ca_pem.unwrap()), 2);
        assert_eq!(pki.cert_files("ca-key", "10.0.0.1").unwrap().cert_pem.trim(), new_ca.trim());
        assert_eq!(key_of(&pki.cert_files("ca-key", "10.0.0.1").unwrap().cert_pem), key_of(&new_ca));
        mark_rolled(d.path(), CaKind::Cluster).unwrap();
        advance(d.path(), CaKind::Cluster).unwrap();
        // Phase 3: the new CA only; the signing file is ca.pem again.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        assert_eq!(pki.cert_files("ca", "10.0.0.1").unwrap().cert_pem.trim(), new_ca.trim());
        assert_eq!(pki.cluster_signing_file(), "ca.pem");
        mark_rolled(d.path(), CaKind::Cluster).unwrap();
        assert!(in_progress(d.path()).unwrap().is_none());
        // The ServiceAccount key and the etcd CA are untouched.
        assert_eq!(std::fs::read_to_string(ssl.join("sa.key")).unwrap(), sa);
        assert_eq!(std::fs::read_to_string(ssl.join("etcd-ca.pem")).unwrap(), old_etcd_ca);
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        assert!(pki.outcome().issued.is_empty(), "{:?}", pki.outcome());
    }

    #[test]
    fn cluster_ca_of_a_one_ca_pki_with_etcd_on_it_is_refused_untouched() {
        let d = tempfile::tempdir().unwrap();
        let spec = spec();
        let ssl = d.path().join("ssl");
        Pki::ensure(d.path(), &spec).unwrap();
        let mut m = Manifest::load(&ssl).unwrap();
        m.one_ca = true;
        m.save(&ssl).unwrap();
        let before = std::fs::read_to_string(Manifest::path(&ssl)).unwrap();
        let e = begin(d.path(), CaKind::Cluster, spec.ca_validity().unwrap()).unwrap_err().to_string();
        assert!(e.contains("rotate the etcd CA first") && e.contains("ezk rotate-ca <cluster> etcd"), "{e}");
        assert_eq!(std::fs::read_to_string(Manifest::path(&ssl)).unwrap(), before);
        assert!(!ssl.join("ca-new.pem").exists() && !ssl.join("ca-old.pem").exists());
    }
}
