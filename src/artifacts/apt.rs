//! Filling the store with a set's pinned Debian packages through apt (`--from-apt`).
//!
//! For the lab on a machine that cannot reach upstream release hosts but has a Debian mirror
//! configured: each `deb` artifact is fetched with `apt-get download <pkg>:<arch>=<version>`
//! (apt's own client, apt's own signed index) into a scratch directory inside the store, then
//! ingested exactly like `--from-local`: the .deb must match its pinned sha256 and every binary
//! in it its pinned `member_sha256`. Nothing is trusted for coming through apt.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ArtifactError;
use super::download::{Outcome, Status, select};
use super::manifest::{Artifact, Kind};
use super::store::Store;
use super::{oci, source_build};

/// Fetch and ingest the `deb` artifacts of `k8s_ver` (filtered by `only`), build its
/// `debian-source` artifacts (from apt's source packages, cached machine-wide; see
/// `source_build`), and, when nothing was filtered out, make the set's images (`oci`).
/// Artifacts already verified in the store are not fetched again. A set (or selection) with
/// artifacts that are not Debian packages is refused before anything is fetched. `progress`
/// gets the steps of a build.
pub fn fill_from_apt(
    store: &Store,
    k8s_ver: &str,
    only: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Outcome>, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let selected = select(set_name, set, only)?;
    let not_deb: Vec<&str> = selected
        .iter()
        .filter(|a| !a.kind.pins_members())
        .map(|a| a.name.as_str())
        .collect();
    if !not_deb.is_empty() {
        return Err(ArtifactError::NotDeb {
            set: set_name.to_string(),
            names: not_deb.join(", "),
        });
    }
    let scratch = store.dir().join(format!(".apt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(ArtifactError::io(&scratch))?;
    let mut out = Vec::new();
    let mirror = crate::machine::debian_mirror();
    for a in selected {
        let result = if store.is_complete(a) {
            Ok(Status::AlreadyVerified)
        } else if a.kind == Kind::DebianSource {
            source_build::fill(store, a, &source_build::cache_root(), &mirror, progress).map(|b| {
                match b {
                    source_build::Built::CacheHit { secs } => Status::Built { secs, cached: true },
                    source_build::Built::Built { secs } => Status::Built {
                        secs,
                        cached: false,
                    },
                }
            })
        } else {
            apt_download(a, &scratch).and_then(|(deb, bytes)| {
                store.ingest(a, &deb, &a.url)?;
                Ok(Status::Downloaded {
                    bytes,
                    resumed_from: 0,
                    attempts: 1,
                })
            })
        };
        out.push(Outcome {
            artifact: a.name.clone(),
            url: format!("apt: {}", apt_spec(a)),
            result,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if only.is_empty() && !set.images.is_empty() && out.iter().all(|o| o.result.is_ok()) {
        match oci::build_set(store, set_name) {
            Ok(images) => out.extend(images.into_iter().map(|(name, rec, new)| Outcome {
                artifact: format!("image {name}"),
                url: rec.reference.clone(),
                result: Ok(if new {
                    Status::Made {
                        what: format!("{} {}", rec.reference, rec.digest),
                    }
                } else {
                    Status::AlreadyVerified
                }),
            })),
            Err(e) => out.push(Outcome {
                artifact: "images".into(),
                url: String::new(),
                result: Err(e),
            }),
        }
    }
    Ok(out)
}

/// Debian package name and architecture, from the pinned pool file name
/// (`<package>_<version>_<arch>.deb`).
pub fn package_and_arch(a: &Artifact) -> (&str, &str) {
    let file = a.filename().trim_end_matches(".deb");
    let mut parts = file.split('_');
    let pkg = parts.next().unwrap_or(&a.name);
    let arch = parts.nth(1).unwrap_or("amd64");
    (pkg, arch)
}

/// `<package>:<arch>=<version>` as apt-get takes it (a build: its source package).
pub fn apt_spec(a: &Artifact) -> String {
    if let Some(b) = &a.build {
        return format!("source {}", b.source);
    }
    let (pkg, arch) = package_and_arch(a);
    format!("{pkg}:{arch}={}", a.version)
}

/// Run `apt-get download` for one artifact in an empty directory; return the .deb and its size.
fn apt_download(a: &Artifact, scratch: &Path) -> Result<(PathBuf, u64), ArtifactError> {
    let (pkg, _) = package_and_arch(a);
    let dir = scratch.join(&a.name);
    std::fs::create_dir_all(&dir).map_err(ArtifactError::io(&dir))?;
    let spec = apt_spec(a);
    let failed = |msg: String| ArtifactError::Apt {
        package: pkg.to_string(),
        version: a.version.clone(),
        msg,
    };
    let res = Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(&dir)
        .output()
        .map_err(|e| {
            failed(format!(
                "cannot run apt-get ({e}); use --from-local with the .deb files"
            ))
        })?;
    if !res.status.success() {
        let stderr = String::from_utf8_lossy(&res.stderr);
        let reason: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
        let reason = if reason.is_empty() {
            stderr.trim().to_string()
        } else {
            reason.join("; ")
        };
        return Err(failed(format!(
            "apt-get download {spec} failed: {reason}\n  apt serves: {}\n  fix: run `apt-get update`; if the pinned version is no longer served, update \
             artifact {} of this set in src/artifacts/versions.yml (version, url, sha256 of the .deb \
             from the Packages index, member_sha256 of each binary) to a served version",
            served_versions(pkg),
            a.name
        )));
    }
    // apt names the file itself (escaping some characters); take the one .deb it wrote.
    let deb = std::fs::read_dir(&dir)
        .map_err(ArtifactError::io(&dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| {
            failed(format!(
                "apt-get download {spec} succeeded but wrote no .deb in {}",
                dir.display()
            ))
        })?;
    let bytes = std::fs::metadata(&deb)
        .map_err(ArtifactError::io(&deb))?
        .len();
    Ok((deb, bytes))
}

/// The versions apt's index offers for `pkg` (for the error message), or why none are known.
fn served_versions(pkg: &str) -> String {
    let out = Command::new("apt-cache").args(["madison", pkg]).output();
    let Ok(out) = out else {
        return "unknown (apt-cache not runnable)".to_string();
    };
    let vers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(|v| v.trim().to_string()))
        .collect();
    let mut vers = vers;
    vers.dedup();
    if vers.is_empty() {
        format!("no version of {pkg} (not in apt's index)")
    } else {
        format!("{pkg} {}", vers.join(", "))
    }
}
