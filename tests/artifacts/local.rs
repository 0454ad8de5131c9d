//! Filling the store without upstream access: the `lab-debian` set from this machine's
//! installed Debian packages (pinned sha256 of the files as shipped), `.deb` artifacts over
//! HTTP, and what `ezk setup` relies on: `missing()` and `binary()` refusing what is absent,
//! unpinned or changed on disk.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::support::{sha256_path, snapshot};
use ezk::artifacts::download::{self, Options, Status};
use ezk::artifacts::local::fill_from_local;
use ezk::artifacts::progress::Silent;
use ezk::artifacts::{ArtifactError, Manifest, Store};

fn shipped_store(dir: &Path) -> Store {
    Store::at(dir.join("down"), Manifest::shipped().unwrap())
}

/// The lab pins name exact Debian package versions; say so plainly if this machine has others.
fn assert_installed(pkg: &str, version: &str) {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got, version,
        "{pkg}: installed version differs from the lab-debian pin in src/artifacts/versions.yml"
    );
}

#[test]
fn lab_debian_set_fills_from_installed_packages() {
    assert_installed("etcd-server", "3.4.23-4+b4");
    assert_installed("containerd", "1.6.20~ds1-1+deb12u3");
    assert_installed("runc", "1.1.5+ds1-1+deb12u1");
    assert_installed("containernetworking-plugins", "1.1.1+ds1-3+b5");
    let dir = tempfile::tempdir().unwrap();
    let store = shipped_store(dir.path());
    let names = [
        "etcd",
        "etcdctl",
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "bridge",
        "loopback",
    ];
    assert_eq!(store.missing(&names, "lab-debian").len(), names.len());

    let only: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let out = fill_from_local(&store, "lab-debian", &only, Path::new("/")).unwrap();
    assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
    assert!(store.missing(&names, "lab-debian").is_empty());
    // Older than the one-second window, so that binary() records what it verified (.verified)
    // and the tampering below must get past that record.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for (bin, src) in [
        ("etcd", "/usr/bin/etcd"),
        ("runc", "/usr/sbin/runc"),
        ("bridge", "/usr/lib/cni/bridge"),
    ] {
        let b = store.binary(bin, "lab-debian").unwrap();
        assert_eq!(b.sha256, sha256_path(Path::new(src)));
    }

    // A binary changed on disk after it entered the store (and after it was last verified) is
    // refused, not pushed.
    let etcd = store.binary("etcd", "lab-debian").unwrap().path;
    let record = std::fs::read_to_string(etcd.with_file_name(".verified")).unwrap();
    assert!(record.lines().any(|l| l.ends_with("\tetcd")), "{record}");
    std::fs::write(&etcd, b"not etcd").unwrap();
    assert!(matches!(
        store.binary("etcd", "lab-debian"),
        Err(ArtifactError::BinaryMismatch { .. })
    ));
}

#[test]
fn local_file_not_matching_its_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    // A real binary, but not the one pinned for etcd-server.
    std::fs::copy("/usr/bin/etcdctl", root.join("usr/bin/etcd")).unwrap();
    let store = shipped_store(dir.path());
    let out = fill_from_local(&store, "lab-debian", &["etcd".into()], &root).unwrap();
    let err = out[0].result.as_ref().unwrap_err();
    assert!(matches!(err, ArtifactError::BinaryMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&root.join("usr/bin/etcd").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&sha256_path(Path::new("/usr/bin/etcdctl"))),
        "{msg}"
    );
    assert!(snapshot(store.dir()).is_empty());
    assert!(
        !store.dir().join("bin/etcd-server").exists(),
        "no trace of a refused artifact"
    );
}

#[test]
fn missing_and_binary_name_the_command_that_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let store = shipped_store(dir.path());
    let missing = store.missing(&["etcd", "kube-apiserver", "kube-ovn"], "v1.35.4");
    assert_eq!(missing.len(), 3, "{missing:?}");
    assert!(
        missing[0].contains("etcd 3.6.14 not downloaded"),
        "{missing:?}"
    );
    assert!(
        missing[2].contains("not in artifact set 1.35.4"),
        "{missing:?}"
    );
    assert_eq!(
        store.fetch_hint(&["etcd", "etcdctl", "kube-apiserver"], "v1.35.4"),
        "ezk download --k8s-ver 1.35.4 --only etcd,kube-apiserver"
    );
    let err = store.binary("etcdctl", "v1.35.4").unwrap_err().to_string();
    assert!(
        err.contains("ezk download --k8s-ver 1.35.4 --only etcd"),
        "{err}"
    );
    assert!(matches!(
        store.binary("kubectl", "v9.9"),
        Err(ArtifactError::UnknownVersion { .. })
    ));
}

/// A .deb built here from Debian's real etcd binary, served on loopback, declared `kind: deb`.
fn build_deb(dir: &Path, payload: &Path) -> Vec<u8> {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: etcd-test\nVersion: 1.0\nArchitecture: amd64\nMaintainer: ezk tests <t@example.invalid>\nDescription: test\n",
    )
    .unwrap();
    std::fs::copy(payload, pkg.join("usr/bin/etcd")).unwrap();
    let deb = dir.join("etcd-test_1.0_amd64.deb");
    let st = Command::new("dpkg-deb")
        .args(["-Znone", "--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(deb).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deb_artifacts_download_extract_and_check_member_pins() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path(), Path::new("/usr/bin/etcd"));
    let srv = crate::support::http_server::TestServer::start().await;
    srv.serve("/pool/etcd-test_1.0_amd64.deb", deb.clone());
    srv.serve("/pool2/etcd-test_1.0_amd64.deb", deb.clone());
    let yaml = format!(
        concat!(
            "sets:\n  t:\n    artifacts:\n",
            "      - {{name: good, version: \"1.0\", url: \"{b}/pool/etcd-test_1.0_amd64.deb\", sha256: {d}, kind: deb,\n",
            "         members: {{usr/bin/etcd: etcd}}, member_sha256: {{etcd: {e}}}}}\n",
            "      - {{name: wrongpin, version: \"1.0\", url: \"{b}/pool2/etcd-test_1.0_amd64.deb\", sha256: {d}, kind: deb,\n",
            "         members: {{usr/bin/etcd: etcd2}}, member_sha256: {{etcd2: {w}}}}}\n",
        ),
        b = srv.base(),
        d = crate::support::sha256(&deb),
        e = sha256_path(Path::new("/usr/bin/etcd")),
        w = sha256_path(Path::new("/usr/bin/etcdctl")),
    );
    let store = Arc::new(Store::at(
        dir.path().join("down"),
        Manifest::parse(&yaml, "t.yml").unwrap(),
    ));
    let out = download::download_all(store.clone(), "t", &Options::default(), Arc::new(Silent))
        .await
        .unwrap();
    assert!(
        matches!(out[0].result, Ok(Status::Downloaded { .. })),
        "{:?}",
        out[0].result
    );
    assert_eq!(
        store.binary("etcd", "t").unwrap().sha256,
        sha256_path(Path::new("/usr/bin/etcd"))
    );
    // The .deb itself verifies, but what it contains does not match the member pin: refused.
    assert!(
        matches!(out[1].result, Err(ArtifactError::BinaryMismatch { .. })),
        "{:?}",
        out[1].result
    );
    assert!(store.binary("etcd2", "t").is_err());
    assert!(
        !store
            .bin_dir(
                store
                    .manifest()
                    .set("t")
                    .unwrap()
                    .1
                    .artifact_for("etcd2")
                    .unwrap()
            )
            .exists()
    );
}
