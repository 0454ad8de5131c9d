//! Taking over a PKI kubeasz made (one `ca.pem` for everything, its file names): what is
//! kept, what is issued and from which CA, and what happens when the CA key is kept offline.
//! The kubeasz side is made by openssl (`common::kubeasz`); openssl also judges the chains.

use std::path::Path;

use ezk::pki::Pki;

use super::support::{fingerprints, spec, verify};
use crate::common::kubeasz;

const ETCD: [&str; 3] = ["198.18.9.11", "198.18.9.12", "198.18.9.13"];

fn kubeasz_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    kubeasz::ssl(&d.path().join("ssl"), &ETCD, &ETCD);
    d
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("ssl").join(name)).unwrap()
}

#[test]
fn kubeasz_pki_keeps_its_ca_and_every_certificate_that_does_the_job() {
    let d = kubeasz_dir();
    let before = fingerprints(&d.path().join("ssl"));
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    assert!(pki.one_ca());
    let o = pki.outcome();
    assert!(o.created_cas.is_empty(), "a CA was created next to kubeasz's: {o:?}");
    assert!(o.kept.contains(&"etcd".to_string()) && o.kept.contains(&"admin".to_string()), "{o:?}");
    for f in ["ca.pem", "ca-key.pem", "etcd.pem", "etcd-key.pem", "admin.pem", "admin-key.pem"] {
        assert_eq!(file(d.path(), f), before[f], "{f} was rewritten");
    }
    for f in ["etcd-ca.pem", "front-proxy-ca.pem"] {
        assert!(!d.path().join("ssl").join(f).exists(), "{f} made: a second CA");
    }
    // kubeasz's kubernetes.pem lacks the spec's VIP: issued anew, from the same CA.
    assert!(o.issued.contains(&"kubernetes".to_string()), "{o:?}");
    let ssl = d.path().join("ssl");
    for leaf in ["kubernetes.pem", "apiserver-etcd-client.pem", "etcd-client.pem", "aggregator-proxy.pem"] {
        let (ok, out) = verify(&ssl.join("ca.pem"), &ssl.join(leaf), None);
        assert!(ok, "{leaf} not from kubeasz's ca.pem: {out}");
    }
    // What the etcd role installs as its CA is kubeasz's CA: etcd keeps trusting its clients.
    let host = "198.18.9.11";
    let etcd = pki.cert_files("etcd", host).unwrap();
    assert_eq!(etcd.ca_pem.as_deref().map(str::as_bytes), Some(&file(d.path(), "ca.pem")[..]));
    assert_eq!(etcd.cert_pem.as_bytes(), &file(d.path(), "etcd.pem")[..]);
    assert_eq!(pki.cert_files("etcd-ca", host).unwrap().cert_pem.as_bytes(), &file(d.path(), "ca.pem")[..]);

    // ServiceAccount tokens: kubeasz's apiservers sign them with ca-key.pem; what ezk's sign
    // and check with is that key, so a token signed by either is good at both (openssl signs
    // with kubeasz's key file and checks with ezk's sa.pub).
    let sa = pki.cert_files("sa", host).unwrap();
    assert_eq!(sa.cert_pem.as_bytes(), &file(d.path(), "sa.pub")[..]);
    let work = tempfile::tempdir().unwrap();
    let (blob, sig) = (work.path().join("token"), work.path().join("token.sig"));
    std::fs::write(&blob, "header.claims").unwrap();
    let signed = std::process::Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(ssl.join("ca-key.pem")).arg("-out").arg(&sig).arg(&blob).status().unwrap();
    assert!(signed.success());
    let out = std::process::Command::new("openssl").args(["dgst", "-sha256", "-verify"]).arg(ssl.join("sa.pub")).arg("-signature").arg(&sig).arg(&blob).output().unwrap();
    assert!(out.status.success(), "a token kubeasz's apiserver signed is refused by sa.pub: {}", String::from_utf8_lossy(&out.stdout));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(ssl.join("sa.key")).unwrap().permissions().mode() & 0o777, 0o600);

    // A re-run keeps everything, byte for byte, and the decision sticks.
    let first = fingerprints(&ssl);
    let again = Pki::ensure(d.path(), &spec()).unwrap();
    assert!(again.one_ca());
    assert!(again.outcome().issued.is_empty(), "{:?}", again.outcome());
    assert_eq!(fingerprints(&ssl), first);
}

#[test]
fn a_kubeasz_certificate_that_lacks_a_member_or_is_expired_is_reissued_from_the_same_ca() {
    let d = kubeasz_dir();
    let ssl = d.path().join("ssl");
    // Made for two members: the third cannot be dialled by address.
    kubeasz::leaf(&ssl, "etcd", "etcd", None, &["IP:198.18.9.11".into(), "IP:198.18.9.12".into(), "IP:127.0.0.1".into()], 36500);
    // Expires today.
    kubeasz::leaf(&ssl, "admin", "admin", Some("system:masters"), &[], 0);
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let o = pki.outcome();
    assert!(o.issued.contains(&"etcd".to_string()) && o.issued.contains(&"admin".to_string()), "{o:?}");
    for leaf in ["etcd.pem", "admin.pem"] {
        assert!(verify(&ssl.join("ca.pem"), &ssl.join(leaf), None).0, "{leaf}");
    }
}

#[test]
fn with_the_ca_key_offline_what_exists_is_used_and_issuing_names_the_key() {
    let d = kubeasz_dir();
    let ssl = d.path().join("ssl");
    std::fs::remove_file(ssl.join("ca-key.pem")).unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    // Step 02 needs only what kubeasz issued.
    assert!(pki.cert_files("etcd", "198.18.9.11").is_ok());
    assert!(pki.cert_files("etcd-ca", "198.18.9.11").is_ok());
    // The apiserver's etcd client certificate does not exist yet.
    let e = pki.cert_files("apiserver-etcd-client", "198.18.9.11").unwrap_err().to_string();
    assert!(e.contains(&ssl.join("ca-key.pem").display().to_string()) && e.contains("apiserver-etcd-client"), "{e}");
    let e = pki.cert_files("ca-key", "198.18.9.11").unwrap_err().to_string();
    assert!(e.contains("ca-key.pem"), "{e}");
    assert!(!ssl.join("apiserver-etcd-client.pem").exists());
    assert!(!ssl.join("ca-key.pem").exists(), "a CA key was made");
    // No key of its own for ServiceAccount tokens either: it would refuse every token kubeasz's
    // CA key signed.
    let e = pki.cert_files("sa", "198.18.9.11").unwrap_err().to_string();
    assert!(e.contains("ca-key.pem") && e.contains("ServiceAccount"), "{e}");
    assert!(!ssl.join("sa.key").exists(), "a service-account key was made");
}

/// The outage of issue 21, said before it happens: etcd moved from kubeasz's CA to a separate
/// etcd CA refuses every client certificate kubeasz issued; the check names each one.
#[test]
fn moving_etcd_to_another_ca_names_every_client_it_refuses() {
    use ezk::ops::client_cutoff::{DOORS, FileMap, UnitChange, findings};
    let kz = kubeasz_dir();
    let ezk_made = tempfile::tempdir().unwrap();
    Pki::ensure(ezk_made.path(), &spec()).unwrap();
    let unit = |ca: &str| format!("[Service]\nExecStart=/opt/kube/bin/etcd \\\n  --trusted-ca-file=/ssl/{ca} \\\n  --client-cert-auth=true\n");
    let change = UnitChange { host: "h1".into(), door: &DOORS[0], old: unit("ca.pem"), new: unit("etcd-ca.pem") };
    let mut planned = FileMap::new();
    planned.insert(("h1".into(), "/ssl/etcd-ca.pem".into()), Some(file(ezk_made.path(), "etcd-ca.pem").into()));
    let mut on_hosts = FileMap::new();
    for f in ["ca.pem", "kubernetes.pem", "etcd.pem"] {
        on_hosts.insert(("h1".into(), format!("/ssl/{f}")), Some(file(kz.path(), f).into()));
    }
    let local = vec![("admin.pem".to_string(), file(kz.path(), "admin.pem"))];
    let found = findings(&[change], &planned, &on_hosts, &local, Path::new("/home/kz/ssl"));
    assert_eq!(found.len(), 1, "{found:#?}");
    let text = found[0].to_string();
    for want in ["on h1: etcd stops trusting the CA", "CN=kubernetes-ca", "(--trusted-ca-file)", "/ssl/kubernetes.pem on h1", "/ssl/etcd.pem on h1", "/home/kz/ssl/admin.pem (this machine)"] {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    // The same CA under the new name: nothing to say.
    planned.insert(("h1".into(), "/ssl/etcd-ca.pem".into()), Some(file(kz.path(), "ca.pem").into()));
    let change = UnitChange { host: "h1".into(), door: &DOORS[0], old: unit("ca.pem"), new: unit("etcd-ca.pem") };
    assert!(findings(&[change], &planned, &on_hosts, &local, Path::new("/home/kz/ssl")).is_empty());
}

/// With the CA key offline, a plan still gets every file (a placeholder for what needs the
/// key) and the reason is kept, naming the key: `ezk setup` stops there before connecting,
/// `--plan` notes it.
#[test]
fn planning_with_the_ca_key_offline_collects_what_needs_it() {
    use ezk::plan::DeployFiles;
    let d = kubeasz_dir();
    std::fs::remove_file(d.path().join("ssl/ca-key.pem")).unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let store = ezk::artifacts::Store::open(&ezk::home::Home::at(d.path())).unwrap();
    let files = ezk::session::ClusterFiles::new(pki, store, None);
    let etcd = files.cert("198.18.9.11", "etcd").unwrap();
    assert_eq!(etcd.cert_pem.as_bytes(), &file(d.path(), "etcd.pem")[..]);
    assert!(files.needs_ca_key().is_empty(), "step 02 needs no CA key: {:?}", files.needs_ca_key());
    let client = files.cert("198.18.9.11", "apiserver-etcd-client").unwrap();
    assert!(client.cert_pem.starts_with('#'), "{}", client.cert_pem);
    files.kubeconfig("198.18.9.11", "kube-scheduler").unwrap();
    let why = files.needs_ca_key();
    assert!(!why.is_empty() && why.iter().all(|m| m.contains("ca-key.pem")), "{why:?}");
    assert!(why.iter().any(|m| m.contains("apiserver-etcd-client")), "{why:?}");
}

/// kubeasz names a kubelet's certificate `<node name>-kubelet.pem` (3.5 on) or
/// `<inventory host>-kubelet.pem` (before); ezk `kubelet-<node name>.pem`. One that does the
/// job is kept under ezk's name, byte for byte, and kubeasz's file stays; one that does not
/// (another node's name) is issued anew.
#[test]
fn a_kubelet_certificate_under_kubeasz_s_name_is_kept() {
    let d = kubeasz_dir();
    let ssl = d.path().join("ssl");
    let node = |name: &str, ip: &str| -> Vec<String> { vec!["IP:127.0.0.1".into(), format!("IP:{ip}"), format!("DNS:{name}")] };
    kubeasz::leaf(&ssl, "master-1-kubelet", "system:node:master-1", Some("system:nodes"), &node("master-1", "198.18.9.11"), 36500);
    kubeasz::leaf(&ssl, "198.18.9.12-kubelet", "system:node:master-2", Some("system:nodes"), &node("master-2", "198.18.9.12"), 36500);
    // Issued for another name: not master-3's.
    kubeasz::leaf(&ssl, "master-3-kubelet", "system:node:master-9", Some("system:nodes"), &node("master-3", "198.18.9.13"), 36500);
    let before = fingerprints(&ssl);
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let o = pki.outcome();
    for (ezk_name, kubeasz_name) in [("kubelet-master-1", "master-1-kubelet"), ("kubelet-master-2", "198.18.9.12-kubelet")] {
        assert!(o.kept.contains(&ezk_name.to_string()), "{ezk_name}: {o:?}");
        for suffix in [".pem", "-key.pem"] {
            assert_eq!(file(d.path(), &format!("{ezk_name}{suffix}")), before[&format!("{kubeasz_name}{suffix}")], "{ezk_name}{suffix}");
            assert_eq!(file(d.path(), &format!("{kubeasz_name}{suffix}")), before[&format!("{kubeasz_name}{suffix}")], "kubeasz's {kubeasz_name}{suffix} changed");
        }
    }
    assert!(o.issued.contains(&"kubelet-master-3".to_string()), "{o:?}");
    assert_ne!(file(d.path(), "kubelet-master-3.pem"), before["master-3-kubelet.pem"]);
    assert!(verify(&ssl.join("ca.pem"), &ssl.join("kubelet-master-3.pem"), None).0);
    let again = Pki::ensure(d.path(), &spec()).unwrap();
    assert!(again.outcome().issued.is_empty(), "{:?}", again.outcome());
}
