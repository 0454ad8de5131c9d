//! The shipped versions manifest: shape (https URL + 64-hex sha256 for every entry),
//! version-set lookup from K8S_VER, the binaries each Kubernetes set must provide, and the
//! validation errors a broken manifest gets.

use ezk::artifacts::{ArtifactError, Manifest};

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_shipped_entry_has_an_https_url_and_a_pinned_sha256() {
    let m = Manifest::shipped().unwrap();
    assert!(m.sets.len() >= 3, "two Kubernetes sets and lab-debian");
    for (set, vs) in &m.sets {
        for a in &vs.artifacts {
            let what = format!("{set}/{} {}", a.name, a.version);
            assert!(a.url.starts_with("https://"), "{what}: {}", a.url);
            // A Debian epoch (`1:`) is not part of the pool file name.
            let version = a
                .version
                .split_once(':')
                .map_or(a.version.as_str(), |(_, v)| v);
            assert!(
                a.url.contains(version) || a.url.contains(&version.replace('~', "%7E")),
                "{what}: URL lacks version"
            );
            assert!(is_hex(&a.sha256, 64), "{what}: sha256 {}", a.sha256);
            if a.kind.pins_members() {
                assert!(
                    a.url.starts_with("https://deb.debian.org/debian/pool/"),
                    "{what}"
                );
                for (_, b) in a.binaries() {
                    assert!(is_hex(&a.member_sha256[b], 64), "{what}: member {b}");
                }
            }
        }
    }
}

/// Every binary the roles install for a Kubernetes cluster (kubeasz's bin list).
const K8S_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "etcd",
    "etcdctl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "helm",
    "calicoctl",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
    "bandwidth",
    "tuning",
];

#[test]
fn each_kubernetes_set_provides_every_role_binary() {
    let m = Manifest::shipped().unwrap();
    for ver in ["v1.36.3", "v1.35.4", "v1.34.7"] {
        let (_, set) = m.set(ver).unwrap();
        for b in K8S_BINARIES {
            assert!(set.provides(b), "{ver} lacks {b}");
        }
    }
    // The lab set holds what Debian ships: enough for prepare, etcd, runtime.
    let (_, lab) = m.set("lab-debian").unwrap();
    for b in [
        "etcd",
        "etcdctl",
        "kubectl",
        "containerd",
        "runc",
        "bridge",
        "loopback",
    ] {
        assert!(lab.provides(b), "lab-debian lacks {b}");
    }
}

/// `Manifest::provides` answers for installable binaries, not for artifact or file names (the
/// roles' `binary:` names are checked against each set in `roles.rs`).
#[test]
fn provides_answers_for_role_binary_names() {
    let m = Manifest::shipped().unwrap();
    for b in [
        "etcd",
        "etcdctl",
        "kubectl",
        "kube-apiserver",
        "runc",
        "host-local",
    ] {
        assert!(m.provides(b), "{b}");
    }
    for b in [
        "kube-ovn",
        "etcd.tar.gz",
        "kubernetes-server-linux-amd64.tar.gz",
        "",
    ] {
        assert!(!m.provides(b), "{b:?} is not an installable binary");
    }
}

#[test]
fn k8s_ver_selects_a_set_with_or_without_v_and_by_minor() {
    let m = Manifest::shipped().unwrap();
    assert_eq!(m.set("v1.35.4").unwrap().0, "1.35.4");
    assert_eq!(m.set("1.34.7").unwrap().0, "1.34.7");
    assert_eq!(m.set("v1.35").unwrap().0, "1.35.4");
    let err = m.set("v1.20.1").unwrap_err();
    assert!(matches!(err, ArtifactError::UnknownVersion { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("v1.20.1") && msg.contains("1.35.4") && msg.contains("lab-debian"),
        "{msg}"
    );
}

#[test]
fn broken_manifests_are_refused_with_the_entry_named() {
    let base = "sets:\n  t:\n    artifacts:\n      - name: etcd\n        version: \"1\"\n        url: https://x/etcd.tgz\n";
    let cases = [
        (
            "        sha256: abc\n        kind: tar.gz\n        members: {etcd: etcd}\n",
            "sha256 \"abc\" is not 64 hex digits",
        ),
        ("        kind: binary\n", "missing field `sha256`"),
        (
            &*format!(
                "        sha512: {}\n        kind: binary\n",
                "a".repeat(128)
            ),
            "unknown field `sha512`",
        ),
        (
            &*format!("        sha256: {}\n        kind: tar.gz\n", "a".repeat(64)),
            "needs members",
        ),
        (
            &*format!(
                "        sha256: {}\n        kind: deb\n        members: {{usr/bin/etcd: etcd}}\n",
                "a".repeat(64)
            ),
            "member_sha256 for etcd",
        ),
        (
            &*format!("        sha256: {}\n        kind: zip\n", "a".repeat(64)),
            "unknown variant",
        ),
    ];
    for (tail, want) in cases {
        let err = Manifest::parse(&format!("{base}{tail}"), "my.yml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("my.yml:"), "{err}");
        assert!(err.contains(want), "expected {want:?} in {err}");
    }
    let dup = format!(
        "{base}        sha256: {h}\n        kind: binary\n      - name: etcd2\n        version: \"1\"\n        url: https://x/etcd\n        sha256: {h}\n        kind: binary\n        binary: etcd\n",
        h = "b".repeat(64)
    );
    let err = Manifest::parse(&dup, "dup.yml").unwrap_err().to_string();
    assert!(
        err.contains("binary etcd is also provided by etcd"),
        "{err}"
    );
}
