//! Issuing: one leaf certificate, or the decision that the one on disk can be kept; and the
//! whole run over every CA and leaf of a spec (`ensure_all`, behind `Pki::ensure`/`renew`).

use std::path::Path;

use ::time::{Duration, OffsetDateTime};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::adopt;
use super::ca::{self, Ca, sha256_hex};
use super::cert_ids::{CaKind, LeafDef, San, leaves};
use super::error::PkiError;
use super::keys::{ensure_sa, key_from_pem};
use super::ssl_dir::{CERT_MODE, Entry, KEY_MODE, Manifest, ensure_private_dir, read_opt, write_atomic};
use super::{Outcome, Pki, PkiSpec};

/// Bump when the way certificates are built changes, so every cert is reissued once.
const RECIPE: u32 = 1;

/// A random-looking, positive 16-byte serial (sha256 of the public key and the clock).
pub fn serial(key: &KeyPair) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(key.public_key_raw());
    h.update(
        OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes(),
    );
    let mut b = h.finalize()[..16].to_vec();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// Hash of everything a certificate is made of: definition, issuer, validity policy.
pub fn inputs_hash(def: &LeafDef, ca: &Ca, cert_expiry: &str) -> String {
    let desc = serde_json::json!({
        "recipe": RECIPE,
        "def": def,
        "issuer": ca.fingerprint,
        "expiry": cert_expiry,
    });
    sha256_hex(desc.to_string().as_bytes())
}

/// Paths of a leaf's cert and key under `ssl`.
pub fn leaf_paths(ssl: &Path, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        ssl.join(format!("{stem}.pem")),
        ssl.join(format!("{stem}-key.pem")),
    )
}

/// Whether the files on disk are exactly what the manifest recorded for these inputs, still
/// valid, and the key matches the certificate. Any doubt → reissue.
pub fn reusable(
    ssl: &Path,
    def: &LeafDef,
    recorded: Option<&Entry>,
    inputs: &str,
) -> Result<bool, PkiError> {
    let Some(entry) = recorded else {
        return Ok(false);
    };
    if entry.inputs != inputs {
        return Ok(false);
    }
    let (cert_path, key_path) = leaf_paths(ssl, &def.stem);
    let (Some(cert_pem), Some(key_pem)) = (read_opt(&cert_path)?, read_opt(&key_path)?) else {
        return Ok(false);
    };
    let Ok((_, pem)) = parse_x509_pem(cert_pem.as_bytes()) else {
        return Ok(false);
    };
    if sha256_hex(&pem.contents) != entry.sha256 {
        return Ok(false);
    }
    let Ok((_, x509)) = parse_x509_certificate(&pem.contents) else {
        return Ok(false);
    };
    if x509.validity().not_after.timestamp() <= OffsetDateTime::now_utc().unix_timestamp() {
        return Ok(false);
    }
    let Ok(key) = key_from_pem(&key_pem) else {
        return Ok(false);
    };
    Ok(x509.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// Issue `def` signed by `ca`, write key + cert atomically, return the manifest entry.
pub fn issue(
    ssl: &Path,
    def: &LeafDef,
    ca: &Ca,
    validity: Duration,
    inputs: String,
) -> Result<Entry, PkiError> {
    let sign_err = |source| PkiError::Sign {
        id: def.stem.clone(),
        source,
    };
    let key = KeyPair::generate().map_err(sign_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // O before CN, as in the usual "O=system:nodes, CN=system:node:x" subject order.
    for o in &def.orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, def.cn.as_str());
    for san in &def.sans {
        params.subject_alt_names.push(match san {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(d) => SanType::DnsName(d.as_str().try_into().map_err(sign_err)?),
        });
    }
    // ECDSA keys sign; they never encipher, so digitalSignature is the one usage that fits.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if def.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if def.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    params.serial_number = Some(serial(&key));
    let cert = params.signed_by(&key, &ca.issuer()?).map_err(sign_err)?;
    check_chains(def, ca, cert.der())?;

    let (cert_path, key_path) = leaf_paths(ssl, &def.stem);
    write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
    Ok(Entry {
        inputs,
        sha256: sha256_hex(cert.der()),
    })
}

/// Go's verifier (etcd, kubernetes) matches a certificate's issuer to its CA's subject by raw
/// bytes. rcgen re-encodes the CA subject; a user CA with an unusual subject (say, two OUs)
/// could come out different. Refuse such a certificate instead of shipping one that fails later.
fn check_chains(def: &LeafDef, ca: &Ca, leaf_der: &[u8]) -> Result<(), PkiError> {
    let (_, leaf) = parse_x509_certificate(leaf_der).map_err(|e| PkiError::BadFile {
        path: def.stem.clone().into(),
        msg: format!("issued certificate does not parse: {e}"),
    })?;
    let (_, ca_x) = parse_x509_certificate(&ca.cert_der).map_err(|e| PkiError::BadFile {
        path: ca.kind.stem().into(),
        msg: e.to_string(),
    })?;
    if leaf.issuer().as_raw() != ca_x.subject().as_raw() {
        return Err(PkiError::BadFile {
            path: format!("{}.pem", ca.kind.stem()).into(),
            msg: format!(
                "the CA subject \"{}\" cannot be reproduced exactly in issued certificates; use a CA whose subject has one attribute per RDN",
                ca_x.subject()
            ),
        });
    }
    Ok(())
}

/// Issue or reuse every CA and leaf under `cluster_dir/ssl/` (`force`: reissue every leaf;
/// `new_ca`: the CAs too), and write the deploy machine's admin kubeconfig. A certificate ezk
/// did not issue is kept when it does the job (`adopt`); one that must be issued by a CA whose
/// key is offline is left pending: handing it out is then the error that names the key.
/// `clusters/<name>/.pki.lock`, held (waiting for it if need be) while ssl/ is written.
pub(super) fn issue_lock(cluster_dir: &Path) -> Result<std::fs::File, PkiError> {
    let path = cluster_dir.join(".pki.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(PkiError::io(&path))?;
    f.lock().map_err(PkiError::io(&path))?;
    Ok(f)
}

pub(super) fn ensure_all(cluster_dir: &Path, spec: &PkiSpec, force: bool, new_ca: bool) -> Result<Pki, PkiError> {
    spec.validate()?;
    let ssl = cluster_dir.join("ssl");
    ensure_private_dir(&ssl)?;
    // One issuer at a time: two runs planning at once (two `ezk setup` of one cluster: they
    // plan before the cluster lock refuses the second) would each make a CA and mix their key
    // and certificate files. The second waits, then finds and reuses what the first wrote.
    let _issuing = issue_lock(cluster_dir)?;
    let mut outcome = Outcome::default();
    let mut manifest = Manifest::load(&ssl)?;
    let one_ca = adopt::one_ca(&ssl, &manifest);
    let own_etcd_ca = manifest.own_etcd_ca;
    let signer = |kind: CaKind| if one_ca && !(kind == CaKind::Etcd && own_etcd_ca) { CaKind::Cluster } else { kind };
    let ca_validity = spec.ca_validity()?;
    let mut cas = Vec::new();
    for kind in CaKind::ALL {
        if signer(kind) != kind {
            continue;
        }
        let c = ca::load_or_create(&ssl, kind, ca_validity, new_ca)?;
        if c.created {
            outcome.created_cas.push(kind.stem().to_string());
        }
        cas.push(c);
    }
    ensure_sa(&ssl, one_ca)?;
    super::encryption::ensure_key(&ssl)?;

    let validity = spec.cert_validity()?;
    let before = manifest.clone();
    let leaves = leaves(spec)?;
    let mut pending = Vec::new();
    for def in &leaves {
        let kind = signer(def.ca);
        let ca = cas.iter().find(|c| c.kind == kind).expect("all CAs loaded");
        let inputs = inputs_hash(def, ca, &spec.cert_expiry);
        let recorded = manifest.certs.get(&def.stem);
        if !force && reusable(&ssl, def, recorded, &inputs)? {
            outcome.reused.push(def.stem.clone());
            continue;
        }
        let kept_inputs = format!("{KEPT}{inputs}");
        if !force && recorded.is_none() {
            adopt::take_kubeasz_name(&ssl, def)?;
        }
        if !force && recorded.is_none_or(|e| e.inputs.starts_with(KEPT)) && adopt::keepable(&ssl, def, ca)?.is_ok() {
            let (cert_path, _) = leaf_paths(&ssl, &def.stem);
            let pem = read_opt(&cert_path)?.unwrap_or_default();
            let sha256 = parse_x509_pem(pem.as_bytes()).map(|(_, p)| sha256_hex(&p.contents)).unwrap_or_default();
            manifest.certs.insert(def.stem.clone(), Entry { inputs: kept_inputs, sha256 });
            outcome.kept.push(def.stem.clone());
            continue;
        }
        if ca.key.is_none() {
            pending.push((def.stem.clone(), ca.key_path.clone()));
            continue;
        }
        let entry = issue(&ssl, def, ca, validity, inputs)?;
        manifest.certs.insert(def.stem.clone(), entry);
        outcome.issued.push(def.stem.clone());
    }
    // Forget certificates the spec no longer asks for (a removed node); files stay for audit.
    manifest
        .certs
        .retain(|stem, _| leaves.iter().any(|l| &l.stem == stem));
    manifest.one_ca = one_ca;
    if manifest.certs != before.certs || manifest.one_ca != before.one_ca || !Manifest::path(&ssl).exists() {
        manifest.version = 1;
        manifest.save(&ssl)?;
    }
    let pki = Pki {
        ssl,
        spec: spec.clone(),
        leaves,
        outcome,
        one_ca,
        own_etcd_ca,
        rotations: manifest.rotation.iter().chain(manifest.cluster_rotation.iter()).cloned().collect(),
        pending,
    };
    pki.write_etcd_trust()?;
    // The deploy machine's kubectl: once its admin certificate exists.
    if !pki.pending.iter().any(|(stem, _)| stem == "admin") {
        let local = cluster_dir.join("kubectl.kubeconfig");
        let text = pki.local_admin_kubeconfig()?;
        if read_opt(&local)?.as_deref() != Some(text.as_str()) {
            write_atomic(&local, text.as_bytes(), KEY_MODE)?;
        }
    }
    Ok(pki)
}

/// Marks a manifest entry of a certificate ezk found and kept rather than issued.
const KEPT: &str = "kept:";
