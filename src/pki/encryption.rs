//! Encryption of Secrets at rest: one 32-byte key, made once on the deploy machine
//! (`ssl/encryption.key`, base64, 0600) and reused on every run, and the
//! `EncryptionConfiguration` every kube-apiserver reads (`secret` file `encryption-config`).
//!
//! aescbc is the provider (the one kube-apiserver documents as the recommended local-key
//! choice that every version since 1.13 reads); `identity` follows it so Secrets written before
//! encryption was turned on stay readable until they are rewritten. Losing the key loses every
//! Secret in etcd: `ssl/` is backed up by `kca-renew`, and a changed key would need the old one
//! kept as a second provider until every Secret is rewritten (not automated).

use std::io::Read;
use std::path::Path;

use super::error::PkiError;
use super::kubeconfig::base64;
use super::ssl_dir::{KEY_MODE, read_opt, write_atomic};
use super::{Pki, SecretPem};

/// The key file under ssl/.
pub const KEY_FILE: &str = "encryption.key";

/// The names `Pki::secret_file` knows.
pub const SECRET_NAMES: &[&str] = &["encryption-config"];

/// Make `ssl/encryption.key` if it is missing; check it when it is there.
pub fn ensure_key(ssl: &Path) -> Result<(), PkiError> {
    let path = ssl.join(KEY_FILE);
    match read_opt(&path)? {
        Some(text) => decode_len(text.trim())
            .filter(|n| *n == 32)
            .map(|_| ())
            .ok_or_else(|| PkiError::BadFile {
                path,
                msg: "is not 32 bytes of base64 (the Secrets encryption key); restore it from a backup of ssl/: without it the cluster's Secrets cannot be read".into(),
            }),
        None => {
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(PkiError::io("/dev/urandom"))?;
            write_atomic(&path, format!("{}\n", base64(&key)).as_bytes(), KEY_MODE)
        }
    }
}

/// Length in bytes of a standard base64 string, if it is one.
fn decode_len(s: &str) -> Option<usize> {
    let ok = !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    ok.then(|| s.len() / 4 * 3 - (s.len() - s.trim_end_matches('=').len()))
}

impl Pki {
    /// Secret file `name` for `host` (see `SECRET_NAMES`); masters only.
    pub fn secret_file(&self, name: &str, host: &str) -> Result<SecretPem, PkiError> {
        self.check_access(name, host)?;
        match name {
            "encryption-config" => {
                let key = read_opt(&self.ssl.join(KEY_FILE))?.ok_or_else(|| PkiError::BadFile {
                    path: self.ssl.join(KEY_FILE),
                    msg: "missing (not made yet)".into(),
                })?;
                Ok(SecretPem(format!(
                    "# Written by ezk: Secrets are encrypted in etcd with the key kept in the\n\
                     # cluster's ssl/{KEY_FILE} on the deploy machine.\n\
                     apiVersion: apiserver.config.k8s.io/v1\n\
                     kind: EncryptionConfiguration\n\
                     resources:\n\
                     \x20 - resources:\n\
                     \x20     - secrets\n\
                     \x20   providers:\n\
                     \x20     - aescbc:\n\
                     \x20         keys:\n\
                     \x20           - name: key1\n\
                     \x20             secret: {}\n\
                     \x20     - identity: {{}}\n",
                    key.trim()
                )))
            }
            other => Err(super::unknown(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        ensure_key(dir.path()).unwrap();
        let first = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(decode_len(first.trim()), Some(32));
        ensure_key(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(), first, "reused");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "c2hvcnQ=\n").unwrap();
        let e = ensure_key(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not 32 bytes"), "{e}");
    }
}
