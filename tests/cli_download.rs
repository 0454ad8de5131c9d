//! The `ezk download` command as a user runs it (the real binary, not a tty): plain progress
//! lines, a summary, exit codes, a checksum failure reported with URL/expected/got, and
//! `--bundle` / `--import` between two homes.

#[path = "artifacts_support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;

use support::http_server::TestServer;
use support::{releases, snapshot, upstream_path};

async fn ezk(home: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ezk"))
        .arg("--home")
        .arg(home)
        .arg("download")
        .args(args)
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_rerun_tamper_bundle_import() {
    let srv = TestServer::start().await;
    for r in releases() {
        srv.serve(&upstream_path(r), r.bytes.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("versions.yml");
    std::fs::write(&manifest, support::manifest_yaml(&srv.base())).unwrap();
    let m = manifest.to_str().unwrap();
    let home = dir.path().join("home");

    let out = ezk(
        &home,
        &["--manifest", m, "--k8s-ver", "test", "--jobs", "2"],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "download etcd: {} bytes",
            releases()[0].bytes.len()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("etcd: ok verified"), "{stderr}");
    assert_eq!(
        stdout.matches(" verified").count(),
        releases().len(),
        "{stdout}"
    );

    let before = srv.log().len();
    let out = ezk(&home, &["--manifest", m, "--k8s-ver", "test"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).matches("already verified").count(),
        releases().len()
    );
    assert_eq!(srv.log().len(), before, "re-run downloaded something");

    // Bundle from this home, import into an empty one.
    let tar = dir.path().join("b.tar");
    let out = ezk(&home, &["--manifest", m, "--bundle", tar.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let home2 = dir.path().join("home2");
    let out = ezk(
        &home2,
        &["--manifest", m, "--import", tar.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(snapshot(&home2.join("down")), snapshot(&home.join("down")));

    // A tampered download: exit 1, the URL and both digests in the report, nothing stored.
    let ctrd = &releases()[1];
    let mut bad = ctrd.bytes.clone();
    bad[100] ^= 1;
    srv.serve(&upstream_path(ctrd), bad);
    let home3 = dir.path().join("home3");
    let out = ezk(
        &home3,
        &["--manifest", m, "--k8s-ver", "test", "--only", "containerd"],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "checksum mismatch for {}",
            srv.url(&upstream_path(ctrd))
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("expected sha256:{}", ctrd.sha256())),
        "{stdout}"
    );
    assert!(snapshot(&home3.join("down")).is_empty());
    assert_eq!(
        std::fs::read_dir(home3.join("down/quarantine"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn help_documents_the_mirror_layout_and_unknown_version_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ezk(dir.path(), &["--help"]).await;
    let help = text(&out.stdout);
    assert!(help.contains("URL/<name>/<version>/<filename>"), "{help}");
    let out = ezk(dir.path(), &["--k8s-ver", "v1.2.3"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no artifact set for K8S_VER \"v1.2.3\""),
        "{}",
        text(&out.stderr)
    );
}
