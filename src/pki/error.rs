//! Errors of the PKI module; each names the file, certificate id or host it is about.

use std::path::PathBuf;

/// Everything that can go wrong issuing, loading or handing out certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A `PkiSpec` value is unusable; `var` is the kubeasz variable or group name.
    #[error("{var}: {msg}")]
    Spec { var: String, msg: String },

    /// Reading or writing a file under ssl/ failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A certificate or key file exists but cannot be used.
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },

    /// Only one half of a CA pair is present; ezk never guesses the other half.
    #[error("{}: exists without {}; restore the missing file, or move both away to let ezk create a new CA", present.display(), missing.display())]
    HalfCa { present: PathBuf, missing: PathBuf },

    /// Something must be signed by a CA whose key is not on this machine.
    #[error("{what} must be issued, but the CA key {} is not here (kept offline?); put the key there for this run (ezk reads it, and sends it to no host but the masters, for kube-controller-manager), or restore a certificate that is still valid; nothing was changed on any host", key.display())]
    NeedsCaKey { what: String, key: PathBuf },

    /// rcgen refused to build or sign a certificate.
    #[error("issuing {id}: {source}")]
    Sign { id: String, source: rcgen::Error },

    /// `cert_files`/`kubeconfig` was asked for an id that does not exist.
    #[error("unknown certificate or kubeconfig {id:?}; known: {known}")]
    Unknown { id: String, known: String },

    /// The host is not in any group that may receive this file.
    #[error("{host} may not receive {id}: {why}")]
    NotAllowed {
        id: String,
        host: String,
        why: String,
    },

    /// ssl/manifest.json is not valid JSON of the expected shape.
    #[error("{}: {msg}; delete it to re-check every certificate (certificates whose inputs changed are reissued)", path.display())]
    Manifest { path: PathBuf, msg: String },
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PkiError {
        let path = path.into();
        move |source| PkiError::Io { path, source }
    }
}
