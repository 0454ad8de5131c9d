//! The certificate audit of `ezk certs` (`ops::certs_audit`) on a real PKI in a temp dir, with
//! hand-made plans and scripted host answers.

use ezk::exec::gather::host_files::{Found, Probe};
use ezk::ops::certs_audit::*;
use ezk::pki::{Pki, sha256_hex};
use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, StepPlan, Task, Wave};

const DIR: &str = "/etc/kubernetes/ssl";

/// m1: etcd + master + node; w1: node only.
fn pki(dir: &std::path::Path) -> Pki {
    let spec = crate::common::pki::spec("c", "c", &[(M1, "etcd-1")], &[(M1, "m1")], &[(M1, "m1"), (W1, "w1")]);
    Pki::ensure(dir, &spec).unwrap()
}
const M1: &str = "198.18.9.11";
const W1: &str = "198.18.9.21";

fn file(path: &str, bytes: &[u8]) -> Task {
    Task {
        name: path.into(),
        origin: "roles/x/tasks.yml:1".into(),
        action: Action::File(FileSpec {
            path: path.into(),
            content: Content::Inline(bytes.into()),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
        }),
        notify: vec![],
    }
}

/// What the real roles install: CA everywhere (step 01), etcd files on m1 (step 02), a
/// kubelet pair on w1, plus files that are no certificate at all.
fn plans(p: &Pki) -> Vec<StepPlan> {
    let f = |id: &str, h: &str| p.cert_files(id, h).unwrap();
    let ca = f("ca", M1).cert_pem;
    let etcd = f("etcd", M1);
    let kubelet = f("kubelet", W1);
    let host_role = |host: &str, tasks: Vec<Task>| HostRolePlan { host: host.into(), role: "r".into(), tasks };
    let step = |s: &str, hosts: Vec<HostRolePlan>| StepPlan {
        needs_nodes: false,
        step: s.into(),
        waves: vec![Wave { roles: vec!["r".into()], hosts, serial: Default::default() }],
    };
    vec![
        step(
            "01",
            vec![
                host_role(
                    M1,
                    vec![
                        file(&format!("{DIR}/ca.pem"), ca.as_bytes()),
                        file("/etc/motd", b"hi"),
                        file("/root/.kube/config", p.kubeconfig("admin", M1).unwrap().as_bytes()),
                    ],
                ),
                host_role(W1, vec![file(&format!("{DIR}/ca.pem"), ca.as_bytes())]),
            ],
        ),
        step(
            "02",
            vec![
                host_role(
                    M1,
                    vec![
                        file(&format!("{DIR}/etcd.pem"), etcd.cert_pem.as_bytes()),
                        file(&format!("{DIR}/etcd-key.pem"), etcd.key_pem.unwrap().expose().as_bytes()),
                        file(&format!("{DIR}/etcd-ca.pem"), etcd.ca_pem.unwrap().as_bytes()),
                        // Installed a second time by another role: listed once.
                        file(&format!("{DIR}/ca.pem"), ca.as_bytes()),
                    ],
                ),
                host_role(
                    W1,
                    vec![
                        file("/var/lib/kubelet/kubelet.pem", kubelet.cert_pem.as_bytes()),
                        file("/var/lib/kubelet/kubelet-key.pem", kubelet.key_pem.unwrap().expose().as_bytes()),
                    ],
                ),
            ],
        ),
    ]
}

fn rows(e: &[Expected]) -> Vec<(&str, &str, &str, Part, &str)> {
    e.iter()
        .map(|e| (e.host.as_str(), e.path.as_str(), e.cert_id.as_str(), e.part, e.step.as_str()))
        .collect()
}

#[test]
fn expected_files_are_the_plans_certificate_files_by_content() {
    let d = tempfile::tempdir().unwrap();
    let p = pki(d.path());
    let e = expected_files(&p, &plans(&p));
    assert_eq!(
        rows(&e),
        vec![
            (M1, "/etc/kubernetes/ssl/ca.pem", "ca", Part::Cert, "01"),
            (M1, "/root/.kube/config", "admin", Part::Kubeconfig, "01"),
            (W1, "/etc/kubernetes/ssl/ca.pem", "ca", Part::Cert, "01"),
            (M1, "/etc/kubernetes/ssl/etcd.pem", "etcd", Part::Cert, "02"),
            (M1, "/etc/kubernetes/ssl/etcd-key.pem", "etcd", Part::Key, "02"),
            (M1, "/etc/kubernetes/ssl/etcd-ca.pem", "etcd-ca", Part::Cert, "02"),
            (W1, "/var/lib/kubelet/kubelet.pem", "kubelet", Part::Cert, "02"),
            (W1, "/var/lib/kubelet/kubelet-key.pem", "kubelet", Part::Key, "02"),
        ]
    );
}

#[test]
fn forbidden_keys_follow_the_hosts_roles() {
    let d = tempfile::tempdir().unwrap();
    let p = pki(d.path());
    let e = expected_files(&p, &plans(&p));
    let f = forbidden_files(&p, &e);
    let of = |h: &str| -> Vec<&str> {
        f.iter().filter(|x| x.host == h).map(|x| x.path.as_str()).collect()
    };
    // The master may hold the cluster CA key and sa.key; no host the etcd/front-proxy CA keys.
    assert_eq!(
        of(M1),
        vec![
            "/etc/kubernetes/ssl/etcd-ca-key.pem",
            "/etc/kubernetes/ssl/front-proxy-ca-key.pem",
            "/etc/kubernetes/ssl/etcd-client-key.pem",
            // Not w1's kubelet key path: m1 is a node too, its own kubelet key goes there.
        ]
    );
    // The worker: no CA key, no sa key, and not the etcd key another host receives.
    let w = of(W1);
    for must in [
        "/etc/kubernetes/ssl/ca-key.pem",
        "/etc/kubernetes/ssl/sa.key",
        "/etc/kubernetes/ssl/etcd-ca-key.pem",
        "/etc/kubernetes/ssl/etcd-key.pem",
        "/var/lib/kubelet/ca-key.pem",
    ] {
        assert!(w.contains(&must), "{must} not probed on the worker: {w:?}");
    }
    assert!(!w.contains(&"/var/lib/kubelet/kubelet-key.pem"), "its own key is forbidden: {w:?}");
    let why = &f.iter().find(|x| x.host == W1 && x.path.ends_with("/ca-key.pem")).unwrap().why;
    assert!(why.contains("cluster CA key") && why.contains("Master"), "{why}");
}

#[test]
fn judge_names_every_kind_of_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let p = pki(d.path());
    let e = expected_files(&p, &plans(&p));
    let f = forbidden_files(&p, &e);
    let reqs = requests(W1, &e, &f);
    assert_eq!(reqs.len(), 3 + f.iter().filter(|x| x.host == W1).count());
    assert_eq!(
        reqs.iter().take(3).map(|r| r.probe).collect::<Vec<_>>(),
        vec![Probe::Content, Probe::Content, Probe::Sha256]
    );
    let ca = p.cert_files("ca", W1).unwrap().cert_pem;
    // w1 answers: the right CA, m1's kubelet certificate instead of its own, an unknown
    // key hash; a cluster CA key present; every other forbidden path absent.
    let other_kubelet = p.cert_files("kubelet", M1).unwrap().cert_pem;
    let mut found = vec![
        Found::Content(ca.into_bytes()),
        Found::Content(other_kubelet.into_bytes()),
        Found::Sha256("0".repeat(64)),
    ];
    for x in f.iter().filter(|x| x.host == W1) {
        found.push(if x.path == "/etc/kubernetes/ssl/ca-key.pem" { Found::Present } else { Found::Missing });
    }
    let j = judge(&p, W1, &e, &f, &found);
    assert_eq!(j.len(), 4, "{j:?}");
    assert!(matches!(j[0].verdict, Verdict::Same(Some(d)) if d > 3000), "{:?}", j[0]);
    assert!(matches!(&j[1].verdict, Verdict::Differs(m) if m.contains("system:node:m1")), "{:?}", j[1]);
    assert_eq!(j[1].what, "kubelet");
    assert!(matches!(&j[2].verdict, Verdict::Differs(m) if m.contains("private key")), "{:?}", j[2]);
    assert_eq!(j[2].what, "kubelet key");
    assert_eq!(j[3].path, "/etc/kubernetes/ssl/ca-key.pem");
    assert!(matches!(&j[3].verdict, Verdict::Forbidden(m) if m.contains("cluster CA key")), "{:?}", j[3]);

    // m1: the real key hash matches; a missing etcd.pem names its step; garbage is unreadable.
    let reqs = requests(M1, &e, &f);
    let etcd_key = p.cert_files("etcd", M1).unwrap().key_pem.unwrap();
    let mut found = vec![
        Found::Content(b"not a certificate".to_vec()),
        // A kubeconfig that is not the one ssl/ renders now (e.g. before a renewal).
        Found::Sha256("1".repeat(64)),
        Found::Missing,
        Found::Sha256(sha256_hex(etcd_key.expose().as_bytes())),
        Found::Problem("not a readable regular file".into()),
    ];
    found.resize(reqs.len(), Found::Missing);
    let j = judge(&p, M1, &e, &f, &found);
    assert!(matches!(&j[0].verdict, Verdict::Unreadable(_)), "{:?}", j[0]);
    assert_eq!(j[1].what, "admin kubeconfig");
    assert!(matches!(&j[1].verdict, Verdict::Differs(m) if m.contains("kubeconfig")), "{:?}", j[1]);
    assert_eq!(j[2].verdict, Verdict::Missing { step: "02".into() });
    assert_eq!(j[3].verdict, Verdict::Same(None));
    assert!(matches!(&j[4].verdict, Verdict::Unreadable(m) if m.contains("regular file")));
    assert_eq!(j.len(), 5, "absent forbidden paths give no row: {j:?}");
    let kc = p.kubeconfig("admin", M1).unwrap();
    found[1] = Found::Sha256(sha256_hex(kc.as_bytes()));
    assert_eq!(judge(&p, M1, &e, &f, &found)[1].verdict, Verdict::Same(None));

    let table = render(&j, &[("198.18.9.99".into(), "unreachable: timed out".into())]);
    assert!(table.contains("MISSING: not installed (step 02 installs it)"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("198.18.9.99") && l.contains("UNREACHABLE")), "{table}");
    assert!(table.lines().any(|l| l.contains("/etc/kubernetes/ssl/etcd-key.pem") && l.contains("ok")), "{table}");
}
