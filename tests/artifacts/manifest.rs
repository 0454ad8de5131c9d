//! The shipped versions manifest: shape (https URL + 64-hex sha256 for every entry),
//! version-set lookup from K8S_VER, the binaries each Kubernetes set must provide, the upstream
//! catalog's consistency (every release 1.28 .. 1.36 pinned or listed unpinned, companions one
//! per minor), and the validation errors a broken manifest gets.

use ezk::artifacts::catalog::minor_of;
use ezk::artifacts::{ArtifactError, Manifest};

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_shipped_entry_has_an_https_url_and_a_pinned_sha256() {
    let m = Manifest::shipped().unwrap();
    assert!(m.sets.len() >= 3 + 111, "versions.yml's sets and the catalog's releases");
    for (set, vs) in &m.sets {
        for a in &vs.artifacts {
            let what = format!("{set}/{} {}", a.name, a.version);
            assert!(a.url.starts_with("https://"), "{what}: {}", a.url);
            // A Debian epoch (`1:`) is not part of the pool file name.
            let version = a
                .version
                .split_once(':')
                .map_or(a.version.as_str(), |(_, v)| v);
            // A build's own stamp (`1.20.2+lab.1`, semver build metadata) names no source.
            let version = match a.kind {
                ezk::artifacts::Kind::DebianSource => version.split('+').next().unwrap_or(version),
                _ => version,
            };
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
    let mut n = 0;
    for (ver, set) in &m.sets {
        // The lab's sets pin Debian's builds, not a release.
        if ver.starts_with("lab-debian") {
            continue;
        }
        n += 1;
        for b in K8S_BINARIES {
            assert!(set.provides(b), "{ver} lacks {b}");
        }
        // The Kubernetes binaries are the release's own.
        for b in &K8S_BINARIES[..6] {
            let a = set.artifact_for(b).unwrap();
            assert_eq!(a.version, *ver, "{ver}: {b}");
            assert_eq!(a.url, format!("https://dl.k8s.io/release/v{ver}/bin/linux/amd64/{b}"));
        }
    }
    assert!(n >= 114, "{n} Kubernetes sets");
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

/// The lab's second version (what `ezk upgrade` is tested with) is lab-debian with only the
/// Kubernetes build's version stamp changed: the same source, recipe and toolchain, the same
/// other artifacts and images; each Kubernetes binary pinned apart from lab-debian's.
#[test]
fn lab_debian_next_is_lab_debian_restamped() {
    let m = Manifest::shipped().unwrap();
    let (_, lab) = m.set("lab-debian").unwrap();
    let (_, next) = m.set("lab-debian-next").unwrap();
    assert_eq!(m.kube_version("lab-debian-next").as_deref(), Some("1.20.2+lab.1"));
    let names = |s: &ezk::artifacts::manifest::VersionSet| s.artifacts.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(lab), names(next));
    for (a, b) in lab.artifacts.iter().zip(&next.artifacts) {
        if a.build.is_none() {
            assert_eq!((&a.version, &a.sha256, &a.member_sha256), (&b.version, &b.sha256, &b.member_sha256), "{}", a.name);
            continue;
        }
        let (ba, bb) = (a.build.as_ref().unwrap(), b.build.as_ref().unwrap());
        assert_eq!((&a.url, &a.sha256, &ba.source, &ba.recipe), (&b.url, &b.sha256, &bb.source, &bb.recipe));
        assert_eq!(serde_json::to_string(&ba.toolchain).unwrap(), serde_json::to_string(&bb.toolchain).unwrap());
        let mut env = ba.env.clone();
        env.insert("VERSION".into(), "v1.20.2+lab.1".into());
        assert_eq!(env, bb.env, "only the stamp differs");
        assert_eq!(a.members, b.members);
        for (bin, sum) in &a.member_sha256 {
            assert_ne!(Some(sum), b.member_sha256.get(bin), "{bin} pinned as lab-debian's");
        }
        assert_eq!(ba.output_sha256, bb.output_sha256, "CoreDNS does not carry the Kubernetes stamp");
    }
    let refs = |s: &ezk::artifacts::manifest::VersionSet| s.images.iter().map(|i| i.reference.clone()).collect::<Vec<_>>();
    assert_eq!(refs(lab), refs(next));
}

/// Every patch release of every minor 1.28 .. 1.36 is known, from .0 to the newest: pinned, or
/// listed as unpinned (with what is missing), never both; each minor's releases share one set of
/// companions, the catalog's, and so do versions.yml's sets of that minor.
#[test]
fn the_catalog_covers_every_release_of_each_minor() {
    let m = Manifest::shipped().unwrap();
    for minor in 28..=36 {
        let name = format!("1.{minor}");
        let line = m.by_minor().into_iter().find(|l| l.minor == name).unwrap_or_else(|| panic!("no {name}"));
        let mut all: Vec<u64> = line
            .pinned
            .iter()
            .chain(&line.unpinned)
            .map(|v| v.rsplit('.').next().unwrap().parse().unwrap())
            .collect();
        all.sort();
        let want: Vec<u64> = (0..all.len() as u64).collect();
        assert_eq!(all, want, "{name}: a gap or a duplicate in its releases");
        assert!(line.pinned.len() >= 5, "{name}: {line:?}");
        let companions = &m.minors[&name].companions;
        for names in ["etcd", "containerd", "runc", "cni-plugins", "crictl", "helm", "calicoctl"] {
            assert!(companions.iter().any(|a| a.name == names), "{name} has no {names}");
        }
        for r in &line.pinned {
            let set = &m.sets[r];
            let others: Vec<_> = set.artifacts.iter().filter(|a| !K8S_BINARIES[..6].contains(&a.name.as_str())).collect();
            assert_eq!(others.len(), companions.len(), "{r}");
            for (a, c) in others.iter().zip(companions) {
                assert_eq!((&a.name, &a.version, &a.sha256), (&c.name, &c.version, &c.sha256), "{r}");
            }
        }
        for r in &line.unpinned {
            assert!(!m.sets.contains_key(r), "{r} is pinned and unpinned");
            assert!(!m.unpinned[r].is_empty(), "{r}: say what is missing");
            assert_eq!(minor_of(r), Some(name.as_str()));
        }
    }
    // 1.36.4 is pinned (kops' later asset data); these are not.
    assert!(m.sets.contains_key("1.36.4"));
    for r in ["1.35.8", "1.34.11"] {
        assert!(m.unpinned.contains_key(r), "{r}");
    }
}

/// Every release of 1.28 .. 1.36 names each image of the catalog's `kubernetes.images`
/// (pause, coredns) by the digest its minor pins, or its minor says why it has none; one tag is
/// pinned to one digest wherever it appears (a copy that differs is a typo). Today every minor
/// pins both (the promoter manifests of registry.k8s.io; 1.36's from later copies of them).
/// Every release's set then names the add-ons' images, the same everywhere.
#[test]
fn every_release_pins_its_images_or_says_why_not() {
    let m = Manifest::shipped().unwrap();
    let kube = m.kubernetes.as_ref().unwrap();
    let names: Vec<String> = kube.images.keys().cloned().collect();
    assert_eq!(names, ["pause", "coredns"]);
    let addons: Vec<_> = kube.addon_images.iter().map(|a| (&a.name, &a.reference, Some(&a.digest))).collect();
    let mut by_ref: std::collections::BTreeMap<&str, &str> = Default::default();
    for minor in 28..=36 {
        let name = format!("1.{minor}");
        let mi = &m.minors[&name];
        for img in &names {
            let pinned: Vec<_> = mi.images.iter().filter(|i| &i.name == img).collect();
            match (pinned.as_slice(), mi.images_unpinned.get(img)) {
                ([i], None) => {
                    let d = i.digest.as_deref().unwrap_or("");
                    assert!(d.strip_prefix("sha256:").is_some_and(|h| is_hex(h, 64)), "{name} {img}: {d}");
                    assert!(i.reference.starts_with("registry.k8s.io/"), "{name} {img}: {}", i.reference);
                }
                ([], Some(why)) => assert!(why.len() > 20, "{name} {img}: say which tag and where none was found: {why:?}"),
                other => panic!("{name} {img}: pinned or unpinned, once: {other:?}"),
            }
        }
        assert!(mi.images_unpinned.is_empty(), "{name}: every minor pins both today: {:?}", mi.images_unpinned);
        let line = m.by_minor().into_iter().find(|l| l.minor == name).unwrap();
        for r in &line.pinned {
            let set = &m.sets[r];
            let got: Vec<_> = set.images.iter().map(|i| (&i.name, &i.reference, i.digest.as_ref())).collect();
            let mut want: Vec<_> = mi.images.iter().map(|i| (&i.name, &i.reference, i.digest.as_ref())).collect();
            want.extend(addons.iter().cloned());
            assert_eq!(got, want, "{r}: its minor's images, then the add-ons'");
            for i in &set.images {
                let d = i.digest.as_deref().unwrap();
                let prev = *by_ref.entry(i.reference.as_str()).or_insert(d);
                assert_eq!(prev, d, "{} is pinned to two digests", i.reference);
            }
        }
        assert_eq!(m.unpinned_images(&format!("{name}.0")), None);
    }
    // versions.yml's own pins, read from the same promoter manifests, agree with the catalog's.
    assert_eq!(by_ref["registry.k8s.io/pause:3.10.1"], "sha256:278fb9dbcca9518083ad1e11276933a2e96f23de604a3a08cc3c80002767d24c");
    assert_eq!(by_ref["registry.k8s.io/pause:3.10.2"], "sha256:f548e0e8e3dc1896ca956272154dde3314e8cc4fde0a57577ee9fa1c63f5baf4");
    assert_eq!(by_ref["registry.k8s.io/coredns/coredns:v1.14.2"], "sha256:e7e6440cfd1e919280958f5b5a6ab2b184d385bba774c12ad2a9e1e4183f90d9");
    // The lab's sets make their images; they name no add-on image (nothing is pulled there).
    for (set, vs) in m.sets.iter().filter(|(k, _)| minor_of(k).is_none()) {
        assert!(vs.images.iter().all(|i| i.digest.is_none()), "{set}");
    }
}

/// Each add-on image pinned is the one the cluster-addon role names by default: its `var` in
/// roles/cluster-addon/defaults.yml, with the kubeasz version variable it is made of filled in
/// (`METRICS_SERVER_IMAGE` of `metricsVer`), so a default config.yml's pods find the image the
/// store holds. A role default moved without its pin (or the reverse) fails here.
#[test]
fn every_addon_image_pinned_is_the_cluster_addon_roles_default() {
    let m = Manifest::shipped().unwrap();
    let addons = &m.kubernetes.as_ref().unwrap().addon_images;
    let names: Vec<&str> = addons.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["metrics-server", "nodelocaldns", "dashboard", "dashboard-scraper"]);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/roles/cluster-addon/defaults.yml")).unwrap();
    let defaults: serde_yaml::Mapping = serde_yaml::from_str(&text).unwrap();
    let var = |k: &str| defaults.get(k).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{k} is not a string default")).to_string();
    for a in addons {
        assert!(a.digest.strip_prefix("sha256:").is_some_and(|h| is_hex(h, 64)), "{}: {}", a.name, a.digest);
        let mut want = var(&a.var);
        while let Some(start) = want.find("{{") {
            let end = want[start..].find("}}").map(|e| start + e + 2).unwrap();
            let inner = want[start + 2..end - 2].trim().to_string();
            want.replace_range(start..end, &var(&inner));
        }
        assert_eq!(a.reference, want, "{}: {} defaults to {want}", a.name, a.var);
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
fn k8s_ver_selects_a_set_with_or_without_v() {
    let m = Manifest::shipped().unwrap();
    assert_eq!(m.set("v1.35.4").unwrap().0, "1.35.4");
    assert_eq!(m.set("1.34.7").unwrap().0, "1.34.7");
    // kubeasz's ezctl writes K8S_VER without the v; ezk's own example with it.
    assert_eq!(m.set("1.31.2").unwrap().0, "1.31.2");
    assert_eq!(m.set("v1.31.2").unwrap().0, "1.31.2");
    assert_eq!(m.set(" v1.28.0 ").unwrap().0, "1.28.0");
    assert_eq!(m.kube_version("v1.31.2").as_deref(), Some("1.31.2"));
    assert_eq!(m.kube_version("lab-debian").as_deref(), Some("1.20.2"));
    // A minor alone names many releases now: refused, listing them.
    let msg = m.set("v1.35").unwrap_err().to_string();
    assert!(msg.contains("1.35 is a minor version; name one of its releases: 1.35.0 … 1.35.7"), "{msg}");
    let err = m.set("v1.20.1").unwrap_err();
    assert!(matches!(err, ArtifactError::UnknownVersion { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("v1.20.1") && msg.contains("1.28.0 … 1.28.15") && msg.contains("lab-debian"),
        "{msg}"
    );
}

/// An unpinned release is known (its roles render for it) but has no set: the error names it,
/// what is missing and the fix.
#[test]
fn an_unpinned_release_says_how_to_pin_it() {
    let m = Manifest::shipped().unwrap();
    let err = m.set("v1.35.8").unwrap_err();
    assert!(matches!(err, ArtifactError::Unpinned { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        "Kubernetes 1.35.8 is a release this ezk knows but has not pinned",
        "no published sha256 for kube-apiserver",
        "--sha256sums https://dl.k8s.io/release/v1.35.8/SHA256SUMS",
        "pinned for 1.35",
    ] {
        assert!(msg.contains(want), "{want:?} in {msg}");
    }
    assert_eq!(m.kube_version("1.35.8").as_deref(), Some("1.35.8"));
}

/// `pin_release`: an unpinned release gets its minor's companions and the given digests; a
/// pinned one must agree; anything else is refused.
#[test]
fn pin_release_takes_digests_only_where_asked() {
    let mut m = (*Manifest::shipped().unwrap()).clone();
    let bins = m.kubernetes.clone().unwrap().binaries;
    let digests: indexmap::IndexMap<String, String> = bins.iter().map(|b| (b.clone(), "c".repeat(64))).collect();
    assert_eq!(m.pin_release("v1.35.8", &digests, "sums").unwrap(), "1.35.8");
    let (_, set) = m.set("1.35.8").unwrap();
    assert_eq!(set.pinned_from.as_deref(), Some("sums"));
    assert_eq!(set.artifact_for("kubelet").unwrap().sha256, "c".repeat(64));
    assert_eq!(set.artifact_for("etcd").unwrap().version, m.minors["1.35"].companions[0].version);
    let err = m.pin_release("1.31.2", &digests, "sums").unwrap_err().to_string();
    assert!(err.contains("kube-apiserver is pinned by this ezk as sha256:"), "{err}");
    let err = m.pin_release("1.27.3", &digests, "sums").unwrap_err().to_string();
    assert!(err.contains("1.27.3 is not a release this ezk knows"), "{err}");
    let mut short = digests.clone();
    short.shift_remove("kubectl");
    let err = m.pin_release("1.34.11", &short, "sums").unwrap_err().to_string();
    assert!(err.contains("no line for bin/linux/amd64/kubectl"), "{err}");
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
