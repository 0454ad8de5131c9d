//! Taking over a PKI that kubeasz made, without locking anyone out.
//!
//! kubeasz signs everything with one CA (`ca.pem`, cfssl, RSA): etcd's server and peer
//! certificate, the apiserver's etcd client certificate (`kubernetes.pem`), admin, kube-proxy,
//! the aggregator. Every client of etcd holds a certificate from that CA, and etcd trusts only
//! it. Moving such a cluster to ezk's separate etcd CA would refuse all of them at once. So
//! when ezk first meets an ssl/ dir that holds kubeasz's CA and certificates but no etcd CA of
//! its own (`one_ca`), it keeps one CA for everything, for good (`Manifest::one_ca`); moving to
//! separate CAs is a rotation of its own.
//!
//! And a certificate already there that ezk did not issue (no manifest entry) is kept rather
//! than reissued when it would do the job ([`keepable`]): signed by the CA ezk signs that id
//! with, not expired, key matching, the id's common name and groups, its usages, and every
//! name clients dial. Else it is issued anew from the same CA.

use std::path::Path;

use ::time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::ca::Ca;
use super::cert_ids::{LeafDef, San};
use super::error::PkiError;
use super::issue::leaf_paths;
use super::keys::key_from_pem;
use super::ssl_dir::{CERT_MODE, KEY_MODE, Manifest, read_opt, write_atomic};

/// Certificates kubeasz leaves in `clusters/<name>/ssl/` (its file names), any of which says
/// that its `ca.pem` already signed something a client holds.
const KUBEASZ_CERTS: &[&str] = &[
    "etcd.pem",
    "kubernetes.pem",
    "admin.pem",
    "kube-proxy.pem",
    "kube-controller-manager.pem",
    "kube-scheduler.pem",
    "aggregator-proxy.pem",
];

/// kubeasz's names in `ssl/` for the per-node certificate `def` (a kubelet's): its 3.5+ name
/// `<node name>-kubelet.pem`, then its earlier `<inventory host>-kubelet.pem`. ezk names it
/// `kubelet-<node name>.pem`; both install it on the node as `kubelet.pem`.
fn kubeasz_stems(def: &LeafDef) -> Vec<String> {
    let (Some(name), Some(host)) = (def.stem.strip_prefix("kubelet-"), def.host.as_deref()) else {
        return Vec::new();
    };
    if def.id != "kubelet" {
        return Vec::new();
    }
    vec![format!("{name}-kubelet"), format!("{host}-kubelet")]
}

/// Before ezk first judges a kubelet's certificate: when ezk's files for `def` are not there
/// yet and kubeasz's are (see `kubeasz_stems`), copy them to ezk's names, so that a certificate
/// kubeasz issued is kept like any other ([`keepable`]) rather than issued anew. kubeasz's
/// files stay as they are. Whether anything was copied.
pub fn take_kubeasz_name(ssl: &Path, def: &LeafDef) -> Result<bool, PkiError> {
    let (cert, key) = leaf_paths(ssl, &def.stem);
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    for stem in kubeasz_stems(def) {
        let (kc, kk) = leaf_paths(ssl, &stem);
        let (Some(c), Some(k)) = (read_opt(&kc)?, read_opt(&kk)?) else { continue };
        write_atomic(&key, k.as_bytes(), KEY_MODE)?;
        write_atomic(&cert, c.as_bytes(), CERT_MODE)?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether `ssl` holds a one-CA PKI: recorded so, or (first meeting: no manifest) a `ca.pem`,
/// no `etcd-ca.pem`, and a certificate kubeasz issued from that CA.
pub fn one_ca(ssl: &Path, manifest: &Manifest) -> bool {
    if manifest.one_ca {
        return true;
    }
    !Manifest::path(ssl).exists()
        && ssl.join("ca.pem").exists()
        && !ssl.join("etcd-ca.pem").exists()
        && KUBEASZ_CERTS.iter().any(|f| ssl.join(f).exists())
}

/// The names a kept certificate must carry: every name in `def`, except the ones ezk adds to
/// its own etcd certificate for convenience (`localhost`, the member names), which no client
/// dials: etcd's clients and peers connect by address.
fn required(def: &LeafDef) -> impl Iterator<Item = &San> {
    def.sans.iter().filter(move |s| def.id != "etcd" || matches!(s, San::Ip(_)))
}

/// Whether the certificate on disk for `def` can be kept as it is (see the module doc). `Err`
/// only for I/O errors; anything unusable about the files is `Ok(Err(why))`.
pub fn keepable(ssl: &Path, def: &LeafDef, ca: &Ca) -> Result<Result<(), String>, PkiError> {
    let (cert_path, key_path) = leaf_paths(ssl, &def.stem);
    let (Some(cert_pem), Some(key_pem)) = (read_opt(&cert_path)?, read_opt(&key_path)?) else {
        return Ok(Err("no certificate and key".into()));
    };
    Ok(check(def, ca, &cert_pem, &key_pem))
}

fn check(def: &LeafDef, ca: &Ca, cert_pem: &str, key_pem: &str) -> Result<(), String> {
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, x) = parse_x509_certificate(&pem.contents).map_err(|e| format!("not a certificate: {e}"))?;
    if !super::inspect::signed_by(&pem.contents, &ca.cert_der) {
        return Err(format!("not signed by {}.pem", ca.kind.stem()));
    }
    if x.validity().not_after.timestamp() <= OffsetDateTime::now_utc().unix_timestamp() {
        return Err("expired".into());
    }
    let key = key_from_pem(key_pem).map_err(|e| format!("key: {e}"))?;
    if x.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err("the key does not belong to the certificate".into());
    }
    let cns: Vec<&str> = x.subject().iter_common_name().filter_map(|a| a.as_str().ok()).collect();
    if cns != [def.cn.as_str()] {
        return Err(format!("common name {cns:?}, not {:?}", def.cn));
    }
    let orgs: Vec<&str> = x.subject().iter_organization().filter_map(|a| a.as_str().ok()).collect();
    if let Some(o) = def.orgs.iter().find(|o| !orgs.contains(&o.as_str())) {
        return Err(format!("no organization (group) {o:?}"));
    }
    // No extended key usage at all means any usage (RFC 5280 4.2.1.12).
    if let Ok(Some(eku)) = x.extended_key_usage() {
        let eku = &eku.value;
        if (def.server_auth && !(eku.server_auth || eku.any)) || (def.client_auth && !(eku.client_auth || eku.any)) {
            return Err("lacks the server/client usage it needs".into());
        }
    }
    let mut has: Vec<San> = Vec::new();
    if let Ok(Some(ext)) = x.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => has.push(San::Dns(d.to_string())),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => has.push(San::Ip(<[u8; 4]>::try_from(*b).expect("4 bytes").into())),
                    16 => has.push(San::Ip(<[u8; 16]>::try_from(*b).expect("16 bytes").into())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let missing: Vec<String> = required(def).filter(|s| !has.contains(s)).map(|s| s.to_string()).collect();
    if !missing.is_empty() {
        return Err(format!("lacks {}", missing.join(", ")));
    }
    Ok(())
}
