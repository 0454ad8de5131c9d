//! The ssl/ directory on the deploy machine: atomic writes with the right modes, and the
//! manifest that records what each certificate was issued from.
//!
//! Why a manifest: a certificate is reused only when the hash of its inputs (subject, SANs,
//! usages, issuer fingerprint, validity policy) is unchanged *and* the file on disk is the one
//! ezk wrote (same fingerprint). Comparing inputs instead of re-reading every SAN keeps a re-run
//! cheap and makes "what changed" exact.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::PkiError;

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the ssl/ directory.
pub const DIR_MODE: u32 = 0o700;
const MANIFEST: &str = "manifest.json";

/// Create `dir` (and parents) and force it to 0700, also when it already existed wider.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(PkiError::io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(PkiError::io(dir))
}

/// Write `data` to `path` atomically: temp file in the same dir created with `mode`, fsync,
/// rename over the target, fsync the directory. A crash leaves the old or the new file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed `mode`; the mode must be exact before the file is visible.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(PkiError::io(path))
}

/// Read a file to a string, `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// One issued certificate as recorded in ssl/manifest.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// sha256 (hex) of the canonical description of the certificate's inputs.
    pub inputs: String,
    /// sha256 (hex) of the certificate's DER: its fingerprint.
    pub sha256: String,
}

/// ssl/manifest.json: file stem → entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub certs: BTreeMap<String, Entry>,
    /// One CA (`ca.pem`) signs everything, etcd and front-proxy certificates too: a PKI that
    /// kubeasz made, kept so that every client holding one of its certificates keeps working
    /// (see `adopt`). Decided once, when ezk first meets the directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_ca: bool,
    /// In a one-CA PKI: etcd has a CA of its own since a rotation moved it there
    /// (`etcd-ca.pem` signs the etcd certificates; `ca.pem` the rest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_etcd_ca: bool,
    /// An etcd CA rotation under way (see `rotate`), or the last one finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<super::rotate::Rotation>,
    /// A cluster (Kubernetes) CA rotation under way, or the last one finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_rotation: Option<super::rotate::Rotation>,
}

impl Manifest {
    /// Path of the manifest inside `ssl`.
    pub fn path(ssl: &Path) -> PathBuf {
        ssl.join(MANIFEST)
    }

    /// Load, or an empty manifest when there is none (first run, or a kubeasz ssl/ dir).
    pub fn load(ssl: &Path) -> Result<Manifest, PkiError> {
        let path = Self::path(ssl);
        match read_opt(&path)? {
            None => Ok(Manifest {
                version: 1,
                certs: BTreeMap::new(),
                one_ca: false,
                own_etcd_ca: false,
                rotation: None,
                cluster_rotation: None,
            }),
            Some(s) => serde_json::from_str(&s).map_err(|e| PkiError::Manifest {
                path,
                msg: e.to_string(),
            }),
        }
    }

    /// Write atomically (0600: it reveals nothing secret, but it lives with the keys).
    pub fn save(&self, ssl: &Path) -> Result<(), PkiError> {
        let json = serde_json::to_string_pretty(self).expect("manifest serializes");
        write_atomic(&Self::path(ssl), json.as_bytes(), KEY_MODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", KEY_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temp file left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dir_is_narrowed() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("ssl");
        fs::create_dir(&s).unwrap();
        fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&s).unwrap();
        assert_eq!(
            fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
