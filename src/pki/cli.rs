//! Entry points for `ezk certs` and `ezk kca-renew`. They take a `PkiSpec` (built from the
//! inventory by `from_inventory`) and write their report to `out`.

use std::io::Write;
use std::path::Path;

use super::report::{local_report, render_table};
use super::{Pki, PkiError, PkiSpec};

/// `ezk certs <cluster>` (local part): print the table of every certificate under ssl/.
/// Exit code 1 when a certificate is missing, unreadable, expired or expires within
/// `warn_days` days, else 0. Writes nothing.
pub fn cli_certs(
    cluster_dir: &Path,
    spec: &PkiSpec,
    warn_days: i64,
    out: &mut dyn Write,
) -> Result<i32, PkiError> {
    let pki = Pki::open(cluster_dir, spec)?;
    let rows = local_report(&pki);
    let _ = out.write_all(render_table(&rows).as_bytes());
    let bad = rows
        .iter()
        .filter(|r| r.info.as_ref().is_none_or(|i| i.days_left < 0))
        .count();
    let expiring: Vec<&str> = rows
        .iter()
        .filter(|r| r.info.as_ref().is_some_and(|i| (0..warn_days).contains(&i.days_left)))
        .map(|r| r.file.as_str())
        .collect();
    let name = cluster_name(cluster_dir);
    if bad > 0 {
        let _ = writeln!(
            out,
            "{bad} certificate(s) missing, unreadable or expired; `ezk certs {name} --issue` issues them",
        );
    }
    if !expiring.is_empty() {
        let _ = writeln!(
            out,
            "{} certificate(s) expire within {warn_days} days: {}; `ezk kca-renew {name}` reissues them (CAs too with --new-ca)",
            expiring.len(),
            expiring.join(", ")
        );
    }
    Ok(i32::from(bad > 0 || !expiring.is_empty()))
}

/// `ezk certs <cluster> --issue`: issue what is missing or stale, reuse the rest, and say
/// which is which. The only way `ezk certs` writes anything.
pub fn cli_issue(cluster_dir: &Path, spec: &PkiSpec, out: &mut dyn Write) -> Result<(), PkiError> {
    let pki = Pki::ensure(cluster_dir, spec)?;
    let o = pki.outcome();
    if !o.created_cas.is_empty() {
        let _ = writeln!(out, "created CAs: {}", o.created_cas.join(", "));
    }
    if o.issued.is_empty() {
        let _ = writeln!(
            out,
            "issued nothing: all {} certificates are current",
            o.reused.len()
        );
    } else {
        let _ = writeln!(
            out,
            "issued {}: {} (kept {})",
            o.issued.len(),
            o.issued.join(", "),
            o.reused.len()
        );
    }
    let _ = writeln!(out);
    Ok(())
}

/// `ezk kca-renew <cluster> [--new-ca]`: back up ssl/, reissue every certificate (and the CAs
/// with `new_ca`), print what was done. Hosts get the new files on the next setup run.
pub fn cli_kca_renew(
    cluster_dir: &Path,
    spec: &PkiSpec,
    new_ca: bool,
    out: &mut dyn Write,
) -> Result<i32, PkiError> {
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

/// The cluster's name, for commands quoted in messages (clusters/<name>/).
fn cluster_name(cluster_dir: &Path) -> String {
    cluster_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<cluster>".into())
}
