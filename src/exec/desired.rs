//! Desired state computed on the deploy machine before any connection: the bytes, size and
//! sha256 of every file a role's tasks install (including the generated sysctl.d and
//! modules-load.d files), so gather can compare hashes and apply can stream exactly those bytes.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::transport::StdinPart;
use crate::plan::action::{Action, Content, Task};

/// Files larger than this are never fetched or diffed in plan mode.
pub const DIFF_LIMIT: u64 = 256 * 1024;

/// What a task wants on the host, beyond its action's own fields.
#[derive(Debug, Clone)]
pub enum Desired {
    /// A file with known content (File, Sysctl file, Modprobe file).
    File {
        sha256: String,
        size: u64,
        source: FileSource,
        /// Text, small, not secret: plan mode may show a diff.
        diffable: bool,
    },
    /// Nothing to precompute.
    Nothing,
}

/// Where the bytes of a wanted file come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// The plan's own allocation (shared by every host that gets the same bytes), not a copy.
    Inline(Arc<[u8]>),
    Local(PathBuf),
    /// A binary the store does not hold yet (`will install …`): plan mode only, a run refuses
    /// the plan before connecting (`runner`).
    NotDownloaded(String),
}

impl Desired {
    /// The wanted sha256, for files.
    pub fn sha256(&self) -> Option<&str> {
        match self {
            Desired::File { sha256, .. } => Some(sha256),
            Desired::Nothing => None,
        }
    }
    /// The bytes to stream for this file.
    pub fn stdin_part(&self) -> Option<StdinPart> {
        match self {
            Desired::File { source: FileSource::Inline(b), .. } => Some(StdinPart::Bytes(Arc::clone(b))),
            Desired::File { source: FileSource::Local(p), .. } => Some(StdinPart::File(p.clone())),
            Desired::File { source: FileSource::NotDownloaded(_), .. } | Desired::Nothing => None,
        }
    }
    /// `will install <name> <version> (not downloaded yet)` for a binary not in the store.
    pub fn not_downloaded(&self) -> Option<&str> {
        match self {
            Desired::File { source: FileSource::NotDownloaded(what), .. } => Some(what),
            _ => None,
        }
    }
    /// The wanted bytes when held in memory (for plan diffs).
    pub fn inline_bytes(&self) -> Option<&[u8]> {
        match self {
            Desired::File { source: FileSource::Inline(b), .. } => Some(b),
            _ => None,
        }
    }
}

/// A local artifact could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{task} ({origin}): local file {path}: {source}")]
pub struct DesiredError {
    pub task: String,
    pub origin: String,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The file ezk writes for a `sysctl` task.
pub fn sysctl_file(entries: &[(String, String)]) -> Vec<u8> {
    let mut s = String::from("# managed by ezk\n");
    for (k, v) in entries {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s.into_bytes()
}

/// The file ezk writes for a `modprobe` task.
pub fn modules_file(modules: &[String]) -> Vec<u8> {
    let mut s = String::from("# managed by ezk\n");
    for m in modules {
        s.push_str(m);
        s.push('\n');
    }
    s.into_bytes()
}

/// Markers of secret material in text: PEM private keys, a kubeconfig's embedded client key or
/// bearer token. A file carrying one is treated as secret even when its task forgot
/// `secret: true` (a role author's slip must not print a key in `--plan`).
const SECRET_MARKERS: &[&[u8]] = &[b"PRIVATE KEY-----", b"client-key-data", b"token:"];

/// Whether `bytes` look like they hold secret material (see `SECRET_MARKERS`).
pub fn looks_secret(bytes: &[u8]) -> bool {
    SECRET_MARKERS.iter().any(|m| bytes.windows(m.len()).any(|w| w == *m))
}

fn inline(bytes: Arc<[u8]>, secret: bool) -> Desired {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    // Not diffable means plan mode neither fetches the host's copy nor shows a diff.
    let diffable = !secret
        && bytes.len() as u64 <= DIFF_LIMIT
        && std::str::from_utf8(&bytes).is_ok()
        && !looks_secret(&bytes);
    Desired::File { sha256, size: bytes.len() as u64, source: FileSource::Inline(bytes), diffable }
}

/// The desired state of a role's tasks (same order as the tasks).
pub fn desired_state(tasks: &[Task]) -> Result<Vec<Desired>, DesiredError> {
    tasks
        .iter()
        .map(|t| match &t.action {
            Action::File(f) => match &f.content {
                Content::Inline(b) => Ok(inline(b.clone(), f.secret)),
                Content::Local { path, sha256 } => {
                    let size = std::fs::metadata(path)
                        .map_err(|source| DesiredError {
                            task: t.name.clone(),
                            origin: t.origin.clone(),
                            path: path.clone(),
                            source,
                        })?
                        .len();
                    Ok(Desired::File {
                        sha256: sha256.to_lowercase(),
                        size,
                        source: FileSource::Local(path.clone()),
                        diffable: false,
                    })
                }
                // Unknown bytes: a host matches only a pinned digest of the file itself.
                c @ Content::NotDownloaded { sha256, .. } => Ok(Desired::File {
                    sha256: sha256.clone().unwrap_or_default(),
                    size: 0,
                    source: FileSource::NotDownloaded(c.not_downloaded().expect("not downloaded")),
                    diffable: false,
                }),
            },
            Action::Sysctl { entries, .. } => Ok(inline(sysctl_file(entries).into(), false)),
            Action::Modprobe { modules, .. } => Ok(inline(modules_file(modules).into(), false)),
            _ => Ok(Desired::Nothing),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_is_never_diffable_even_unflagged() {
        let key = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".to_vec();
        let kubeconfig = b"users:\n- name: admin\n  user:\n    client-key-data: TUlHSA==\n".to_vec();
        let plain = b"[Service]\nExecStart=/bin/true\n".to_vec();
        let diffable = |b: Vec<u8>| matches!(inline(b.into(), false), Desired::File { diffable: true, .. });
        assert!(!diffable(key.clone()));
        assert!(!diffable(kubeconfig));
        assert!(diffable(plain.clone()));
        assert!(!matches!(inline(plain.into(), true), Desired::File { diffable: true, .. }));
        assert!(looks_secret(&key) && !looks_secret(b"key file: /etc/kubernetes/ssl/etcd-key.pem"));
    }
}
