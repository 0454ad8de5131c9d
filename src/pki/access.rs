//! Who may receive what: the check `Pki::cert_files` makes before handing out a certificate
//! (the table of hosts per id is in `cert_ids`), and which leaf is a node's own kubelet
//! certificate. Workers never get a CA key or the service-account key.

use super::cert_ids::{LeafDef, allowed_roles, roles_of};
use super::error::PkiError;
use super::{Pki, unknown};

impl Pki {
    pub(super) fn check_access(&self, id: &str, host: &str) -> Result<(), PkiError> {
        let allowed = allowed_roles(id).ok_or_else(|| unknown(id))?;
        let roles = roles_of(&self.spec, host);
        if roles.is_empty() {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: "the host is in no etcd, kube_master or kube_node group".into(),
            });
        }
        if allowed.is_empty() {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: "it is for the deploy machine only (use Pki::local_paths)".into(),
            });
        }
        if !roles.iter().any(|r| allowed.contains(r)) {
            return Err(PkiError::NotAllowed {
                id: id.into(),
                host: host.into(),
                why: format!("only {allowed:?} hosts may; this host is {roles:?}"),
            });
        }
        Ok(())
    }

    pub(super) fn kubelet_def(&self, host: &str) -> Result<&LeafDef, PkiError> {
        self.leaves
            .iter()
            .find(|l| l.id == "kubelet" && l.host.as_deref() == Some(host))
            .ok_or_else(|| PkiError::NotAllowed {
                id: "kubelet".into(),
                host: host.into(),
                why: "the host is not a node".into(),
            })
    }
}
