//! `ezk download --from-apt`: the lab quickstart. The pinned .debs of the lab-debian set come
//! for real from the Debian mirror through `apt-get download`; both pins (the .deb's sha256
//! and each binary's) are checked, and a version apt no longer serves is named with the fix.

use std::path::Path;
use std::process::Output;

use ezk::artifacts::{Manifest, Store};

use crate::support::{sha256_path, snapshot};

/// `ezk download <args>` with this home.
fn ezk(home: &Path, args: &[&str]) -> Output {
    crate::common::ezk::command(home).arg("download").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A one-artifact manifest: the shipped etcd-client pin with some fields replaced.
fn etcd_client_manifest(dir: &Path, version: &str, deb_sha: &str, member_sha: &str) -> String {
    let m = Manifest::shipped().unwrap();
    let (_, lab) = m.set("lab-debian").unwrap();
    let a = lab
        .artifacts
        .iter()
        .find(|a| a.name == "etcd-client")
        .unwrap();
    let url = a.url.replace(&a.version, version);
    let yaml = format!(
        "sets:\n  t:\n    artifacts:\n      - name: etcd-client\n        version: \"{version}\"\n        url: {url}\n        sha256: {deb_sha}\n        kind: deb\n        members: {{usr/bin/etcdctl: etcdctl}}\n        member_sha256: {{etcdctl: {member_sha}}}\n"
    );
    let p = dir.join("versions.yml");
    std::fs::write(&p, yaml).unwrap();
    p.to_string_lossy().into_owned()
}

fn shipped_etcd_client() -> (String, String, String) {
    let m = Manifest::shipped().unwrap();
    let (_, lab) = m.set("lab-debian").unwrap();
    let a = lab
        .artifacts
        .iter()
        .find(|a| a.name == "etcd-client")
        .unwrap();
    (
        a.version.clone(),
        a.sha256.clone(),
        a.member_sha256["etcdctl"].clone(),
    )
}

#[test]
fn lab_quickstart_fetches_every_pinned_deb_through_apt() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = ezk(home, &["--k8s-ver", "lab-debian", "--from-apt"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("artifact set lab-debian (--k8s-ver)"),
        "{stdout}"
    );

    let m = Manifest::shipped().unwrap();
    let (_, lab) = m.set("lab-debian").unwrap();
    assert_eq!(
        stdout.matches(" verified").count(),
        lab.artifacts.len(),
        "{stdout}"
    );
    let store = Store::at(home.join("down"), m.clone());
    for a in &lab.artifacts {
        // The .deb as apt fetched it is in the store under its pinned name and digest (a
        // build's source tarball is not kept: its binaries are what the store holds).
        if a.kind == ezk::artifacts::Kind::Deb {
            let deb = store.file_path(a);
            assert_eq!(&sha256_path(&deb), &a.sha256, "{}", a.name);
        }
        for (_, bin) in a.binaries() {
            let b = store.binary(bin, "lab-debian").unwrap();
            assert_eq!(b.sha256, a.member_sha256[bin], "{bin}");
        }
    }
    // The images made from those binaries, each recorded with its digest.
    for img in &lab.images {
        let rec = ezk::artifacts::oci::image(&store, "lab-debian", &img.name)
            .unwrap()
            .record;
        assert_eq!(rec.reference, img.reference);
        assert!(
            stdout.contains(&format!("image {}", img.name)) && stdout.contains(&rec.digest),
            "{stdout}"
        );
    }
    // And they are the very binaries Debian installed here (a check independent of the pins).
    let etcd = store.binary("etcd", "lab-debian").unwrap();
    assert_eq!(etcd.sha256, sha256_path(Path::new("/usr/bin/etcd")));
    let leftovers: Vec<_> = std::fs::read_dir(home.join("down"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".apt"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch dir left behind: {leftovers:?}"
    );

    // Re-run: nothing is fetched again, the store is unchanged.
    let before = snapshot(&home.join("down"));
    let out = ezk(home, &["--k8s-ver", "lab-debian", "--from-apt"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).matches("already verified").count(),
        lab.artifacts.len() + lab.images.len()
    );
    assert_eq!(snapshot(&home.join("down")), before);
}

#[test]
fn a_pinned_version_apt_no_longer_serves_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (served, deb_sha, member_sha) = shipped_etcd_client();
    let gone = "3.4.23-4+b4~gone1";
    let m = etcd_client_manifest(dir.path(), gone, &deb_sha, &member_sha);
    let home = dir.path().join("home");
    let out = ezk(&home, &["--manifest", &m, "--k8s-ver", "t", "--from-apt"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for want in [
        format!("Debian package etcd-client {gone}"),
        format!("apt serves: etcd-client {served}"),
        "src/artifacts/versions.yml".to_string(),
        "member_sha256".to_string(),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }
    assert!(snapshot(&home.join("down")).is_empty());
}

#[test]
fn a_deb_or_binary_not_matching_its_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (version, deb_sha, member_sha) = shipped_etcd_client();

    // The .deb apt serves is not the pinned one: quarantined, nothing stored.
    let m = etcd_client_manifest(dir.path(), &version, &"0".repeat(64), &member_sha);
    let home = dir.path().join("home1");
    let out = ezk(&home, &["--manifest", &m, "--k8s-ver", "t", "--from-apt"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("checksum mismatch"), "{stdout}");
    assert!(
        stdout.contains(&format!("got sha256:{deb_sha}")),
        "{stdout}"
    );
    assert!(snapshot(&home.join("down")).is_empty());
    assert_eq!(
        std::fs::read_dir(home.join("down/quarantine"))
            .unwrap()
            .count(),
        1
    );

    // The .deb matches but the binary in it is not the pinned one: no binary enters the store.
    let m = etcd_client_manifest(dir.path(), &version, &deb_sha, &"1".repeat(64));
    let home = dir.path().join("home2");
    let out = ezk(&home, &["--manifest", &m, "--k8s-ver", "t", "--from-apt"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("etcdctl (pinned for etcd-client"),
        "{stdout}"
    );
    assert!(!home.join("down/bin/etcd-client").join(&version).exists());
}

#[test]
fn from_apt_refuses_a_set_of_upstream_release_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = ezk(dir.path(), &["--k8s-ver", "v1.35.4", "--from-apt"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("artifact set 1.35.4: kube-apiserver"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--k8s-ver lab-debian --from-apt"),
        "{stderr}"
    );
    assert!(!dir.path().join("down/files").exists());
}
