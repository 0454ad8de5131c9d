//! Filling the store from a local directory instead of the network (`--from-local DIR`).
//!
//! For each selected artifact, in order:
//! 1. `DIR/<filename>` or `DIR/<name>/<version>/<filename>` (release files copied by hand, or a
//!    mirror tree): copied to the `.part`, then verified like a download.
//! 2. For a `deb` artifact without its `.deb`: the installed files `DIR/<member path>` (so
//!    `--from-local /` takes Debian's installed etcd, containerd, …), each checked against the
//!    manifest's pinned `member_sha256` of the file as shipped in that package version. A
//!    `debian-source` artifact likewise takes its built binaries as `DIR/<binary>` (a copy of an
//!    earlier build's output), each checked against its pin.
//!
//! Nothing is trusted for being local: a file that does not match its pin is refused.

use std::path::Path;

use super::ArtifactError;
use super::download::{Outcome, Status, select};
use super::manifest::Kind;
use super::store::{Store, mkdir_parent};

/// Fill `store` with the artifacts of `k8s_ver` (filtered by `only`) found under `root`.
pub fn fill_from_local(
    store: &Store,
    k8s_ver: &str,
    only: &[String],
    root: &Path,
) -> Result<Vec<Outcome>, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let mut out = Vec::new();
    for a in select(set_name, set, only)? {
        let flat = root.join(a.filename());
        let tree = root.join(Store::rel(a)).join(a.filename());
        // A build's source tarball is not its binaries: those are looked for one by one.
        let file = [flat, tree]
            .into_iter()
            .find(|p| p.is_file() && a.kind != Kind::DebianSource);
        let result = if store.is_complete(a) {
            Ok(Status::AlreadyVerified)
        } else if let Some(src) = &file {
            let part = store.part_path(a);
            mkdir_parent(&part)
                .and_then(|_| std::fs::copy(src, &part).map_err(ArtifactError::io(&part)))
                .and_then(|bytes| {
                    store.ingest(a, &part, &src.display().to_string())?;
                    Ok(Status::Downloaded {
                        bytes,
                        resumed_from: 0,
                        attempts: 0,
                    })
                })
        } else if a.kind.pins_members() {
            store
                .install_deb_members(a, root)
                .map(|_| Status::Downloaded {
                    bytes: 0,
                    resumed_from: 0,
                    attempts: 0,
                })
        } else {
            Err(ArtifactError::Io {
                path: root.join(a.filename()),
                err: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} not found (also looked in {})",
                        a.filename(),
                        root.join(Store::rel(a)).display()
                    ),
                ),
            })
        };
        out.push(Outcome {
            artifact: a.name.clone(),
            url: root.display().to_string(),
            result,
        });
    }
    Ok(out)
}
