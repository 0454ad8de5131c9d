//! PKI certificates judged by the real openssl: chains, subjects, SANs, usages, validity,
//! file modes, reuse and selective reissue.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use crate::support::{fingerprints, run, spec, verify, x509_text};
use ezk::pki::{Member, Pki};

/// (file stem, CA stem, server, client) for every leaf of the test spec.
fn leaves() -> Vec<(String, &'static str, bool, bool)> {
    let mut v: Vec<(String, &str, bool, bool)> = vec![
        ("etcd".into(), "etcd-ca", true, true),
        ("kubernetes".into(), "ca", true, false),
        ("apiserver-etcd-client".into(), "etcd-ca", false, true),
        ("apiserver-kubelet-client".into(), "ca", false, true),
        ("aggregator-proxy".into(), "front-proxy-ca", false, true),
        ("admin".into(), "ca", false, true),
        ("kube-controller-manager".into(), "ca", false, true),
        ("kube-scheduler".into(), "ca", false, true),
        ("kube-proxy".into(), "ca", false, true),
        ("etcd-client".into(), "etcd-ca", false, true),
    ];
    for n in ["master-1", "master-2", "master-3", "worker-1", "worker-2"] {
        v.push((format!("kubelet-{n}"), "ca", true, true));
    }
    v
}

#[test]
fn every_cert_verifies_against_its_ca_with_the_right_purpose() {
    let d = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    eprintln!(
        "issuing 3 CAs + sa + {} leaves took {:?}",
        pki.outcome().issued.len(),
        t.elapsed()
    );
    assert_eq!(pki.outcome().issued.len(), leaves().len());
    let ssl = d.path().join("ssl");
    for (stem, ca, server, client) in leaves() {
        let cert = ssl.join(format!("{stem}.pem"));
        let ca = ssl.join(format!("{ca}.pem"));
        let (ok, out) = verify(&ca, &cert, None);
        assert!(ok, "{stem}: {out}");
        for (wanted, purpose) in [(server, "sslserver"), (client, "sslclient")] {
            let (ok, out) = verify(&ca, &cert, Some(purpose));
            assert_eq!(ok, wanted, "{stem} purpose {purpose}: {out}");
        }
        // Signed by exactly one CA: the others must reject it.
        for other in ["ca", "etcd-ca", "front-proxy-ca"]
            .iter()
            .filter(|o| ssl.join(format!("{o}.pem")) != ca)
        {
            assert!(
                !verify(&ssl.join(format!("{other}.pem")), &cert, None).0,
                "{stem} verified by {other}"
            );
        }
    }
}

#[test]
fn subjects_sans_and_usages_as_openssl_reads_them() {
    let d = tempfile::tempdir().unwrap();
    Pki::ensure(d.path(), &spec()).unwrap();
    let ssl = d.path().join("ssl");

    let api = x509_text(&ssl.join("kubernetes.pem"));
    for san in [
        "IP Address:127.0.0.1",
        "IP Address:10.68.0.1",
        "IP Address:198.18.9.11",
        "IP Address:198.18.9.12",
        "IP Address:198.18.9.13",
        "IP Address:198.18.9.250",
        "IP Address:198.18.9.200",
        "DNS:k8s.example.test",
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(api.contains(san), "apiserver cert lacks {san}:\n{api}");
    }
    assert!(
        api.contains("TLS Web Server Authentication")
            && !api.contains("TLS Web Client Authentication")
    );
    assert!(api.contains("Subject: CN = kubernetes"));
    assert!(api.contains("Digital Signature"));

    let etcd = x509_text(&ssl.join("etcd.pem"));
    for san in [
        "IP Address:127.0.0.1",
        "IP Address:198.18.9.11",
        "IP Address:198.18.9.12",
        "IP Address:198.18.9.13",
    ] {
        assert!(etcd.contains(san), "etcd cert lacks {san}");
    }
    assert!(etcd.contains("TLS Web Server Authentication, TLS Web Client Authentication"));

    let admin = x509_text(&ssl.join("admin.pem"));
    assert!(
        admin.contains("Subject: O = system:masters, CN = admin"),
        "{admin}"
    );
    assert!(admin.contains("Issuer: CN = kubernetes-ca, O = ezk"));
    let kcm = x509_text(&ssl.join("kube-controller-manager.pem"));
    assert!(kcm.contains("CN = system:kube-controller-manager"));
    assert!(x509_text(&ssl.join("kube-scheduler.pem")).contains("CN = system:kube-scheduler"));
    assert!(x509_text(&ssl.join("kube-proxy.pem")).contains("CN = system:kube-proxy"));
    assert!(x509_text(&ssl.join("aggregator-proxy.pem")).contains("Issuer: CN = front-proxy-ca"));

    let kubelet = x509_text(&ssl.join("kubelet-worker-2.pem"));
    assert!(
        kubelet.contains("Subject: O = system:nodes, CN = system:node:worker-2"),
        "{kubelet}"
    );
    assert!(kubelet.contains("IP Address:198.18.9.22") && kubelet.contains("DNS:worker-2"));

    // Name checks the way TLS clients do them (openssl's own SAN matching).
    let name_ok = |file: &str, flag: &str, name: &str| {
        let (ok, out) = run(Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(ssl.join("ca.pem"))
            .args([flag, name])
            .arg(ssl.join(file)));
        ok && out.contains(": OK")
    };
    for ip in ["10.68.0.1", "198.18.9.250", "198.18.9.13", "127.0.0.1"] {
        assert!(name_ok("kubernetes.pem", "-verify_ip", ip), "{ip}");
    }
    assert!(name_ok(
        "kubernetes.pem",
        "-verify_hostname",
        "kubernetes.default.svc.cluster.local"
    ));
    assert!(
        !name_ok("kubernetes.pem", "-verify_ip", "198.18.9.21"),
        "a worker IP must not be in the apiserver cert"
    );
    assert!(name_ok(
        "kubelet-worker-1.pem",
        "-verify_hostname",
        "worker-1"
    ));
    assert!(!name_ok(
        "kubelet-worker-1.pem",
        "-verify_hostname",
        "worker-2"
    ));

    let ca = x509_text(&ssl.join("ca.pem"));
    assert!(ca.contains("CA:TRUE") && ca.contains("Certificate Sign"));
    assert!(!x509_text(&ssl.join("admin.pem")).contains("CA:TRUE"));
}

#[test]
fn validity_follows_cert_expiry_and_ca_expiry() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.cert_expiry = "48h".into();
    s.ca_expiry = "240h".into();
    Pki::ensure(d.path(), &s).unwrap();
    let ssl = d.path().join("ssl");
    let checkend = |file: &str, hours: u64| {
        run(Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-checkend",
                &(hours * 3600).to_string(),
                "-in",
            ])
            .arg(ssl.join(file)))
        .0
    };
    assert!(checkend("admin.pem", 47) && !checkend("admin.pem", 49));
    assert!(checkend("ca.pem", 239) && !checkend("ca.pem", 241));
    assert!(checkend("etcd-ca.pem", 239) && !checkend("etcd-ca.pem", 241));
}

#[test]
fn an_expired_certificate_is_reissued_on_the_next_run() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.cert_expiry = "1s".into();
    Pki::ensure(d.path(), &s).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let p = Pki::ensure(d.path(), &s).unwrap();
    assert_eq!(
        p.outcome().issued.len(),
        leaves().len(),
        "expired certs were reused: {:?}",
        p.outcome()
    );
}

#[test]
fn private_files_are_0600_in_a_0700_dir_and_sa_is_its_own_key() {
    let d = tempfile::tempdir().unwrap();
    Pki::ensure(d.path(), &spec()).unwrap();
    let ssl = d.path().join("ssl");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ssl), 0o700);
    for (name, _) in fingerprints(&ssl) {
        let private = ["sa.key", "encryption.key", "manifest.json"];
        let want = if name.ends_with("-key.pem") || private.contains(&name.as_str()) {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&ssl.join(&name)), want, "{name}");
    }
    assert_eq!(mode(&d.path().join("kubectl.kubeconfig")), 0o600);
    let sa = std::fs::read(ssl.join("sa.key")).unwrap();
    for k in ["ca-key.pem", "etcd-ca-key.pem", "front-proxy-ca-key.pem"] {
        assert_ne!(sa, std::fs::read(ssl.join(k)).unwrap());
    }
    let (ok, derived) = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(ssl.join("sa.key")));
    assert!(ok);
    assert_eq!(
        derived.trim(),
        std::fs::read_to_string(ssl.join("sa.pub")).unwrap().trim()
    );
}

#[test]
fn rerun_keeps_everything_and_changes_reissue_only_what_they_affect() {
    let d = tempfile::tempdir().unwrap();
    let ssl = d.path().join("ssl");
    let s = spec();
    Pki::ensure(d.path(), &s).unwrap();
    let first = fingerprints(&ssl);

    let t = Instant::now();
    let again = Pki::ensure(d.path(), &s).unwrap();
    eprintln!(
        "no-op re-run (every cert checked and reused) took {:?}",
        t.elapsed()
    );
    assert!(again.outcome().issued.is_empty() && again.outcome().created_cas.is_empty());
    assert_eq!(fingerprints(&ssl), first, "a re-run changed files");

    // Reordering hosts in the inventory changes nothing.
    let mut reordered = s.clone();
    reordered.masters.reverse();
    reordered.etcd.reverse();
    assert!(
        Pki::ensure(d.path(), &reordered)
            .unwrap()
            .outcome()
            .issued
            .is_empty()
    );

    // A new master (not a node): only the apiserver serving cert carries master IPs.
    let mut more = s.clone();
    more.masters
        .push(Member::new("198.18.9.14", "master-4", "198.18.9.14").unwrap());
    let p = Pki::ensure(d.path(), &more).unwrap();
    assert_eq!(p.outcome().issued, vec!["kubernetes".to_string()]);
    let after = fingerprints(&ssl);
    let changed: Vec<_> = first
        .keys()
        .filter(|k| first[*k] != after[*k])
        .cloned()
        .collect();
    assert_eq!(
        changed,
        vec!["kubernetes-key.pem", "kubernetes.pem", "manifest.json"]
    );
    assert!(x509_text(&ssl.join("kubernetes.pem")).contains("IP Address:198.18.9.14"));

    // A new node: only its kubelet cert.
    more.nodes
        .push(Member::new("198.18.9.23", "worker-3", "198.18.9.23").unwrap());
    let p = Pki::ensure(d.path(), &more).unwrap();
    assert_eq!(p.outcome().issued, vec!["kubelet-worker-3".to_string()]);

    // A hand-edited certificate is not trusted: it is reissued.
    std::fs::write(
        ssl.join("admin.pem"),
        std::fs::read(ssl.join("kube-proxy.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        Pki::ensure(d.path(), &more).unwrap().outcome().issued,
        vec!["admin".to_string()]
    );

    // A new validity policy: every leaf, but no CA.
    more.cert_expiry = "87600h".into();
    let before = fingerprints(&ssl);
    let p = Pki::ensure(d.path(), &more).unwrap();
    assert_eq!(
        p.outcome().issued.len(),
        leaves().len() + 1,
        "every leaf incl. kubelet-worker-3"
    );
    assert_eq!(before["ca.pem"], fingerprints(&ssl)["ca.pem"]);
}

#[test]
fn kca_renew_reissues_all_and_keeps_the_ca_unless_asked() {
    let d = tempfile::tempdir().unwrap();
    let ssl = d.path().join("ssl");
    Pki::ensure(d.path(), &spec()).unwrap();
    let first = fingerprints(&ssl);

    let (p, backup) = Pki::renew(d.path(), &spec(), false).unwrap();
    assert_eq!(p.outcome().issued.len(), leaves().len());
    let after = fingerprints(&ssl);
    for (stem, ..) in leaves() {
        assert_ne!(
            first[&format!("{stem}.pem")],
            after[&format!("{stem}.pem")],
            "{stem} not renewed"
        );
    }
    for keep in [
        "ca.pem",
        "ca-key.pem",
        "etcd-ca.pem",
        "front-proxy-ca.pem",
        "sa.key",
        "sa.pub",
    ] {
        assert_eq!(first[keep], after[keep], "{keep} changed without --new-ca");
    }
    assert_eq!(
        fingerprints(&backup),
        first,
        "backup is not the previous ssl/"
    );

    let (p, _) = Pki::renew(d.path(), &spec(), true).unwrap();
    assert_eq!(
        p.outcome().created_cas,
        vec!["ca", "etcd-ca", "front-proxy-ca"]
    );
    let newer = fingerprints(&ssl);
    assert_ne!(newer["ca.pem"], after["ca.pem"]);
    assert!(verify(&ssl.join("ca.pem"), &ssl.join("admin.pem"), None).0);
    assert!(!verify(&backup.join("ca.pem"), &ssl.join("admin.pem"), None).0);
}

#[test]
fn a_ca_key_without_its_certificate_is_refused_naming_the_files() {
    let d = tempfile::tempdir().unwrap();
    Pki::ensure(d.path(), &spec()).unwrap();
    std::fs::remove_file(d.path().join("ssl/ca.pem")).unwrap();
    let e = Pki::ensure(d.path(), &spec()).unwrap_err().to_string();
    assert!(
        e.contains("ca.pem") && e.contains("ca-key.pem") && e.contains("restore"),
        "{e}"
    );
}

#[test]
fn a_ca_key_kept_offline_still_serves_what_it_signed_and_new_names_need_it() {
    let d = tempfile::tempdir().unwrap();
    Pki::ensure(d.path(), &spec()).unwrap();
    std::fs::remove_file(d.path().join("ssl/ca-key.pem")).unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    assert!(pki.outcome().issued.is_empty());
    assert!(pki.cert_files("admin", "198.18.9.11").is_ok());
    let mut more = spec();
    more.master_cert_hosts.push("198.18.9.201".into());
    let pki = Pki::ensure(d.path(), &more).unwrap();
    let e = pki.cert_files("kubernetes", "198.18.9.11").unwrap_err().to_string();
    assert!(e.contains("ca-key.pem") && e.contains("kubernetes.pem"), "{e}");
    assert!(!d.path().join("ssl/ca-key.pem").exists());
}

#[test]
fn bad_spec_values_name_the_variable() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.cert_expiry = "50y".into();
    assert!(
        Pki::ensure(d.path(), &s)
            .unwrap_err()
            .to_string()
            .starts_with("CERT_EXPIRY")
    );
    let mut s = spec();
    s.service_cidr = "10.68.0.0".into();
    assert!(
        Pki::ensure(d.path(), &s)
            .unwrap_err()
            .to_string()
            .starts_with("SERVICE_CIDR")
    );
    let mut s = spec();
    s.nodes[1].name = "Bad_Name".into();
    assert!(
        Pki::ensure(d.path(), &s)
            .unwrap_err()
            .to_string()
            .contains("k8s_nodename")
    );
    assert!(!d.path().join("ssl").exists(), "a bad spec wrote files");
}

/// Two runs issuing into one empty cluster dir at once (two `ezk setup` planning before the
/// cluster lock decides between them): one CA results, and every certificate verifies against
/// the CA file that is on disk; the key file is the CA certificate's key.
#[test]
fn runs_issuing_at_once_make_one_ca_and_matching_files() {
    for _ in 0..3 {
        let d = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let dir = d.path().to_path_buf();
                std::thread::spawn(move || Pki::ensure(&dir, &spec()).map(|p| p.outcome().created_cas.len()))
            })
            .collect();
        let created: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        assert_eq!(created.iter().filter(|n| **n > 0).count(), 1, "CAs made by more than one run: {created:?}");
        let ssl = d.path().join("ssl");
        for (stem, ca, _, _) in leaves() {
            let (ok, out) = verify(&ssl.join(format!("{ca}.pem")), &ssl.join(format!("{stem}.pem")), None);
            assert!(ok, "{stem}: {out}");
        }
        let pubkey = |args: &[&str], f: &str| run(Command::new("openssl").args(args).arg(ssl.join(f)));
        for ca in ["ca", "etcd-ca", "front-proxy-ca"] {
            let from_cert = pubkey(&["x509", "-noout", "-pubkey", "-in"], &format!("{ca}.pem"));
            let from_key = pubkey(&["pkey", "-pubout", "-in"], &format!("{ca}-key.pem"));
            assert!(from_cert.0 && from_key.0 && from_cert.1 == from_key.1, "{ca}: key and certificate do not match");
        }
    }
}
