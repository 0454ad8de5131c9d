//! `ezk certs`: what every certificate says (subject, SANs, issuer, days to expiry), read with
//! x509-parser, and the comparison of copies installed on hosts with the local ones.

use ::time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::Pki;
use super::ca::sha256_hex;
use super::cert_ids::CaKind;

/// Whether the certificate `cert_der` was signed by the CA certificate `ca_der`: its issuer is
/// the CA's subject and the CA's key verifies its signature.
pub fn signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, ca))) = (parse_x509_certificate(cert_der), parse_x509_certificate(ca_der)) else {
        return false;
    };
    c.issuer().as_raw() == ca.subject().as_raw() && c.verify_signature(Some(ca.public_key())).is_ok()
}

/// The DER of every certificate in a PEM document (a CA bundle holds several).
pub fn pem_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// Whether a certificate may authenticate a client: extended key usage clientAuth (or any),
/// or no extended key usage at all (RFC 5280: then any use), and not a CA.
pub fn is_client_cert(cert_der: &[u8]) -> bool {
    let Ok((_, c)) = parse_x509_certificate(cert_der) else { return false };
    if c.is_ca() {
        return false;
    }
    match c.extended_key_usage() {
        Ok(Some(e)) => e.value.client_auth || e.value.any,
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The subject of a certificate, as openssl prints it ("C=CN, …, CN=kubernetes-ca").
pub fn subject(cert_der: &[u8]) -> String {
    parse_x509_certificate(cert_der).map(|(_, c)| c.subject().to_string()).unwrap_or_else(|_| "?".into())
}

/// One certificate as read from its PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// "IP:1.2.3.4" / "DNS:name".
    pub sans: Vec<String>,
    pub not_after_unix: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// sha256 (hex) of the DER.
    pub sha256: String,
}

/// A row of the local table: the file name plus what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub file: String,
    pub info: Option<CertInfo>,
    /// Why `info` is missing (file absent, not a certificate).
    pub problem: Option<String>,
}

/// Read the first certificate of a PEM document.
pub fn inspect_pem(pem: &[u8]) -> Result<CertInfo, String> {
    let (_, p) = parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, x) = parse_x509_certificate(&p.contents)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = x.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(b) => sans.push(match b.len() {
                    4 => format!(
                        "IP:{}",
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap())
                    ),
                    16 => format!(
                        "IP:{}",
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap())
                    ),
                    _ => "IP:?".into(),
                }),
                other => sans.push(format!("{other:?}")),
            }
        }
    }
    let not_after = x.validity().not_after.timestamp();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Ok(CertInfo {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        sans,
        not_after_unix: not_after,
        days_left: (not_after - now).div_euclid(86400),
        sha256: sha256_hex(&p.contents),
    })
}

/// Every CA and leaf certificate under ssl/, in catalog order. A file that is missing or
/// unreadable gets a row with `problem` set instead of failing the whole report.
pub fn local_report(pki: &Pki) -> Vec<CertRow> {
    let mut files: Vec<String> = Vec::new();
    for k in CaKind::ALL {
        let f = format!("{}.pem", pki.ca_stem(k));
        if !files.contains(&f) {
            files.push(f);
        }
    }
    files.extend(pki.leaves.iter().map(|l| format!("{}.pem", l.stem)));
    files
        .into_iter()
        .map(|file| {
            match pki
                .read(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| inspect_pem(t.as_bytes()))
            {
                Ok(info) => CertRow {
                    file,
                    info: Some(info),
                    problem: None,
                },
                Err(e) => CertRow {
                    file,
                    info: None,
                    problem: Some(e),
                },
            }
        })
        .collect()
}

/// Plain-text table: FILE, SUBJECT, ISSUER, DAYS, SANS.
pub fn render_table(rows: &[CertRow]) -> String {
    let head = ["FILE", "SUBJECT", "ISSUER", "DAYS", "SANS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| match (&r.info, &r.problem) {
            (Some(i), _) => [
                r.file.clone(),
                i.subject.clone(),
                i.issuer.clone(),
                i.days_left.to_string(),
                i.sans.join(","),
            ],
            (None, p) => [
                r.file.clone(),
                format!("PROBLEM: {}", p.as_deref().unwrap_or("?")),
                String::new(),
                String::new(),
                String::new(),
            ],
        })
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for i in 0..4 {
            w[i] = w[i].max(c[i].len());
        }
    }
    let line = |c: [&str; 5]| {
        let s = format!(
            "{:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
    }
    out
}

/// A certificate file read from a host (by the executor).
#[derive(Debug, Clone)]
pub struct RemoteCopy {
    pub host: String,
    /// Certificate id the file was installed from (the `cert` task's `name`).
    pub cert_id: String,
    pub path: String,
    /// File content; empty when the file is missing.
    pub pem: Vec<u8>,
}

/// Verdict on one remote copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStatus {
    /// Same certificate as the local one.
    Same,
    /// A different certificate (stale, replaced by hand, other CA).
    Differs {
        expected_sha256: String,
        got: CertInfo,
    },
    /// Missing or not a certificate.
    Unreadable(String),
    /// The host should not hold this id at all (or the id is unknown).
    Unexpected(String),
}

/// One compared copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCheck {
    pub host: String,
    pub path: String,
    pub cert_id: String,
    pub status: RemoteStatus,
}

/// Compare each remote copy with what `cert_files(cert_id, host)` hands out now.
pub fn compare_remote(pki: &Pki, copies: &[RemoteCopy]) -> Vec<RemoteCheck> {
    copies
        .iter()
        .map(|c| {
            let status = match pki.cert_files(&c.cert_id, &c.host) {
                Err(e) => RemoteStatus::Unexpected(e.to_string()),
                // `sa` hands out a public key, not a certificate: compare the PEM text.
                Ok(expected) if !expected.cert_pem.contains("CERTIFICATE") => {
                    if String::from_utf8_lossy(&c.pem).trim() == expected.cert_pem.trim() {
                        RemoteStatus::Same
                    } else {
                        RemoteStatus::Unreadable("public key differs from local sa.pub".into())
                    }
                }
                Ok(expected) => match (
                    inspect_pem(expected.cert_pem.as_bytes()),
                    inspect_pem(&c.pem),
                ) {
                    (_, Err(e)) if c.pem.is_empty() => {
                        RemoteStatus::Unreadable(format!("missing ({e})"))
                    }
                    (_, Err(e)) => RemoteStatus::Unreadable(e),
                    (Ok(exp), Ok(got)) if exp.sha256 == got.sha256 => RemoteStatus::Same,
                    (Ok(exp), Ok(got)) => RemoteStatus::Differs {
                        expected_sha256: exp.sha256,
                        got,
                    },
                    (Err(e), Ok(_)) => RemoteStatus::Unreadable(format!("local copy: {e}")),
                },
            };
            RemoteCheck {
                host: c.host.clone(),
                path: c.path.clone(),
                cert_id: c.cert_id.clone(),
                status,
            }
        })
        .collect()
}

/// Lines for the mismatches only ("host path: ..."); empty when every copy matches.
pub fn render_mismatches(checks: &[RemoteCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        let msg = match &c.status {
            RemoteStatus::Same => continue,
            RemoteStatus::Differs { got, .. } => format!(
                "differs from local (installed: {}, {} days left)",
                got.subject, got.days_left
            ),
            RemoteStatus::Unreadable(e) => e.clone(),
            RemoteStatus::Unexpected(e) => e.clone(),
        };
        out.push_str(&format!(
            "MISMATCH {} {} [{}]: {msg}\n",
            c.host, c.path, c.cert_id
        ));
    }
    out
}
