//! What hosts receive: the access policy per role, kubeconfigs as kubectl reads them, the
//! comparison of installed copies, kubeasz users' own CA, and the `ezk certs` table.

use std::process::Command;

use crate::support::{run, spec, verify, x509_text};
use ezk::pki::inspect::{RemoteCopy, RemoteStatus, compare_remote, render_mismatches};
use ezk::ops::certs::local_table;
use ezk::pki::{Pki, PkiError, kubeconfigs};

const MASTER: &str = "198.18.9.11";
const WORKER: &str = "198.18.9.21";

#[test]
fn workers_never_get_ca_or_sa_keys() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    for id in [
        "ca-key",
        "sa",
        "etcd",
        "kubernetes",
        "apiserver-etcd-client",
        "admin",
        "kube-controller-manager",
        "etcd-ca",
        "front-proxy-ca",
    ] {
        match pki.cert_files(id, WORKER) {
            Err(PkiError::NotAllowed { .. }) => {}
            other => panic!("worker got {id}: {other:?}"),
        }
    }
    for id in ["ca", "kube-proxy", "kubelet"] {
        pki.cert_files(id, WORKER)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    assert!(pki.cert_files("ca", WORKER).unwrap().key_pem.is_none());
    let m = pki.cert_files("ca-key", MASTER).unwrap();
    assert!(m.key_pem.as_ref().unwrap().expose().contains("PRIVATE KEY"));
    assert_eq!(
        format!("{:?}", m.key_pem),
        "Some(SecretPem(<redacted>))",
        "a key leaked into Debug"
    );
    let sa = pki.cert_files("sa", MASTER).unwrap();
    assert!(sa.cert_pem.contains("PUBLIC KEY"));
    pki.cert_files("etcd", MASTER).unwrap(); // 198.18.9.11 is also an etcd member
    // The deploy machine's etcdctl cert goes to no host; unknown ids and hosts are refused.
    assert!(matches!(
        pki.cert_files("etcd-client", MASTER),
        Err(PkiError::NotAllowed { .. })
    ));
    assert!(matches!(
        pki.cert_files("nope", MASTER),
        Err(PkiError::Unknown { .. })
    ));
    assert!(matches!(
        pki.cert_files("ca", "198.18.9.99"),
        Err(PkiError::NotAllowed { .. })
    ));
}

#[test]
fn each_node_gets_its_own_kubelet_cert() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (host, name) in [
        (WORKER, "worker-1"),
        ("198.18.9.22", "worker-2"),
        (MASTER, "master-1"),
    ] {
        let f = pki.cert_files("kubelet", host).unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(&p, &f.cert_pem).unwrap();
        let t = x509_text(&p);
        assert!(
            t.contains(&format!("CN = system:node:{name}"))
                && t.contains(&format!("IP Address:{host}")),
            "{host}: {t}"
        );
    }
}

fn kubectl_view(kc: &str, jsonpath: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kubeconfig");
    std::fs::write(&p, kc).unwrap();
    let (ok, out) = run(Command::new("kubectl")
        .args(["config", "view", "--raw", "--kubeconfig"])
        .arg(&p)
        .args(["-o", &format!("jsonpath={jsonpath}")]));
    assert!(ok, "kubectl rejected the kubeconfig: {out}\n{kc}");
    out
}

fn b64d(s: &str) -> String {
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn kubeconfigs_read_by_kubectl() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let cases = [
        ("admin", MASTER, "https://198.18.9.250:8443", "admin"),
        // Their own master's apiserver (it binds the host address; 127.0.0.1:6443 is the
        // node-local LB on a master that is also a node).
        (
            "kube-controller-manager",
            MASTER,
            &format!("https://{MASTER}:6443"),
            "kube-controller-manager",
        ),
        (
            "kube-scheduler",
            MASTER,
            &format!("https://{MASTER}:6443"),
            "kube-scheduler",
        ),
        ("kube-proxy", WORKER, "https://127.0.0.1:6443", "kube-proxy"),
        (
            "kubelet",
            WORKER,
            "https://127.0.0.1:6443",
            "system:node:worker-1",
        ),
    ];
    assert_eq!(cases.len(), kubeconfigs().count());
    for (name, host, server, user) in cases {
        let kc = pki.kubeconfig(name, host).unwrap();
        let got = kubectl_view(
            &kc,
            "{.current-context}|{.clusters[0].name}|{.clusters[0].cluster.server}|{.users[0].name}|{.contexts[0].context.user}",
        );
        assert_eq!(
            got,
            format!("context-cluster1|cluster1|{server}|{user}|{user}"),
            "{name}"
        );
        // The embedded certificate is the one cert_files hands out, and it chains to the CA.
        let cert = b64d(&kubectl_view(
            &kc,
            "{.users[0].user.client-certificate-data}",
        ));
        let cert_id = name;
        assert_eq!(
            cert,
            pki.cert_files(cert_id, host).unwrap().cert_pem,
            "{name}"
        );
        let ca = b64d(&kubectl_view(
            &kc,
            "{.clusters[0].cluster.certificate-authority-data}",
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert).unwrap();
        assert!(
            verify(
                &dir.path().join("ca.pem"),
                &dir.path().join("c.pem"),
                Some("sslclient")
            )
            .0,
            "{name}"
        );
    }
    assert!(matches!(
        pki.kubeconfig("admin", WORKER),
        Err(PkiError::NotAllowed { .. })
    ));
    // The deploy machine's copy is written next to the inventory, kubeasz-style.
    let local = std::fs::read_to_string(d.path().join("kubectl.kubeconfig")).unwrap();
    assert_eq!(
        kubectl_view(&local, "{.clusters[0].cluster.server}"),
        "https://198.18.9.250:8443"
    );

    // Without a VIP, admin talks to the first master's SECURE_PORT.
    let mut s = spec();
    s.vips.clear();
    let d2 = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d2.path(), &s).unwrap();
    assert_eq!(
        kubectl_view(
            &pki.kubeconfig("admin", MASTER).unwrap(),
            "{.clusters[0].cluster.server}"
        ),
        "https://198.18.9.11:6443"
    );
}

#[test]
fn remote_copies_are_compared_and_mismatches_flagged() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let other = tempfile::tempdir().unwrap();
    let stranger = Pki::ensure(other.path(), &spec()).unwrap();
    let copy = |host: &str, id: &str, pem: &str| RemoteCopy {
        host: host.into(),
        cert_id: id.into(),
        path: format!("/etc/kubernetes/ssl/{id}.pem"),
        pem: pem.as_bytes().to_vec(),
    };
    let checks = compare_remote(
        &pki,
        &[
            copy(
                WORKER,
                "kube-proxy",
                &pki.cert_files("kube-proxy", WORKER).unwrap().cert_pem,
            ),
            copy(
                MASTER,
                "sa",
                &pki.cert_files("sa", MASTER).unwrap().cert_pem,
            ),
            copy(
                WORKER,
                "kubelet",
                &stranger.cert_files("kubelet", WORKER).unwrap().cert_pem,
            ),
            copy(MASTER, "ca", ""),
            copy(
                WORKER,
                "ca-key",
                &pki.cert_files("ca", WORKER).unwrap().cert_pem,
            ),
        ],
    );
    assert_eq!(checks[0].status, RemoteStatus::Same);
    assert_eq!(checks[1].status, RemoteStatus::Same);
    match &checks[2].status {
        RemoteStatus::Differs { got, .. } => assert!(got.subject.contains("system:node:worker-1")),
        s => panic!("stale kubelet cert not flagged: {s:?}"),
    }
    assert!(matches!(checks[3].status, RemoteStatus::Unreadable(_)));
    assert!(
        matches!(checks[4].status, RemoteStatus::Unexpected(_)),
        "a worker holding the CA key must be flagged"
    );
    let text = render_mismatches(&checks);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("MISMATCH 198.18.9.21 /etc/kubernetes/ssl/kubelet.pem [kubelet]"),
        "{text}"
    );
}

/// kubeasz users bring ssl/ca.pem + ca-key.pem made by cfssl (RSA, PKCS#1) or by hand (EC,
/// SEC1). They are used as they are: same bytes after ensure, leaves chain to them.
#[test]
fn an_existing_kubeasz_ca_is_kept_rsa_and_ec() {
    for (kind, keygen) in [
        (
            "rsa",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "k8",
            ],
        ),
        (
            "ec",
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ca-key.pem",
            ],
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let ssl = d.path().join("ssl");
        std::fs::create_dir(&ssl).unwrap();
        let sh = |args: &[&str]| {
            let (ok, out) = run(Command::new("openssl").args(args).current_dir(&ssl));
            assert!(ok, "openssl {args:?}: {out}");
        };
        sh(&keygen);
        if kind == "rsa" {
            // cfssl writes "RSA PRIVATE KEY" (PKCS#1).
            sh(&["rsa", "-traditional", "-in", "k8", "-out", "ca-key.pem"]);
            std::fs::remove_file(ssl.join("k8")).unwrap();
        }
        let key_text = std::fs::read_to_string(ssl.join("ca-key.pem")).unwrap();
        assert!(key_text.contains(if kind == "rsa" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN EC PRIVATE KEY"
        }));
        sh(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/C=CN/ST=HangZhou/L=XS/O=k8s/OU=System/CN=kubernetes",
        ]);
        let ca_before = std::fs::read(ssl.join("ca.pem")).unwrap();

        let pki = Pki::ensure(d.path(), &spec()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            !pki.outcome().created_cas.contains(&"ca".to_string()),
            "{kind}: CA replaced"
        );
        assert_eq!(std::fs::read(ssl.join("ca.pem")).unwrap(), ca_before);
        assert_eq!(
            std::fs::read_to_string(ssl.join("ca-key.pem")).unwrap(),
            key_text
        );
        for leaf in ["kubernetes", "admin", "kubelet-worker-1", "kube-proxy"] {
            let (ok, out) = verify(&ssl.join("ca.pem"), &ssl.join(format!("{leaf}.pem")), None);
            assert!(ok, "{kind} {leaf}: {out}");
        }
        let admin = x509_text(&ssl.join("admin.pem"));
        assert!(
            admin.contains(
                "Issuer: C = CN, ST = HangZhou, L = XS, O = k8s, OU = System, CN = kubernetes"
            ),
            "{admin}"
        );
        // ... and a re-run still reuses everything with the user's CA.
        assert!(
            Pki::ensure(d.path(), &spec())
                .unwrap()
                .outcome()
                .issued
                .is_empty(),
            "{kind}"
        );
    }
}

#[test]
fn certs_table_lists_every_cert_and_fails_on_a_missing_one() {
    let d = tempfile::tempdir().unwrap();
    Pki::ensure(d.path(), &spec()).unwrap();
    let mut out = Vec::new();
    assert_eq!(local_table(d.path(), &spec(), 30, &mut out).unwrap(), 0);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1 + 3 + 15, "{text}");
    let api = text
        .lines()
        .find(|l| l.starts_with("kubernetes.pem"))
        .unwrap();
    assert!(
        api.contains("CN=kubernetes")
            && api.contains("CN=kubernetes-ca")
            && api.contains("IP:198.18.9.250"),
        "{api}"
    );
    // 438000h = 18250 days; a second may pass between issuing and reading.
    assert!(
        api.contains(" 18250  ") || api.contains(" 18249  "),
        "{api}"
    );
    std::fs::remove_file(d.path().join("ssl/kube-proxy.pem")).unwrap();
    let mut out = Vec::new();
    assert_eq!(local_table(d.path(), &spec(), 30, &mut out).unwrap(), 1);
    let text = String::from_utf8(out).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("kube-proxy.pem"))
        .unwrap();
    assert!(row.contains("PROBLEM") && row.contains("missing"), "{row}");
}

#[test]
fn certs_exit_non_zero_when_one_expires_within_warn_days() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.cert_expiry = "240h".into(); // 10 days
    Pki::ensure(d.path(), &s).unwrap();
    let mut out = Vec::new();
    assert_eq!(local_table(d.path(), &s, 30, &mut out).unwrap(), 1);
    let text = String::from_utf8(out).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("expire within 30 days") && last.contains("kubernetes.pem") && !last.contains("ca.pem,"),
        "{last}"
    );
    // Below the threshold: fine (the CAs live for 100 years).
    let mut out = Vec::new();
    assert_eq!(local_table(d.path(), &s, 5, &mut out).unwrap(), 0, "{}", String::from_utf8_lossy(&out));
}
