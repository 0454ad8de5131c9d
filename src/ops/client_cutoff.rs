//! Who loses access: before a run rewrites the unit of a service that others must reach
//! (etcd, kube-apiserver), compare how the unit on the host decides whom to let in with how
//! the new one will — which CAs it trusts for clients and peers, whether a client must present
//! a certificate, which plaintext listeners it has — and say in words which clients that
//! worked before are refused after: which certificate files, on which hosts. `ezk setup`
//! prints this (also under `--plan`) and applies such a change only with
//! `--allow-client-cutoff`.
//!
//! The facts are read from the hosts before anything changes: the unit file first (one round
//! trip to the hosts whose unit the plan writes), then, only when a trusted CA changes, the
//! CA files the units name and every certificate next to them that has a name this machine's
//! `ssl/` has too (kubeasz and ezk install certificates under the names they have there).
//! Nothing is written on the hosts. The verdict is pure (`findings`) and tested without hosts.
//!
//! A no-op re-run should not pay a connection for this: when a host's unit is found to be what
//! the plan writes, its sha256 is remembered (`clusters/<name>/cache/client-cutoff.json`), and
//! while the plan writes that same unit the host is not asked again. (A unit edited by hand
//! after that is overwritten by the run without this check; `--plan` shows the diff.)

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;

use super::Error;
use crate::exec::Options;
use crate::exec::gather::host_files::{self, Found, Probe, Request};
use crate::pki::inspect::{is_client_cert, pem_certs, signed_by, subject};
use crate::plan::action::{Action, Content, StepPlan};
use crate::session::Session;

/// A service others connect to, and the flags of its unit that decide whom it lets in.
pub struct Door {
    /// The unit file's name (`/etc/systemd/system/<unit>`).
    pub unit: &'static str,
    /// Trusted-CA flags, each with who presents certificates checked against it.
    pub cas: &'static [(&'static str, &'static str)],
    /// Flags that make a certificate required (default false), each with whom it concerns.
    pub cert_auth: &'static [(&'static str, &'static str)],
    /// The flag listing its client listeners (plaintext ones are `http://`).
    pub listeners: Option<&'static str>,
}

/// The services whose clients ezk must not cut off unannounced.
pub const DOORS: &[Door] = &[
    Door {
        unit: "etcd.service",
        cas: &[("--trusted-ca-file", "clients"), ("--peer-trusted-ca-file", "peers")],
        cert_auth: &[("--client-cert-auth", "clients"), ("--peer-client-cert-auth", "peers")],
        listeners: Some("--listen-client-urls"),
    },
    Door { unit: "kube-apiserver.service", cas: &[("--client-ca-file", "clients")], cert_auth: &[], listeners: None },
];

/// `--name=value` words of a unit's ExecStart (continuation lines joined).
pub fn flags(unit: &str) -> BTreeMap<String, String> {
    let joined = unit.replace("\\\n", " ");
    let Some(line) = joined.lines().find(|l| l.trim_start().starts_with("ExecStart=")) else {
        return BTreeMap::new();
    };
    line.split_whitespace()
        .filter_map(|w| w.trim_matches('"').strip_prefix("--"))
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (format!("--{k}"), v.trim_matches('"').to_string()),
            None => (format!("--{w}"), "true".to_string()),
        })
        .collect()
}

/// The unit of a door on one host: as it is there now, and as the plan writes it.
pub struct UnitChange<'a> {
    pub host: String,
    pub door: &'a Door,
    pub old: String,
    pub new: String,
}

/// Files as this check knows them: (host, path) → bytes, `None` when missing there.
pub type FileMap = BTreeMap<(String, String), Option<std::sync::Arc<[u8]>>>;

/// One way a client loses access, with the hosts where it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What changes and who is refused, in words.
    pub what: String,
    pub hosts: Vec<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "on {}: {}", self.hosts.join(", "), self.what)
    }
}

/// The CA files each change reads: the path of each trusted-CA flag, old and new.
pub fn ca_paths(changes: &[UnitChange]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in changes {
        let (old, new) = (flags(&c.old), flags(&c.new));
        for (flag, _) in c.door.cas {
            for p in [old.get(*flag), new.get(*flag)].into_iter().flatten() {
                let k = (c.host.clone(), p.clone());
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
    }
    out
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "true")
}

/// What each change cuts off. `planned`: files the plan writes (new content wins over the
/// host's); `on_hosts`: the CA files and candidate client certificates read from the hosts;
/// `local`: this machine's certificates (name → PEM) from `clusters/<name>/ssl/`.
pub fn findings(changes: &[UnitChange], planned: &FileMap, on_hosts: &FileMap, local: &[(String, Vec<u8>)], ssl_dir: &Path) -> Vec<Finding> {
    let mut by_what: IndexMap<String, Vec<String>> = IndexMap::new();
    let read = |map: &FileMap, host: &str, path: &str| map.get(&(host.to_string(), path.to_string())).cloned().flatten();
    for c in changes {
        let (old, new) = (flags(&c.old), flags(&c.new));
        let service = c.door.unit.trim_end_matches(".service");
        let mut say = |what: String| by_what.entry(what).or_default().push(c.host.clone());
        for (flag, who) in c.door.cas {
            let Some(old_path) = old.get(*flag) else { continue };
            let before = read(on_hosts, &c.host, old_path).map(|b| pem_certs(&b)).unwrap_or_default();
            let after = match new.get(*flag) {
                Some(p) => read(planned, &c.host, p).or_else(|| read(on_hosts, &c.host, p)).map(|b| pem_certs(&b)).unwrap_or_default(),
                None => Vec::new(),
            };
            let dropped: Vec<&Vec<u8>> = before.iter().filter(|ca| !after.contains(ca)).collect();
            if dropped.is_empty() {
                continue;
            }
            let refused = |der: &[u8]| is_client_cert(der) && dropped.iter().any(|ca| signed_by(der, ca)) && !after.iter().any(|ca| signed_by(der, ca));
            let mut lost: Vec<String> = Vec::new();
            for ((h, path), bytes) in on_hosts {
                if let Some(b) = bytes {
                    if pem_certs(b).first().is_some_and(|d| refused(d)) {
                        lost.push(format!("{path} on {h}"));
                    }
                }
            }
            for (name, pem) in local {
                if pem_certs(pem).first().is_some_and(|d| refused(d)) {
                    lost.push(format!("{} (this machine)", ssl_dir.join(name).display()));
                }
            }
            let cas: Vec<String> = dropped.iter().map(|d| format!("\"{}\"", subject(d))).collect();
            let whose = if lost.is_empty() {
                "every certificate it signed is refused (none found on the hosts or in ssl/)".to_string()
            } else {
                format!("refused: {}", lost.join("; "))
            };
            say(format!("{service} stops trusting the CA {} for {who} ({flag}): {whose}", cas.join(", ")));
        }
        for (flag, who) in c.door.cert_auth {
            if !is_true(old.get(*flag)) && is_true(new.get(*flag)) {
                say(format!("{service} requires a client certificate from its {who} ({flag}=true, was not set): {who} that present none are refused"));
            }
        }
        if let Some(flag) = c.door.listeners {
            let urls = |m: &BTreeMap<String, String>| -> Vec<String> { m.get(flag).map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default() };
            let kept = urls(&new);
            for u in urls(&old).into_iter().filter(|u| u.starts_with("http://") && !kept.contains(u)) {
                say(format!(
                    "{service}'s plaintext listener {u} goes away ({flag}): clients that use it lose access; they must use TLS with a certificate (https://)"
                ));
            }
        }
    }
    by_what.into_iter().map(|(what, hosts)| Finding { what, hosts }).collect()
}

/// The unit files of `DOORS` that `plans` write, per host, with the bytes they write; and every
/// file the plans write (for the CA files the new units name).
fn planned(plans: &[StepPlan]) -> (Vec<(String, &'static Door, String)>, FileMap) {
    let mut units = Vec::new();
    let mut files = FileMap::new();
    for hr in plans.iter().flat_map(|p| &p.waves).flat_map(|w| &w.hosts) {
        for t in &hr.tasks {
            let Action::File(f) = &t.action else { continue };
            let Content::Inline(bytes) = &f.content else { continue };
            files.insert((hr.host.clone(), f.path.clone()), Some(bytes.clone()));
            if let Some(door) = DOORS.iter().find(|d| f.path == format!("/etc/systemd/system/{}", d.unit)) {
                units.push((hr.host.clone(), door, String::from_utf8_lossy(bytes).into_owned()));
            }
        }
    }
    (units, files)
}

/// Certificates in `ssl/` by file name (keys and unreadable files left out).
fn local_certs(ssl: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(ssl) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pem") && !n.ends_with("-key.pem"))
        .filter_map(|n| std::fs::read(ssl.join(&n)).ok().map(|b| (n, b)))
        .filter(|(_, b)| pem_certs(b).first().is_some_and(|d| is_client_cert(d)))
        .collect();
    out.sort();
    out
}

/// Read what the check needs from the hosts and judge (see the module doc). A host that
/// cannot be reached is left to the run, which reports it.
pub fn check(session: &Session, plans: &[StepPlan], opts: &Options) -> Result<Vec<Finding>, Error> {
    let (units, files) = planned(plans);
    let seen_path = session.dir().join("cache").join("client-cutoff.json");
    let mut seen: BTreeMap<String, String> =
        std::fs::read(&seen_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let key = |host: &str, door: &Door| format!("{host} {}", door.unit);
    let units: Vec<_> = units
        .into_iter()
        .filter(|(h, d, new)| seen.get(&key(h, d)) != Some(&crate::pki::sha256_hex(new.as_bytes())))
        .collect();
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let conns = session.connections()?;
    let ssh = crate::exec::ssh_options(session.dir(), &conns, opts);
    let ask = |reqs: IndexMap<String, Vec<Request>>| -> Result<FileMap, Error> {
        let hosts: IndexMap<_, _> =
            reqs.into_iter().filter(|(_, r)| !r.is_empty()).map(|(h, r)| (h.clone(), (conns[&h].clone(), r))).collect();
        let mut out = FileMap::new();
        for (host, answer) in host_files::fetch_with(ssh.clone(), &hosts)? {
            let Ok(found) = answer else { continue };
            for (r, f) in hosts[&host].1.iter().zip(found) {
                let bytes = match f {
                    Found::Content(b) => Some(b.into()),
                    _ => None,
                };
                out.insert((host.clone(), r.path.clone()), bytes);
            }
        }
        Ok(out)
    };
    let content = |path: &str| Request { path: path.to_string(), probe: Probe::Content };
    let mut reqs: IndexMap<String, Vec<Request>> = IndexMap::new();
    for (host, door, _) in &units {
        reqs.entry(host.clone()).or_default().push(content(&format!("/etc/systemd/system/{}", door.unit)));
    }
    let old_units = ask(reqs)?;
    let before = seen.clone();
    for (host, door, new) in &units {
        if matches!(old_units.get(&(host.clone(), format!("/etc/systemd/system/{}", door.unit))), Some(Some(b)) if **b == *new.as_bytes()) {
            seen.insert(key(host, door), crate::pki::sha256_hex(new.as_bytes()));
        }
    }
    if seen != before {
        // Only a cache: a failed write means the next run asks the hosts again.
        let _ = std::fs::create_dir_all(seen_path.parent().expect("in cache/"));
        let tmp = seen_path.with_extension("json.tmp");
        if std::fs::write(&tmp, serde_json::to_vec_pretty(&seen).expect("serializes")).is_ok() {
            let _ = std::fs::rename(&tmp, &seen_path);
        }
    }
    let changes: Vec<UnitChange> = units
        .into_iter()
        .filter_map(|(host, door, new)| {
            let old = old_units.get(&(host.clone(), format!("/etc/systemd/system/{}", door.unit))).cloned().flatten()?;
            let old = String::from_utf8_lossy(&old).into_owned();
            (old != new).then_some(UnitChange { host, door, old, new })
        })
        .collect();
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // The trusted CAs, and what might hold a certificate they signed.
    let ssl = session.dir().join("ssl");
    let local = local_certs(&ssl);
    let cas = ca_paths(&changes);
    let mut reqs: IndexMap<String, Vec<Request>> = session.inventory.hosts.iter().map(|h| (h.clone(), Vec::new())).collect();
    let dirs: Vec<String> = {
        let mut d: Vec<String> = cas.iter().filter_map(|(_, p)| p.rsplit_once('/').map(|(d, _)| d.to_string())).collect();
        d.sort();
        d.dedup();
        d
    };
    for (host, path) in &cas {
        reqs.entry(host.clone()).or_default().push(content(path));
    }
    for (host, r) in reqs.iter_mut() {
        for dir in &dirs {
            for (name, _) in &local {
                let p = format!("{dir}/{name}");
                if !cas.iter().any(|(h, c)| h == host && *c == p) {
                    r.push(content(&p));
                }
            }
        }
    }
    let on_hosts = ask(reqs)?;
    Ok(findings(&changes, &files, &on_hosts, &local, &ssl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "[Service]\nExecStart=/opt/kube/bin/etcd \\\n  --name=etcd-1 \\\n  --trusted-ca-file=/etc/kubernetes/ssl/ca.pem \\\n  --peer-trusted-ca-file=/etc/kubernetes/ssl/ca.pem \\\n  --listen-client-urls=https://10.0.0.1:2379,http://127.0.0.1:2379\nRestart=always\n";

    #[test]
    fn flags_read_every_continued_exec_start_word() {
        let f = flags(OLD);
        assert_eq!(f["--trusted-ca-file"], "/etc/kubernetes/ssl/ca.pem");
        assert_eq!(f["--listen-client-urls"], "https://10.0.0.1:2379,http://127.0.0.1:2379");
        assert!(!f.contains_key("--client-cert-auth"));
    }

    #[test]
    fn same_ca_new_path_tls_only_and_cert_auth_are_said_in_words() {
        let new = "[Service]\nExecStart=/opt/kube/bin/etcd \\\n  --trusted-ca-file=/etc/kubernetes/ssl/etcd-ca.pem \\\n  --client-cert-auth=true \\\n  --peer-trusted-ca-file=/etc/kubernetes/ssl/etcd-ca.pem \\\n  --peer-client-cert-auth=true \\\n  --listen-client-urls=https://10.0.0.1:2379,https://127.0.0.1:2379\n";
        let ca = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_vec();
        let changes: Vec<UnitChange> = ["h1", "h2"]
            .iter()
            .map(|h| UnitChange { host: h.to_string(), door: &DOORS[0], old: OLD.into(), new: new.into() })
            .collect();
        let mut planned = FileMap::new();
        let mut hosts = FileMap::new();
        for h in ["h1", "h2"] {
            planned.insert((h.into(), "/etc/kubernetes/ssl/etcd-ca.pem".into()), Some(ca.clone().into()));
            hosts.insert((h.into(), "/etc/kubernetes/ssl/ca.pem".into()), Some(ca.clone().into()));
        }
        let f = findings(&changes, &planned, &hosts, &[], Path::new("/ssl"));
        let text: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        // The same CA under another name is no change of trust.
        assert!(!text.iter().any(|t| t.contains("stops trusting")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("on h1, h2: etcd requires a client certificate from its clients")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("peers that present none")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("plaintext listener http://127.0.0.1:2379 goes away")), "{text:#?}");
        assert_eq!(f.len(), 3);
    }
}
