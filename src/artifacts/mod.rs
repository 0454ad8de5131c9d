//! Artifact store: pinned manifest with digests, download (reqwest), mirror, offline bundle.
//!
//! `manifest` says what every release file must hash to; `store` keeps only verified files
//! (and the binaries extracted from them, with their sha256) under the home's `down/`;
//! `download` fills it over HTTP (parallel, resumable), `local` from a directory or the
//! installed Debian packages, `apt` through apt-get (the lab's pinned .debs, and the builds of
//! `source_build`, whose binaries `oci` packs into container images), `registry` fetches the
//! container images pinned by digest, `bundle` moves a verified store to an offline machine.
//! Nothing enters the store before its digest matches the manifest.

pub mod apt;
pub mod bundle;
pub mod catalog;
pub mod download;
pub mod extract;
pub mod local;
pub mod manifest;
pub mod oci;
pub mod progress;
pub mod registry;
pub mod sha256sums;
pub mod source_build;
pub mod store;
mod verified;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use manifest::{Artifact, Digest, Kind, Manifest};
pub use store::{LocalBinary, Store};

/// Everything that can go wrong with artifacts; each message names the file or URL and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: invalid versions manifest: {msg}")]
    Manifest { path: String, msg: String },
    /// `known`: the releases there are, or how to name one.
    #[error("no artifact set for K8S_VER {ver:?}; {known}")]
    UnknownVersion { ver: String, known: String },
    /// A release the catalog knows but has no published digests for (versions-unpinned.txt).
    #[error(
        "Kubernetes {ver} is a release this ezk knows but has not pinned: {missing}. ezk does not invent digests; to fetch it, name the release's own checksum file and ezk takes the Kubernetes binaries' digests from it (the other artifacts stay those pinned for {minor}): ezk download --k8s-ver {ver} --sha256sums https://dl.k8s.io/release/v{ver}/SHA256SUMS (or a local copy of that file)"
    )]
    Unpinned { ver: String, missing: String, minor: String },
    /// A release's checksum file that cannot be read or used.
    #[error("checksum file {src}: {msg}")]
    Sums { src: String, msg: String },
    /// `--sha256sums` refused for a release.
    #[error("cannot pin Kubernetes {ver} from {from}: {msg}")]
    Pin { ver: String, from: String, msg: String },
    #[error("binary {name:?} is not in artifact set {set} of the versions manifest")]
    NotProvided { name: String, set: String },
    #[error("binary {name} (artifact set {set}) is not in the store {dir}; fetch it with: {cmd}")]
    Missing {
        name: String,
        set: String,
        dir: PathBuf,
        cmd: String,
    },
    /// The io error is part of the message (not a `source`), so reports do not repeat it.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "checksum mismatch for {url}: expected {expected}, got {got}; the file was quarantined at {quarantined} and not used"
    )]
    Mismatch {
        url: String,
        expected: String,
        got: String,
        quarantined: PathBuf,
    },
    #[error("{path}: {binary} has sha256 {got}, expected {expected}; not used")]
    BinaryMismatch {
        path: PathBuf,
        binary: String,
        expected: String,
        got: String,
    },
    #[error("download {url}: {msg}")]
    Http { url: String, msg: String },
    #[error("{archive}: {msg}")]
    Archive { archive: PathBuf, msg: String },
    #[error("Debian package {package} {version}: {msg}")]
    Apt {
        package: String,
        version: String,
        msg: String,
    },
    #[error(
        "artifact set {set}: {names} are not Debian packages; --from-apt fetches only sets pinned as .deb files: ezk download --k8s-ver lab-debian --from-apt"
    )]
    NotDeb { set: String, names: String },
    #[error("bundle {path}: {msg}")]
    Bundle { path: PathBuf, msg: String },
    #[error("build of {what}: {msg}")]
    Build { what: String, msg: String },
    #[error("image {name}: {msg}")]
    Image { name: String, msg: String },
}

impl ArtifactError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
        move |err| ArtifactError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

/// sha256 of a file.
pub fn digest_file(path: &Path) -> Result<Digest, ArtifactError> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path).map_err(ArtifactError::io(path))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut h = sha2::Sha256::new();
    loop {
        let n = f.read(&mut buf).map_err(ArtifactError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest(hex::encode(h.finalize())))
}

/// sha256 hex of a file.
pub fn sha256_file(path: &Path) -> Result<String, ArtifactError> {
    Ok(digest_file(path)?.0)
}
