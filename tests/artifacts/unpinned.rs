//! A release ezk knows but has not pinned (versions-unpinned.txt), with the shipped manifest:
//! `ezk download` refuses it with the fix in the message; given the release's checksum file
//! (`--sha256sums`, over HTTP on loopback or as a local path) it pins the Kubernetes binaries
//! from that file, keeps the pins for later commands (and in offline bundles), and refuses a
//! binary that differs.
//!
//! The "release" here is a test double: small fake binaries served by the loopback server in
//! the mirror layout, with a SHA256SUMS in the layout of dl.k8s.io's (real Kubernetes binaries
//! cannot be downloaded on this machine, and their size would not help the test).

use crate::cli::{ezk, text};
use crate::support::http_server::TestServer;
use crate::support::sha256;

const RELEASE: &str = "1.35.8";
const BINARIES: [&str; 6] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl"];

/// The fake binary `name` of the test-double release.
fn fake(name: &str) -> Vec<u8> {
    format!("#!/bin/sh\n# test double of {name} {RELEASE}\n").into_bytes()
}

/// SHA256SUMS as the release publishes it: every platform, tarballs, `bin/<os>/<arch>/<name>`.
fn sums() -> String {
    let mut s = String::new();
    for b in BINARIES {
        s.push_str(&format!("{}  bin/linux/arm64/{b}\n", sha256(format!("arm64 {b}").as_bytes())));
        s.push_str(&format!("{}  bin/linux/amd64/{b}\n", sha256(&fake(b))));
    }
    s.push_str(&format!("{}  kubernetes-server-linux-amd64.tar.gz\n", sha256(b"tarball")));
    s
}

/// A loopback server with the fake binaries under `/mirror/<name>/<release>/<name>` and the
/// checksum file under `/release/v<release>/SHA256SUMS`.
async fn serve() -> TestServer {
    let srv = TestServer::start().await;
    for b in BINARIES {
        srv.serve(&format!("/mirror/{b}/{RELEASE}/{b}"), fake(b));
    }
    srv.serve(&format!("/release/v{RELEASE}/SHA256SUMS"), sums().into_bytes());
    srv
}

fn only() -> String {
    BINARIES.join(",")
}

#[tokio::test]
async fn download_refuses_an_unpinned_release_with_the_fix() {
    let home = tempfile::tempdir().unwrap();
    for ver in ["1.35.8", "v1.35.8"] {
        let out = ezk(home.path(), &["--k8s-ver", ver]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for want in [
            "Kubernetes 1.35.8 is a release this ezk knows but has not pinned",
            "no published sha256 for kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy",
            "ezk does not invent digests",
            "ezk download --k8s-ver 1.35.8 --sha256sums https://dl.k8s.io/release/v1.35.8/SHA256SUMS",
        ] {
            assert!(stderr.contains(want), "{want:?} in {stderr}");
        }
    }
    assert!(!home.path().join("down/files").exists(), "nothing may be fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256sums_pins_the_release_from_that_file_and_later_runs_keep_it() {
    let srv = serve().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let sums_url = srv.url(&format!("/release/v{RELEASE}/SHA256SUMS"));
    let mirror = srv.url("/mirror");
    let out = ezk(h, &["--k8s-ver", RELEASE, "--sha256sums", &sums_url, "--mirror", &mirror, "--only", &only()]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("pinned Kubernetes {RELEASE} from {sums_url}")), "{stdout}");
    assert_eq!(stdout.matches(" verified").count(), 6, "{stdout}");
    // The store holds exactly the bytes the checksum file named (the amd64 lines).
    for b in BINARIES {
        let got = std::fs::read(h.join(format!("down/bin/{b}/{RELEASE}/{b}"))).unwrap();
        assert_eq!(got, fake(b), "{b}");
        assert!(stdout.contains(&format!("sha256:{}", sha256(&fake(b)))), "{stdout}");
    }
    let pins = std::fs::read_to_string(h.join(format!("down/pins/{RELEASE}.sha256"))).unwrap();
    assert!(pins.contains(&format!("# from: {sums_url}")) && pins.contains("  kubelet\n"), "{pins}");

    // Later commands find the release without the flag: nothing fetched again, and the list
    // says who pinned it.
    let before = srv.log().len();
    let out = ezk(h, &["--k8s-ver", RELEASE, "--mirror", &mirror, "--only", "kubelet"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already verified"), "{}", text(&out.stdout));
    assert_eq!(srv.log().len(), before);
    let out = ezk(h, &["--list"]).await;
    let list = text(&out.stdout);
    assert!(list.contains(&format!("{RELEASE}: Kubernetes binaries pinned by you from {sums_url}")), "{list}");
    assert!(list.contains("1.35: 1.35.0 … 1.35.8 (1.35.9 unpinned)"), "{list}");
    // Each minor's images: pinned by digest, or named with the reason there is none.
    assert!(list.contains("      images, pinned by digest: registry.k8s.io/pause:3.9, registry.k8s.io/coredns/coredns:v1.10.1\n"), "{list}");
    assert!(list.contains("      images, pinned by digest: registry.k8s.io/pause:3.10.2, registry.k8s.io/coredns/coredns:v1.14.2\n"), "{list}");
    assert!(!list.contains("no digest"), "{list}");
    // The add-ons' images, once for every release, with the role variable that names each.
    assert!(list.contains("add-on images (step 07), pinned by digest, in every release's set:\n"), "{list}");
    assert!(list.contains(" registry.k8s.io/metrics-server/metrics-server:v0.7.1 (METRICS_SERVER_IMAGE's default)\n"), "{list}");
    let out = ezk(h, &["--list", "--k8s-ver", RELEASE]).await;
    let set = text(&out.stdout);
    assert!(set.contains("registry.k8s.io/coredns/coredns:v1.12.4@sha256:986f04c2e15e147d00bdd51e8c51bcef3644b13ff806be7d2ff1b261d6dfbae1"), "{set}");
    assert!(set.contains("docker.io/kubernetesui/dashboard:v2.7.0@sha256:2e500d29e9d5f4a086b908eb8dfe7ecac57d2ab09d65b24f588b1d449841ef93"), "{set}");

    // A bundle carries the pins: another home imports the release, every binary re-verified
    // against them, and keeps them.
    let tar = h.join("b.tar");
    let out = ezk(h, &["--bundle", tar.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let home2 = tempfile::tempdir().unwrap();
    let out = ezk(home2.path(), &["--import", tar.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("imported 6 artifacts"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(home2.path().join(format!("down/pins/{RELEASE}.sha256"))).unwrap(), pins);
    let out = ezk(home2.path(), &["--k8s-ver", RELEASE, "--only", &only()]).await;
    assert_eq!(text(&out.stdout).matches("already verified").count(), 6, "{}", text(&out.stdout));

    // The same file again agrees, and says whose pins it agrees with; one that contradicts the
    // kept pins is refused.
    let out = ezk(h, &["--k8s-ver", RELEASE, "--sha256sums", &sums_url, "--only", "kubelet"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("{sums_url} agrees with the pins of Kubernetes {RELEASE} you made from {sums_url} (kept in")), "{stdout}");
    let other = sums().replace(&sha256(&fake("kubelet")), &"e".repeat(64));
    srv.serve("/other/SHA256SUMS", other.into_bytes());
    let out = ezk(h, &["--k8s-ver", RELEASE, "--sha256sums", &srv.url("/other/SHA256SUMS"), "--only", "kubelet"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("kubelet is pinned by you from {sums_url}")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_differs_from_the_checksum_file_is_refused() {
    let srv = serve().await;
    let mut bad = fake("kubelet");
    bad.push(b'!');
    srv.serve(&format!("/mirror/kubelet/{RELEASE}/kubelet"), bad);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // The checksum file as a local path this time.
    let local = h.join("SHA256SUMS");
    std::fs::write(&local, sums()).unwrap();
    let out = ezk(h, &["--k8s-ver", RELEASE, "--sha256sums", local.to_str().unwrap(), "--mirror", &srv.url("/mirror"), "--only", &only()]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&format!("checksum mismatch for {}", srv.url(&format!("/mirror/kubelet/{RELEASE}/kubelet")))), "{stdout}");
    assert!(stdout.contains(&format!("expected sha256:{}", sha256(&fake("kubelet")))), "{stdout}");
    assert!(!h.join(format!("down/bin/kubelet/{RELEASE}")).exists());
    assert_eq!(std::fs::read_dir(h.join("down/quarantine")).unwrap().count(), 1);
    // The five others matched the file and are in the store.
    assert_eq!(stdout.matches(" verified").count(), 5, "{stdout}");
}

#[tokio::test]
async fn a_checksum_file_without_the_binaries_pins_nothing() {
    let srv = TestServer::start().await;
    srv.serve("/SHA256SUMS", format!("{}  kubernetes.tar.gz\n", "a".repeat(64)).into_bytes());
    let home = tempfile::tempdir().unwrap();
    let out = ezk(home.path(), &["--k8s-ver", RELEASE, "--sha256sums", &srv.url("/SHA256SUMS")]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no `<sha256>  bin/linux/amd64/<binary>` line for kube-apiserver"), "{stderr}");
    assert!(!home.path().join("down/pins").exists());
    // A missing file is an error naming it.
    let out = ezk(home.path(), &["--k8s-ver", RELEASE, "--sha256sums", &srv.url("/nope")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("HTTP 404"), "{}", text(&out.stderr));
}
