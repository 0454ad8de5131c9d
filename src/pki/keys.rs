//! Private keys: load the formats kubeasz users have (cfssl writes PKCS#1 "RSA PRIVATE KEY" or
//! SEC1 "EC PRIVATE KEY"; OpenSSL 3 writes PKCS#8 "PRIVATE KEY") into an rcgen `KeyPair`.
//!
//! rcgen on ring only reads PKCS#8, so PKCS#1 and SEC1 keys are wrapped into a PKCS#8
//! PrivateKeyInfo here (RFC 5208: version 0, algorithm identifier, key octets) — a few bytes of
//! DER, no new crate.
//!
//! Also the service-account key pair (`ensure_sa`), the one key ezk makes that is not a
//! certificate's.

use std::path::Path;

use rcgen::KeyPair;
use x509_parser::pem::Pem;

use super::error::PkiError;
use super::ssl_dir::{CERT_MODE, KEY_MODE, read_opt, write_atomic};

/// rsaEncryption 1.2.840.113549.1.1.1, DER-encoded OID.
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// id-ecPublicKey 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Parse a PEM private key of any of the three labels. The error says what was found.
pub fn key_from_pem(pem: &str) -> Result<KeyPair, String> {
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label.ends_with("PRIVATE KEY"))
        .ok_or("no PEM private key block found")?;
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.contents,
        "RSA PRIVATE KEY" => wrap_pkcs8(&seq(&[OID_RSA, &[0x05, 0x00]].concat()), &block.contents),
        "EC PRIVATE KEY" => {
            let curve = sec1_curve_oid(&block.contents)
                .ok_or("EC PRIVATE KEY without curve parameters is not supported")?;
            wrap_pkcs8(&seq(&[OID_EC, &curve].concat()), &block.contents)
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "the key is encrypted; decrypt it first (openssl pkey -in KEY -out KEY)".into(),
            );
        }
        other => return Err(format!("unsupported key type {other:?}")),
    };
    KeyPair::try_from(pkcs8)
        .map_err(|e| format!("{e} (supported: RSA 2048-4096 bits, ECDSA P-256/P-384, Ed25519)"))
}

/// PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }.
fn wrap_pkcs8(alg_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(alg_id);
    body.extend(tlv(0x04, key));
    seq(&body)
}

/// The namedCurve OID inside SEC1's `[0] parameters`, as a full TLV.
fn sec1_curve_oid(der: &[u8]) -> Option<Vec<u8>> {
    // ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET STRING, [0] params, [1] pub }
    let (tag, body, _) = read_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, val, next) = read_tlv(rest)?;
        if tag == 0xa0 {
            let (t, _, _) = read_tlv(val)?;
            return (t == 0x06).then(|| val.to_vec());
        }
        rest = next;
    }
    None
}

/// Read one DER TLV: (tag, value, remainder).
fn read_tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *d.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    (d.len() >= end).then(|| (tag, &d[hdr..end], &d[end..]))
}

fn tlv(tag: u8, val: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = val.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(val);
    out
}

fn seq(body: &[u8]) -> Vec<u8> {
    tlv(0x30, body)
}

/// The service-account key pair: created once, kept across runs and renewals. On a PKI taken
/// over from kubeasz (`one_ca`) it is kubeasz's CA key: kubeasz's apiservers sign ServiceAccount
/// tokens with `ca-key.pem` and check them with `ca.pem`, so any other key would refuse every
/// token the pods hold (and a token a new apiserver signs would be refused by an old one during
/// the rolling restart). When that key is offline nothing is made: handing `sa` out then names
/// the key.
pub fn ensure_sa(ssl: &Path, one_ca: bool) -> Result<(), PkiError> {
    let (key_path, pub_path) = (ssl.join("sa.key"), ssl.join("sa.pub"));
    match (read_opt(&key_path)?, read_opt(&pub_path)?) {
        (Some(k), Some(p)) => {
            let key = key_from_pem(&k).map_err(|msg| PkiError::BadFile {
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
            let key = key_from_pem(&k).map_err(|msg| PkiError::BadFile {
                path: key_path,
                msg,
            })?;
            write_atomic(&pub_path, key.public_key_pem().as_bytes(), CERT_MODE)
        }
        (None, Some(_)) => Err(PkiError::HalfCa {
            present: pub_path,
            missing: key_path,
        }),
        (None, None) if one_ca => {
            let ca_key = ssl.join("ca-key.pem");
            let Some(k) = read_opt(&ca_key)? else { return Ok(()) };
            let key = key_from_pem(&k).map_err(|msg| PkiError::BadFile { path: ca_key, msg })?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
            write_atomic(&pub_path, key.public_key_pem().as_bytes(), CERT_MODE)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 70000] {
            let v = vec![7u8; n];
            let enc = tlv(0x04, &v);
            let (t, val, rest) = read_tlv(&enc).unwrap();
            assert_eq!((t, val.len(), rest.len()), (0x04, n, 0));
        }
    }

    #[test]
    fn pkcs8_from_rcgen_round_trips() {
        let k = KeyPair::generate().unwrap();
        let again = key_from_pem(&k.serialize_pem()).unwrap();
        assert_eq!(k.public_key_raw(), again.public_key_raw());
    }

    #[test]
    fn encrypted_and_garbage_keys_are_named() {
        let e = key_from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(e.unwrap_err().contains("encrypted"));
        assert!(
            key_from_pem("hello")
                .unwrap_err()
                .contains("no PEM private key")
        );
    }
}
