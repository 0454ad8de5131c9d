//! The `ezk download` command as a user runs it (the real binary; in a pipe, and once on a
//! pty for the bars): plain progress lines, a summary, exit codes, a checksum failure reported with URL/expected/got, and
//! `--bundle` / `--import` between two homes.

use std::path::Path;
use std::process::Output;

use crate::support::http_server::TestServer;
use crate::support::{releases, snapshot, upstream_path};

/// `ezk download <args>` with this home, without blocking the runtime that serves the test
/// releases.
pub(crate) async fn ezk(home: &Path, args: &[&str]) -> Output {
    tokio::process::Command::from(crate::common::ezk::command(home))
        .arg("download")
        .args(args)
        .output()
        .await
        .unwrap()
}

/// A loopback server with every test release, and a manifest pointing at it.
async fn serve_releases() -> (TestServer, tempfile::TempDir, std::path::PathBuf) {
    let srv = TestServer::start().await;
    for r in releases() {
        srv.serve(&upstream_path(r), r.bytes.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("versions.yml");
    std::fs::write(&manifest, crate::support::manifest_yaml(&srv.base())).unwrap();
    (srv, dir, manifest)
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_rerun_tamper_bundle_import() {
    let (srv, dir, manifest) = serve_releases().await;
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

/// On a terminal (a real pty from util-linux `script`), `ezk download` draws one indicatif bar
/// per file plus a byte total, instead of the plain lines a pipe gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_each_file_gets_a_bar_and_a_total() {
    let (_srv, dir, manifest) = serve_releases().await;
    let home = dir.path().join("home");
    let cmd = format!(
        "'{}' --home '{}' download --manifest '{}' --k8s-ver test",
        crate::common::ezk::bin().display(),
        home.display(),
        manifest.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .await
        .expect("util-linux script");
    let tty = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}\n{}", text(&out.stderr));
    let n = releases().len();
    assert!(tty.contains(&format!("total ({n} files)")), "no total bar:\n{tty}");
    for r in releases() {
        assert!(tty.contains(&format!("{} ok", r.name)), "no finished bar for {}:\n{tty}", r.name);
    }
    assert!(tty.contains("[==="), "no drawn bar:\n{tty}");
    assert!(!tty.contains("download etcd:"), "plain pipe lines on a terminal:\n{tty}");
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

fn ezk_sync(home: &Path, args: &[&str]) -> Output {
    crate::common::ezk::command(home).args(args).output().unwrap()
}

/// A cluster made by `ezk new` with its config.yml's K8S_VER set to `ver`.
fn new_cluster(home: &Path, name: &str, ver: &str) {
    let out = ezk_sync(home, &["new", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = home.join("clusters").join(name).join("config.yml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("K8S_VER:"))
        .expect("the example config.yml sets K8S_VER")
        .to_string();
    std::fs::write(&cfg, text.replace(&line, &format!("K8S_VER: \"{ver}\""))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_set_comes_from_the_cluster_unless_k8s_ver_is_given() {
    let srv = TestServer::start().await;
    for r in releases() {
        srv.serve(&upstream_path(r), r.bytes.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    // Two sets with the same files: `first` (listed first) and `second`.
    let one = crate::support::manifest_yaml(&srv.base());
    let body = one.strip_prefix("sets:\n  test:\n").unwrap();
    let manifest = dir.path().join("versions.yml");
    std::fs::write(
        &manifest,
        format!("sets:\n  first:\n{body}  second:\n{body}"),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let home = dir.path().join("home");
    let dl = |args: &[&str]| {
        let mut all = vec!["download", "--manifest", m, "--only", "runc"];
        all.extend_from_slice(args);
        ezk_sync(&home, &all)
    };

    // No cluster at all: the manifest's first set.
    let out = dl(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .starts_with("artifact set first (no cluster: the manifest's first set)\nrunc"),
        "{}",
        text(&out.stdout)
    );

    // The current cluster's K8S_VER (`ezk new` makes the cluster current).
    new_cluster(&home, "demo", "second");
    let out = dl(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("artifact set second (K8S_VER of cluster demo)"),
        "{stdout}"
    );

    // Another current cluster with an unknown K8S_VER: refused, naming value, source and sets.
    new_cluster(&home, "old", "v1.20.1");
    let out = dl(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no artifact set for K8S_VER \"v1.20.1\"; known sets: first; second (K8S_VER of cluster old); set K8S_VER in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("clusters/old/config.yml to one of them, or pass --k8s-ver"),
        "{stderr}"
    );
    // A named cluster beats the current one; --k8s-ver beats both.
    let out = dl(&["demo"]);
    assert!(text(&out.stdout).contains("artifact set second (K8S_VER of cluster demo)"));
    let out = dl(&["--k8s-ver", "first"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("artifact set first (--k8s-ver)\n"));
    let out = dl(&["old", "--k8s-ver", "second"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("artifact set second (--k8s-ver)\n"));

    // A cluster that does not exist is an error, not a silent fallback to some set.
    let out = dl(&["nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    // runc was fetched once; every later run found it verified.
    let gets = srv
        .log()
        .iter()
        .filter(|l| l.path.ends_with("runc.amd64"))
        .count();
    assert_eq!(gets, 1);
}
