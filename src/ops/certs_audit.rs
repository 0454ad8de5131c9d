//! The remote half of `ezk certs`: which certificate files each host should hold, and the
//! verdict on what it actually holds. The hosts' files are a fact like any other, read by
//! `exec::gather::host_files`; this module joins three layers (the plan, the PKI and those
//! facts), which is why it belongs to the operation, not to `pki`.
//!
//! The expected files come from the plan itself, so they are exactly what `ezk setup` installs:
//! every `File` action whose bytes are a certificate, CA certificate, public key, private key or
//! kubeconfig that this PKI hands to that host (`Pki::cert_files`, `Pki::kubeconfig`). Matching bytes rather than task names
//! keeps it right whichever module or role installs the file. Private keys and kubeconfigs
//! (which embed one) are compared by sha256 only, so they never leave the host. Besides, each host is probed for keys it must not
//! hold: the CA and service-account keys in the directories its certificates live in, and any
//! key path another host receives for a certificate this host may not have.
//!
//! One file because the three layers are joined in one pass per host; split, each half would need
//! the other's types.

use std::collections::{BTreeSet, HashMap};

use crate::exec::gather::host_files::{Found, Probe, Request};
use crate::pki::inspect::{RemoteCopy, RemoteStatus, compare_remote, inspect_pem};
use crate::pki::{CertFiles, Pki, cert_ids, kubeconfigs, sha256_hex};
use crate::plan::action::{Action, Content, StepPlan};
use crate::plan::{CertPem, DeployFiles, StoredBinary};

/// Which half of a certificate id a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The certificate (or CA certificate, or `sa.pub`).
    Cert,
    /// The private key.
    Key,
    /// A kubeconfig (`cert_id` is its name): it embeds a client certificate and key.
    Kubeconfig,
}

/// A file the plan installs on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub host: String,
    pub path: String,
    pub cert_id: String,
    pub part: Part,
    /// The step that installs it (`02` …), for "missing" hints.
    pub step: String,
}

/// A path where a host must hold nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub host: String,
    pub path: String,
    /// Whose key it would be and why this host may not have it.
    pub why: String,
}

/// Answers `DeployFiles` for planning an audit: certificates and kubeconfigs from the PKI as it
/// is on disk (nothing issued, nothing written); binaries are not compared, so they are
/// answered empty. A plan built with these is only inspected, never executed.
pub struct AuditFiles<'a>(pub &'a Pki);

impl DeployFiles for AuditFiles<'_> {
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String> {
        let f = self.0.cert_files(id, host).map_err(|e| e.to_string())?;
        Ok(CertPem {
            cert_pem: f.cert_pem,
            key_pem: f.key_pem.map(|k| k.expose().to_string()),
            ca_pem: f.ca_pem,
        })
    }
    fn cluster_signing_file(&self) -> &'static str {
        self.0.cluster_signing_file()
    }
    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String> {
        self.0.kubeconfig(name, host).map_err(|e| e.to_string())
    }
    fn secret(&self, host: &str, name: &str) -> Result<String, String> {
        self.0.secret_file(name, host).map(|s| s.expose().to_string()).map_err(|e| e.to_string())
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Ok(StoredBinary { path: name.into(), sha256: String::new() })
    }
    fn image(&self, name: &str) -> Result<crate::plan::StoredImage, String> {
        Ok(crate::plan::StoredImage { path: name.into(), sha256: String::new(), reference: name.into(), digest: String::new() })
    }
    fn local_file(&self, path: &std::path::Path) -> Result<String, String> {
        crate::artifacts::sha256_file(path).map_err(|e| e.to_string())
    }
}

/// What the PKI hands one host: files by certificate id, kubeconfigs by name (what it may
/// not receive is left out).
struct HostFiles {
    certs: Vec<(&'static str, CertFiles)>,
    kubeconfigs: Vec<(&'static str, String)>,
}

impl HostFiles {
    fn of(pki: &Pki, host: &str) -> HostFiles {
        HostFiles {
            certs: cert_ids()
                .filter_map(|id| pki.cert_files(id, host).ok().map(|f| (id, f)))
                .collect(),
            kubeconfigs: kubeconfigs()
                .filter_map(|(n, _)| pki.kubeconfig(n, host).ok().map(|k| (n, k)))
                .collect(),
        }
    }

    /// Which id and part these bytes are, if any.
    fn identify(&self, bytes: &[u8]) -> Option<(&'static str, Part)> {
        let certs = &self.certs;
        certs
            .iter()
            .find(|(_, c)| c.cert_pem.as_bytes() == bytes)
            .map(|(id, _)| (*id, Part::Cert))
            .or_else(|| {
                certs
                    .iter()
                    .find(|(_, c)| c.key_pem.as_ref().is_some_and(|k| k.expose().as_bytes() == bytes))
                    .map(|(id, _)| (*id, Part::Key))
            })
            .or_else(|| {
                self.kubeconfigs
                    .iter()
                    .find(|(_, k)| k.as_bytes() == bytes)
                    .map(|(n, _)| (*n, Part::Kubeconfig))
            })
    }
}

/// Every certificate or key file the plans install, per host, in plan order (a path installed
/// twice is listed once).
pub fn expected_files(pki: &Pki, plans: &[StepPlan]) -> Vec<Expected> {
    let mut cache: HashMap<String, HostFiles> = HashMap::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for plan in plans {
        for host_role in plan.waves.iter().flat_map(|w| &w.hosts) {
            let files = cache
                .entry(host_role.host.clone())
                .or_insert_with(|| HostFiles::of(pki, &host_role.host));
            for t in &host_role.tasks {
                let Action::File(f) = &t.action else { continue };
                let Content::Inline(bytes) = &f.content else { continue };
                if let Some((id, part)) = files.identify(bytes)
                    && seen.insert((host_role.host.clone(), f.path.clone()))
                {
                    out.push(Expected {
                        host: host_role.host.clone(),
                        path: f.path.clone(),
                        cert_id: id.to_string(),
                        part,
                        step: plan.step.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Keys held by no host (`None`) or only by hosts that may receive the id (`Some(id)`), by
/// file name; looked for next to every certificate a host holds.
const KEY_NAMES: &[(&str, Option<&str>, &str)] = &[
    ("ca-key.pem", Some("ca-key"), "the cluster CA key"),
    ("sa.key", Some("sa"), "the service-account signing key"),
    ("etcd-ca-key.pem", None, "the etcd CA key"),
    ("front-proxy-ca-key.pem", None, "the front-proxy CA key"),
    ("etcd-client-key.pem", None, "the deploy machine's etcd client key"),
];

/// Paths each host must not hold anything at (see the module doc).
pub fn forbidden_files(pki: &Pki, expected: &[Expected]) -> Vec<Forbidden> {
    let mut hosts: Vec<&str> = Vec::new();
    for e in expected {
        if !hosts.contains(&e.host.as_str()) {
            hosts.push(&e.host);
        }
    }
    let mut out = Vec::new();
    for host in hosts {
        let mine: BTreeSet<&str> =
            expected.iter().filter(|e| e.host == host).map(|e| e.path.as_str()).collect();
        // Where this host keeps certificates and keys (not kubeconfig directories).
        let dirs: BTreeSet<&str> = expected
            .iter()
            .filter(|e| e.host == host && e.part != Part::Kubeconfig)
            .filter_map(|e| e.path.rsplit_once('/').map(|(d, _)| d))
            .collect();
        let mut add = |path: String, why: String| {
            if !mine.contains(path.as_str()) && !out.iter().any(|f: &Forbidden| f.host == host && f.path == path) {
                out.push(Forbidden { host: host.to_string(), path, why });
            }
        };
        for dir in &dirs {
            for (name, id, what) in KEY_NAMES {
                let why = match id {
                    None => format!("{what}; no host may hold it"),
                    Some(id) => match pki.cert_files(id, host) {
                        Ok(_) => continue,
                        Err(e) => format!("{what}: {e}"),
                    },
                };
                add(format!("{dir}/{name}"), why);
            }
        }
        for e in expected.iter().filter(|e| e.part == Part::Key && e.host != host) {
            if let Err(err) = pki.cert_files(&e.cert_id, host) {
                add(e.path.clone(), format!("the `{}` key: {err}", e.cert_id));
            }
        }
    }
    out
}

/// What to probe on `host`: its expected files (certificates by content, keys and
/// kubeconfigs by sha256), then its forbidden paths (existence only). `judge` takes the
/// answers in this order.
pub fn requests(host: &str, expected: &[Expected], forbidden: &[Forbidden]) -> Vec<Request> {
    let mut r: Vec<Request> = expected
        .iter()
        .filter(|e| e.host == host)
        .map(|e| Request {
            path: e.path.clone(),
            probe: if e.part == Part::Cert { Probe::Content } else { Probe::Sha256 },
        })
        .collect();
    r.extend(forbidden.iter().filter(|f| f.host == host).map(|f| Request {
        path: f.path.clone(),
        probe: Probe::Exists,
    }));
    r
}

/// The verdict on one path of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same bytes as the local file (days left of that certificate, keys: None).
    Same(Option<i64>),
    /// Not there; `step` installs it.
    Missing { step: String },
    /// Not there, nor any other file `step` installs on this host: the step has not run here
    /// yet (a cluster set up step by step). Not a problem.
    NotYet { step: String },
    /// A different certificate or key (stale, replaced by hand, another CA).
    Differs(String),
    /// There but not usable (not a file, not a certificate, unreadable).
    Unreadable(String),
    /// A key the host must not hold.
    Forbidden(String),
}

impl Verdict {
    /// Anything but `Same`: the operator has to act.
    pub fn is_problem(&self) -> bool {
        !matches!(self, Verdict::Same(_) | Verdict::NotYet { .. })
    }
}

/// One row of the remote table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub host: String,
    pub path: String,
    /// `etcd`, `etcd key`, `-` for a forbidden path.
    pub what: String,
    pub verdict: Verdict,
}

/// Judge `host`'s answers (`found`, in `requests` order) against the local PKI.
pub fn judge(
    pki: &Pki,
    host: &str,
    expected: &[Expected],
    forbidden: &[Forbidden],
    found: &[Found],
) -> Vec<Finding> {
    let exp = expected.iter().filter(|e| e.host == host);
    let forb = forbidden.iter().filter(|f| f.host == host);
    let mut answers = found.iter();
    let mut out = Vec::new();
    for e in exp {
        let ans = answers.next().cloned().unwrap_or(Found::Problem("no answer".into()));
        let what = match e.part {
            Part::Cert => e.cert_id.clone(),
            Part::Key => format!("{} key", e.cert_id),
            Part::Kubeconfig => format!("{} kubeconfig", e.cert_id),
        };
        let verdict = match (e.part, ans) {
            (_, Found::Missing) => Verdict::Missing { step: e.step.clone() },
            (_, Found::Problem(p)) => Verdict::Unreadable(p),
            (Part::Key, Found::Sha256(got)) => match pki.cert_files(&e.cert_id, host) {
                Ok(CertFiles { key_pem: Some(k), .. }) => {
                    if sha256_hex(k.expose().as_bytes()) == got {
                        Verdict::Same(None)
                    } else {
                        Verdict::Differs("a different private key than the local one".into())
                    }
                }
                Ok(_) => Verdict::Unreadable("no local key to compare with".into()),
                Err(err) => Verdict::Unreadable(format!("local: {err}")),
            },
            (Part::Kubeconfig, Found::Sha256(got)) => match pki.kubeconfig(&e.cert_id, host) {
                Ok(k) if sha256_hex(k.as_bytes()) == got => Verdict::Same(None),
                Ok(_) => Verdict::Differs(
                    "another kubeconfig than the one ssl/ gives (older certificate or server)".into(),
                ),
                Err(err) => Verdict::Unreadable(format!("local: {err}")),
            },
            (Part::Cert, Found::Content(pem)) => {
                let copy = RemoteCopy {
                    host: host.into(),
                    cert_id: e.cert_id.clone(),
                    path: e.path.clone(),
                    pem,
                };
                match compare_remote(pki, &[copy]).remove(0).status {
                    RemoteStatus::Same => Verdict::Same(
                        pki.cert_files(&e.cert_id, host)
                            .ok()
                            .and_then(|f| inspect_pem(f.cert_pem.as_bytes()).ok())
                            .map(|i| i.days_left),
                    ),
                    RemoteStatus::Differs { got, .. } => Verdict::Differs(format!(
                        "installed: {}, issued by {}, {} days left",
                        got.subject, got.issuer, got.days_left
                    )),
                    RemoteStatus::Unreadable(m) | RemoteStatus::Unexpected(m) => {
                        Verdict::Unreadable(m)
                    }
                }
            }
            (_, other) => Verdict::Unreadable(format!("unexpected answer {other:?}")),
        };
        out.push(Finding { host: host.into(), path: e.path.clone(), what, verdict });
    }
    // A step none of whose files is on this host has not run here: say so, without blame.
    let mut untouched: Vec<String> = Vec::new();
    for f in &out {
        if let Verdict::Missing { step } = &f.verdict {
            let all_missing = out.iter().filter(|g| in_step(expected, host, &g.path, step)).all(
                |g| matches!(&g.verdict, Verdict::Missing { .. }),
            );
            if all_missing && !untouched.contains(step) {
                untouched.push(step.clone());
            }
        }
    }
    for f in &mut out {
        if let Verdict::Missing { step } = &f.verdict {
            if untouched.contains(step) {
                f.verdict = Verdict::NotYet { step: step.clone() };
            }
        }
    }
    for f in forb {
        match answers.next() {
            Some(Found::Missing) => {}
            Some(Found::Problem(p)) => out.push(Finding {
                host: host.into(),
                path: f.path.clone(),
                what: "-".into(),
                verdict: Verdict::Unreadable(format!("could not check for a forbidden key: {p}")),
            }),
            _ => out.push(Finding {
                host: host.into(),
                path: f.path.clone(),
                what: "-".into(),
                verdict: Verdict::Forbidden(f.why.clone()),
            }),
        }
    }
    out
}

/// Whether `path` on `host` is one of the files `step` installs.
fn in_step(expected: &[Expected], host: &str, path: &str, step: &str) -> bool {
    expected.iter().any(|e| e.host == host && e.path == path && e.step == step)
}

/// The remote table: HOST, PATH, CERT, STATUS; one line per unreachable host.
pub fn render(findings: &[Finding], unreachable: &[(String, String)]) -> String {
    let status = |v: &Verdict| match v {
        Verdict::Same(Some(d)) => format!("ok, same as local ({d} days left)"),
        Verdict::Same(None) => "ok, same as local".to_string(),
        Verdict::Missing { step } => {
            format!("MISSING: not installed (step {step} installs it)")
        }
        Verdict::NotYet { step } => format!("not yet: step {step} has not run on this host"),
        Verdict::Differs(m) => format!("MISMATCH: differs from local ({m})"),
        Verdict::Unreadable(m) => format!("UNREADABLE: {m}"),
        Verdict::Forbidden(m) => format!("FORBIDDEN: holds {m}"),
    };
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| [f.host.clone(), f.path.clone(), f.what.clone(), status(&f.verdict)])
        .chain(unreachable.iter().map(|(h, why)| {
            [h.clone(), "-".into(), "-".into(), format!("UNREACHABLE: {why}")]
        }))
        .collect();
    let head = ["HOST", "PATH", "CERT", "STATUS"].map(String::from);
    let mut w = [0usize; 3];
    for r in std::iter::once(&head).chain(&rows) {
        for i in 0..3 {
            w[i] = w[i].max(r[i].len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        ));
    }
    out
}

