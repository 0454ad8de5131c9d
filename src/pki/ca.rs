//! The three CAs: kept when present (kubeasz users bring their cfssl-made, usually RSA, CA),
//! created when absent, replaced only on explicit request (`kca-renew --new-ca`). A CA whose
//! key is kept offline (the certificate without `<stem>-key.pem`) still loads: whatever it
//! already signed is used, and only issuing something new needs the key.

use std::path::Path;

use ::time::{Duration, OffsetDateTime};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use super::cert_ids::CaKind;
use super::error::PkiError;
use super::keys::key_from_pem;
use super::ssl_dir::{CERT_MODE, KEY_MODE, read_opt, write_atomic};

/// A CA ready to sign.
pub struct Ca {
    pub kind: CaKind,
    /// DER of the CA certificate (its subject must reappear byte-for-byte as leaf issuers).
    pub cert_der: Vec<u8>,
    /// `None`: the key is not on this machine (kept offline); nothing new can be signed.
    pub key: Option<KeyPair>,
    /// Where the key is (or would be), for the message when it is needed.
    pub key_path: std::path::PathBuf,
    /// sha256 (hex) of the certificate DER; part of every leaf's inputs.
    pub fingerprint: String,
    /// True when this run created it.
    pub created: bool,
}

impl Ca {
    /// An rcgen issuer for this CA, parsed from the certificate so that user CAs keep their
    /// exact subject and key identifier.
    pub fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        let key = self.key.as_ref().ok_or_else(|| PkiError::NeedsCaKey {
            what: self.kind.stem().into(),
            key: self.key_path.clone(),
        })?;
        Issuer::from_ca_cert_der(&self.cert_der.clone().into(), key).map_err(|source| {
            PkiError::Sign {
                id: self.kind.stem().into(),
                source,
            }
        })
    }
}

/// sha256 hex of bytes.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Load `<stem>.pem` + `<stem>-key.pem` from `ssl`, or create them when both are absent
/// (or when `replace` is set). A certificate without its key loads keyless (the key kept
/// offline); a key without its certificate is an error: ezk never overwrites a lone CA file.
pub fn load_or_create(
    ssl: &Path,
    kind: CaKind,
    validity: Duration,
    replace: bool,
) -> Result<Ca, PkiError> {
    load_or_create_at(ssl, kind, kind.stem(), kind.common_name(), validity, replace)
}

/// As [`load_or_create`], under file stem `stem`, a CA created with common name `cn` (the new
/// CA of a rotation lives beside the old one until it takes its place).
pub fn load_or_create_at(
    ssl: &Path,
    kind: CaKind,
    stem: &str,
    cn: &str,
    validity: Duration,
    replace: bool,
) -> Result<Ca, PkiError> {
    let cert_path = ssl.join(format!("{stem}.pem"));
    let key_path = ssl.join(format!("{stem}-key.pem"));
    if !replace {
        match (read_opt(&cert_path)?, read_opt(&key_path)?) {
            (Some(c), k) => return load(&cert_path, &key_path, kind, c, k),
            (None, Some(_)) => {
                return Err(PkiError::HalfCa {
                    present: key_path,
                    missing: cert_path,
                });
            }
            (None, None) => {}
        }
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Sign {
        id: kind.stem().into(),
        source,
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ezk");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    params.serial_number = Some(super::issue::serial(&key));
    let cert = params.self_signed(&key).map_err(|source| PkiError::Sign {
        id: kind.stem().into(),
        source,
    })?;
    // Key first: a crash between the two writes leaves a key without a cert, which the next
    // run reports as a half pair instead of silently pairing a new cert with an old key.
    write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
    let der = cert.der().to_vec();
    Ok(Ca {
        kind,
        fingerprint: sha256_hex(&der),
        cert_der: der,
        key: Some(key),
        key_path,
        created: true,
    })
}

fn load(
    cert_path: &Path,
    key_path: &Path,
    kind: CaKind,
    cert_pem: String,
    key_pem: Option<String>,
) -> Result<Ca, PkiError> {
    let bad = |path: &Path, msg: String| PkiError::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| bad(cert_path, format!("not a PEM certificate: {e}")))?;
    let der = pem.contents;
    let (_, x509) = parse_x509_certificate(&der)
        .map_err(|e| bad(cert_path, format!("not an X.509 certificate: {e}")))?;
    if !x509.is_ca() {
        return Err(bad(
            cert_path,
            "is not a CA certificate (basicConstraints CA:TRUE missing)".into(),
        ));
    }
    let key = match key_pem {
        None => None,
        Some(key_pem) => {
            let key = key_from_pem(&key_pem).map_err(|m| bad(key_path, m))?;
            if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(bad(key_path, format!("does not belong to {}", cert_path.display())));
            }
            Some(key)
        }
    };
    // Re-encode a PKCS#1/SEC1 key? No: the user's file stays as they made it.
    Ok(Ca {
        kind,
        fingerprint: sha256_hex(&der),
        cert_der: der,
        key,
        key_path: key_path.to_path_buf(),
        created: false,
    })
}
