//! Client certificates for people (`ezk kcfg-adm`): CN = the user's name, no organization (so
//! no group: what the user may do comes only from the RBAC binding made beside it), signed by
//! the cluster CA, under `ssl/users/`.

use std::path::{Path, PathBuf};

use ::time::Duration;

use super::cert_ids::{CaKind, LeafDef};
use super::error::PkiError;
use super::ssl_dir::{ensure_private_dir, read_opt};
use super::{SecretPem, ca, issue};

/// A user's certificate and key, as issued.
pub struct UserCert {
    pub cert_pem: String,
    pub key_pem: SecretPem,
    pub ca_pem: String,
    pub cert_path: PathBuf,
}

/// Issue `ssl/users/<name>.pem` (+ `-key.pem`, 0600) for user `name`, valid `days`, signed by
/// the cluster CA (which must exist: the cluster is set up).
pub fn issue_user(ssl: &Path, name: &str, days: u32) -> Result<UserCert, PkiError> {
    let ca_path = ssl.join(format!("{}.pem", CaKind::Cluster.stem()));
    if read_opt(&ca_path)?.is_none() {
        return Err(PkiError::BadFile { path: ca_path, msg: "no cluster CA here: set the cluster up first".into() });
    }
    let ca = ca::load_or_create(ssl, CaKind::Cluster, Duration::days(1), false)?;
    let dir = ssl.join("users");
    ensure_private_dir(&dir)?;
    let def = LeafDef {
        id: "user",
        stem: name.to_string(),
        host: None,
        ca: CaKind::Cluster,
        cn: name.to_string(),
        orgs: Vec::new(),
        sans: Vec::new(),
        server_auth: false,
        client_auth: true,
    };
    issue::issue(&dir, &def, &ca, Duration::days(days.into()), String::new())?;
    let (cert_path, key_path) = issue::leaf_paths(&dir, name);
    let read = |p: &Path| read_opt(p)?.ok_or_else(|| PkiError::BadFile { path: p.to_path_buf(), msg: "just written, now missing".into() });
    Ok(UserCert {
        cert_pem: read(&cert_path)?,
        key_pem: SecretPem(read(&key_path)?),
        ca_pem: read(&ca_path)?,
        cert_path,
    })
}

/// Remove a user's certificate and key from `ssl/users/` (what `kcfg-adm -D` deletes here).
pub fn remove_user(ssl: &Path, name: &str) -> Result<(), PkiError> {
    let (cert, key) = issue::leaf_paths(&ssl.join("users"), name);
    for p in [cert, key] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(PkiError::io(&p)(e)),
            _ => {}
        }
    }
    Ok(())
}
