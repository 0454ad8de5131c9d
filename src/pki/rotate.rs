//! Rotating the etcd CA without cutting anyone off: the state under `ssl/` that the PKI hands
//! out from, phase by phase (`ops::rotate_ca` rolls each phase out to the hosts).
//!
//! 1. **trust both**: a new CA is made beside the old one (`etcd-ca-new.pem`, key beside it);
//!    the old CA certificate is copied to `etcd-ca-old.pem`. Every etcd trust file handed out
//!    (the members' `etcd-ca.pem`, the apiservers' `apiserver-etcd-ca.pem`, this machine's
//!    `etcd-trust.pem`) is
//!    old + new; every certificate is still the old CA's.
//! 2. **re-issue**: the new CA takes the etcd CA's place (`etcd-ca.pem` + key; in a one-CA PKI
//!    that kubeasz made, etcd gets this CA of its own: `own_etcd_ca`), so the etcd server/peer
//!    certificate and every etcd client certificate are issued from it; trust stays old + new.
//! 3. **drop the old**: trust files hold the new CA only.
//!
//! The state is recorded in `ssl/manifest.json` (`rotation`) before anything is handed out
//! from it, and whether the phase reached every host (`rolled`) after it did, so a run killed
//! anywhere is continued by the next. Every transition is idempotent: the swap of phase 2
//! copies the same files again when it is repeated. The finished rotation stays recorded, so
//! a re-run changes nothing; another rotation is asked for explicitly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use super::ca::{load_or_create_at, sha256_hex};
use super::cert_ids::CaKind;
use super::error::PkiError;
// `clusters/<name>/.pki.lock`, held while ssl/ is written, as issuing holds it.
use super::issue::issue_lock as lock;
use super::ssl_dir::{CERT_MODE, KEY_MODE, Manifest, read_opt, write_atomic};

/// The new CA's file stem until it takes the etcd CA's place.
pub const NEW_STEM: &str = "etcd-ca-new";
/// The old CA's certificate, kept for the trust bundle until phase 3.
pub const OLD_FILE: &str = "etcd-ca-old.pem";
/// This machine's etcd trust file (for etcdctl in backup, restore, add-etcd, del-etcd).
pub const TRUST_FILE: &str = "etcd-trust.pem";

/// The phases, as `--plan` and the run name them.
pub const PHASES: [&str; 3] = [
    "trust both: every etcd trust file becomes the old + the new CA",
    "re-issue: etcd's server/peer certificate and every etcd client certificate from the new CA",
    "drop the old CA: every etcd trust file holds the new CA only",
];

/// One rotation of the etcd CA, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The CA rotated: `etcd`.
    pub ca: String,
    /// The phase handed out now (1, 2, 3).
    pub phase: u8,
    /// Whether this phase reached every host (each restarted and healthy).
    pub rolled: bool,
    /// sha256 of the old and the new CA certificate (DER).
    pub old_sha256: String,
    pub new_sha256: String,
    /// The stem of the CA that signed the etcd certificates before (`ca` for kubeasz's one CA).
    pub old_stem: String,
    /// Unix time the last phase reached every host: the rotation is finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
}

impl Rotation {
    /// The CA files the trust bundle is made of, while it holds two CAs.
    pub fn bundle_files(&self) -> Option<[&'static str; 2]> {
        (self.finished.is_none() && self.phase < 3).then_some([OLD_FILE, "etcd-ca-new.pem"])
    }
}

/// The rotation recorded for `cluster_dir` (None: never rotated).
pub fn status(cluster_dir: &Path) -> Result<Option<Rotation>, PkiError> {
    Ok(Manifest::load(&cluster_dir.join("ssl"))?.rotation)
}

/// Whether a rotation is under way (not finished): other CA changes must wait for it.
pub fn in_progress(cluster_dir: &Path) -> Result<bool, PkiError> {
    Ok(status(cluster_dir)?.is_some_and(|r| r.finished.is_none()))
}

fn der_of(path: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, p) = parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::BadFile { path: path.to_path_buf(), msg: format!("not a PEM certificate: {e}") })?;
    Ok(p.contents)
}

/// Start a rotation (phase 1, not rolled yet): back up ssl/, copy the old CA certificate to
/// `etcd-ca-old.pem`, make the new CA. The PKI must have been ensured (the old CA exists).
/// Returns the rotation and the backup directory.
pub fn begin(cluster_dir: &Path, validity: ::time::Duration) -> Result<(Rotation, PathBuf), PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    if let Some(r) = manifest.rotation.as_ref().filter(|r| r.finished.is_none()) {
        return Ok((r.clone(), PathBuf::new()));
    }
    let old_stem = if manifest.one_ca && !manifest.own_etcd_ca { CaKind::Cluster.stem() } else { CaKind::Etcd.stem() };
    let old_path = ssl.join(format!("{old_stem}.pem"));
    let old_pem = read_opt(&old_path)?.ok_or_else(|| PkiError::BadFile { path: old_path.clone(), msg: "missing: there is no etcd CA to rotate (run `ezk setup <cluster> 02` first)".into() })?;
    let old_der = der_of(&old_path, &old_pem)?;
    let backup = super::backup_ssl(cluster_dir)?;
    write_atomic(&ssl.join(OLD_FILE), old_pem.as_bytes(), CERT_MODE)?;
    // A new CA left by a begin that died before the manifest was written is taken as it is.
    let cn = format!("etcd-ca-{}", ::time::OffsetDateTime::now_utc().unix_timestamp());
    let new = load_or_create_at(&ssl, CaKind::Etcd, NEW_STEM, &cn, validity, false)?;
    if new.fingerprint == sha256_hex(&old_der) {
        return Err(PkiError::BadFile { path: ssl.join(format!("{NEW_STEM}.pem")), msg: "is the old CA itself; remove it and run again".into() });
    }
    let r = Rotation {
        ca: "etcd".into(),
        phase: 1,
        rolled: false,
        old_sha256: sha256_hex(&old_der),
        new_sha256: new.fingerprint.clone(),
        old_stem: old_stem.into(),
        finished: None,
    };
    manifest.rotation = Some(r.clone());
    manifest.save(&ssl)?;
    Ok((r, backup))
}

/// Record that the current phase reached every host; after phase 3 the rotation is finished
/// and the files only it used are removed (the backup made by `begin` keeps the old CA).
pub fn mark_rolled(cluster_dir: &Path) -> Result<Rotation, PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    let r = manifest.rotation.as_mut().ok_or_else(|| no_rotation(&ssl))?;
    r.rolled = true;
    if r.phase == 3 && r.finished.is_none() {
        r.finished = Some(::time::OffsetDateTime::now_utc().unix_timestamp());
    }
    let r = r.clone();
    manifest.save(&ssl)?;
    if r.finished.is_some() {
        for f in [format!("{NEW_STEM}.pem"), format!("{NEW_STEM}-key.pem"), OLD_FILE.to_string()] {
            match std::fs::remove_file(ssl.join(&f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(PkiError::io(ssl.join(&f))(e)),
                _ => {}
            }
        }
    }
    Ok(r)
}

/// Go to the next phase once the current one is rolled: 1 → 2 puts the new CA in the etcd
/// CA's place (key first, then certificate; repeated as a whole when interrupted).
pub fn advance(cluster_dir: &Path) -> Result<Rotation, PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    let r = manifest.rotation.clone().ok_or_else(|| no_rotation(&ssl))?;
    if !r.rolled || r.phase >= 3 {
        return Ok(r);
    }
    if r.phase == 1 {
        let read = |f: String| -> Result<String, PkiError> {
            let p = ssl.join(&f);
            read_opt(&p)?.ok_or_else(|| PkiError::BadFile { path: p, msg: "missing: the new CA of the rotation under way; restore it from the newest ssl.bak-*/".into() })
        };
        let (cert, key) = (read(format!("{NEW_STEM}.pem"))?, read(format!("{NEW_STEM}-key.pem"))?);
        if sha256_hex(&der_of(&ssl.join(format!("{NEW_STEM}.pem")), &cert)?) != r.new_sha256 {
            return Err(PkiError::BadFile { path: ssl.join(format!("{NEW_STEM}.pem")), msg: "is not the new CA this rotation started with".into() });
        }
        write_atomic(&ssl.join(format!("{}-key.pem", CaKind::Etcd.stem())), key.as_bytes(), KEY_MODE)?;
        write_atomic(&ssl.join(format!("{}.pem", CaKind::Etcd.stem())), cert.as_bytes(), CERT_MODE)?;
        if manifest.one_ca {
            manifest.own_etcd_ca = true;
        }
    }
    let next = manifest.rotation.as_mut().expect("loaded above");
    next.phase += 1;
    next.rolled = false;
    let next = next.clone();
    manifest.save(&ssl)?;
    Ok(next)
}

/// Forget a finished rotation, so that the next `begin` starts another.
pub fn forget_finished(cluster_dir: &Path) -> Result<(), PkiError> {
    let _l = lock(cluster_dir)?;
    let ssl = cluster_dir.join("ssl");
    let mut manifest = Manifest::load(&ssl)?;
    if manifest.rotation.as_ref().is_some_and(|r| r.finished.is_some()) {
        manifest.rotation = None;
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
        let (r, backup) = begin(d.path(), spec.ca_validity().unwrap()).unwrap();
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
        assert_eq!(advance(d.path()).unwrap().phase, 1);
        mark_rolled(d.path()).unwrap();
        let r = advance(d.path()).unwrap();
        assert_eq!((r.phase, r.rolled), (2, false));
        // Phase 2: new certificates from the new CA, trust still both.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let f = pki.cert_files("etcd", "10.0.0.1").unwrap();
        assert_ne!(f.cert_pem, old_etcd);
        assert_eq!(count_certs(f.ca_pem.as_deref().unwrap()), 2);
        assert!(pki.outcome().issued.iter().any(|s| s == "etcd-client"));
        mark_rolled(d.path()).unwrap();
        assert_eq!(advance(d.path()).unwrap().phase, 3);
        // Phase 3: trust the new CA only.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        let f = pki.cert_files("etcd", "10.0.0.1").unwrap();
        let ca = f.ca_pem.unwrap();
        assert_eq!(count_certs(&ca), 1);
        assert!(!ca.contains(old_ca.trim()));
        let r = mark_rolled(d.path()).unwrap();
        assert!(r.finished.is_some());
        assert!(!d.path().join("ssl").join(OLD_FILE).exists());
        // A re-run of ensure reissues nothing.
        let pki = Pki::ensure(d.path(), &spec).unwrap();
        assert!(pki.outcome().issued.is_empty(), "{:?}", pki.outcome());
        assert!(!in_progress(d.path()).unwrap());
    }
}
