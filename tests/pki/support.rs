//! Shared helpers of the PKI integration tests: a 3-master/3-etcd/2-worker spec and thin
//! wrappers around the real openssl binary (the independent judge of what rcgen wrote).

use std::path::Path;
use std::process::Command;


/// The 3-master/3-etcd/2-worker spec (see `common::pki`).
pub use crate::common::pki::three_masters as spec;

/// Run a command, return (success, stdout+stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// `openssl x509 -noout -text` of a file.
pub fn x509_text(path: &Path) -> String {
    let (ok, s) = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(path));
    assert!(ok, "{}: {s}", path.display());
    s
}

/// `openssl verify` with an optional purpose; true when it says OK.
pub fn verify(ca: &Path, cert: &Path, purpose: Option<&str>) -> (bool, String) {
    let mut c = Command::new("openssl");
    c.arg("verify").arg("-CAfile").arg(ca);
    if let Some(p) = purpose {
        c.args(["-purpose", p]);
    }
    let (ok, s) = run(c.arg(cert));
    (ok && s.contains(": OK"), s)
}

/// sha256 of each *.pem / key file under ssl/, by file name.
pub fn fingerprints(ssl: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(ssl)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}
