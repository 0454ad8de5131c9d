//! `ezk kca-renew [<cluster>] [--new-ca]` (kubeasz's kca-renew; arguments in
//! `cli/kca_renew.rs`): back up ssl/ and reissue every certificate, keeping the CAs unless
//! `--new-ca`. Hosts receive the new files on the next `ezk setup`. One phase: there is nothing
//! to plan and no host to contact.

use std::io::Write;
use std::path::Path;

use super::Error;
use super::certs::{cluster_name, inventory_spec};
use crate::home::Home;
use crate::pki::{Pki, PkiError, PkiSpec};
use crate::session::Session;

/// What to renew.
#[derive(Debug, Clone)]
pub struct Request {
    /// The cluster; None: the current one.
    pub cluster: Option<String>,
    /// Also replace the cluster, etcd and front-proxy CAs.
    pub new_ca: bool,
    pub extra_vars: Vec<(String, String)>,
}

/// Run `ezk kca-renew`; inventory problems are an error, and nothing is written then.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let cluster = home.cluster_or_current(req.cluster)?;
    let session = Session::open(home, &cluster, &req.extra_vars)?;
    let spec = inventory_spec(&session)?;
    Ok(renew(session.dir(), &spec, req.new_ca, &mut std::io::stdout().lock())?)
}

/// Back up ssl/, reissue every certificate (and the CAs with `new_ca`), print what was done.
pub fn renew(cluster_dir: &Path, spec: &PkiSpec, new_ca: bool, out: &mut dyn Write) -> Result<i32, PkiError> {
    let (pki, backup) = Pki::renew(cluster_dir, spec, new_ca)?;
    let o = pki.outcome();
    let _ = writeln!(out, "backup of the previous ssl/: {}", backup.display());
    if !o.created_cas.is_empty() {
        let _ = writeln!(out, "new CAs: {}", o.created_cas.join(", "));
    }
    let _ = writeln!(
        out,
        "reissued {} certificates: {}",
        o.issued.len(),
        o.issued.join(", ")
    );
    let _ = writeln!(
        out,
        "install them on the hosts with `ezk setup {} all` (services restart where a file changed)",
        cluster_name(cluster_dir)
    );
    Ok(0)
}
