//! A test double of the deploy machine's files (`plan::DeployFiles`): recognisable placeholder
//! certificates, kubeconfigs, secrets and binaries per host, so a plan can be built and
//! inspected without a PKI or an artifact store. Never applied to a host.

use std::path::{Path, PathBuf};

use ezk::plan::{CertPem, DeployFiles, StoredBinary, StoredImage};

/// Test double of the PKI and artifact store: recognisable placeholder PEMs per host.
pub struct FilesDouble;

impl DeployFiles for FilesDouble {
    fn cert(&self, host: &str, id: &str) -> Result<CertPem, String> {
        Ok(CertPem {
            cert_pem: format!("CERT {id} for {host}\n"),
            key_pem: Some(format!("KEY {id} for {host}\n")),
            ca_pem: Some(format!("CA of {id}\n")),
        })
    }
    fn kubeconfig(&self, host: &str, name: &str) -> Result<String, String> {
        Ok(format!("KUBECONFIG {name} for {host}\n"))
    }
    fn secret(&self, host: &str, name: &str) -> Result<String, String> {
        Ok(format!("SECRET {name} for {host}\n"))
    }
    fn binary(&self, name: &str) -> Result<StoredBinary, String> {
        Ok(StoredBinary {
            path: PathBuf::from(format!("/store/{name}")),
            sha256: format!("sha256-of-{name}"),
        })
    }
    fn image(&self, name: &str) -> Result<StoredImage, String> {
        Ok(StoredImage {
            path: PathBuf::from(format!("/store/images/{name}.tar")),
            sha256: format!("sha256-of-image-{name}"),
            reference: format!("ezk.test/{name}:1"),
            digest: format!("sha256:digest-of-{name}"),
        })
    }
    fn local_file(&self, path: &Path) -> Result<String, String> {
        use sha2::Digest;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(hex::encode(sha2::Sha256::digest(bytes)))
    }
}

