//! `ezk download` against a loopback HTTP server serving release-format archives built from
//! the real Debian etcd/containerd/runc/CNI binaries: full download, resume after a cut and
//! after an interrupted run (asserted from the server's Range log), tampered file rejected and
//! quarantined, mirror layout, bundle → import round trip, import of a tampered bundle.

use std::path::Path;
use std::sync::Arc;

use crate::support::http_server::TestServer;
use crate::support::{releases, sha256_path, snapshot, upstream_path};
use ezk::artifacts::download::{self, Options, Status};
use ezk::artifacts::progress::Silent;
use ezk::artifacts::{ArtifactError, Manifest, Store, bundle};

async fn setup() -> (TestServer, tempfile::TempDir, Arc<Store>) {
    let srv = TestServer::start().await;
    for r in releases() {
        srv.serve(&upstream_path(r), r.bytes.clone());
    }
    let manifest =
        Manifest::parse(&crate::support::manifest_yaml(&srv.base()), "test manifest").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::at(dir.path().join("down"), manifest));
    (srv, dir, store)
}

async fn run(store: &Arc<Store>, opts: &Options) -> Vec<download::Outcome> {
    download::download_all(store.clone(), "test", opts, Arc::new(Silent))
        .await
        .unwrap()
}

fn assert_binaries_are_debians(store: &Store) {
    for r in releases() {
        for (bin, src) in &r.sources {
            let b = store
                .binary(bin, "test")
                .unwrap_or_else(|e| panic!("{bin}: {e}"));
            assert_eq!(
                b.sha256,
                sha256_path(src),
                "{bin} differs from {}",
                src.display()
            );
            assert_eq!(sha256_path(&b.path), b.sha256);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_download_then_rerun_fetches_nothing() {
    let (srv, _dir, store) = setup().await;
    let out = run(&store, &Options::default()).await;
    for o in &out {
        assert!(
            matches!(o.result, Ok(Status::Downloaded { .. })),
            "{}: {:?}",
            o.artifact,
            o.result
        );
    }
    assert_binaries_are_debians(&store);
    assert!(
        store
            .missing(&["etcd", "etcdctl", "containerd", "runc", "bridge"], "test")
            .is_empty()
    );
    let requests = srv.log().len();
    assert_eq!(requests, releases().len());

    let out = run(&store, &Options::default()).await;
    assert!(
        out.iter()
            .all(|o| matches!(o.result, Ok(Status::AlreadyVerified))),
        "{out:?}"
    );
    assert_eq!(
        srv.log().len(),
        requests,
        "a re-run must not touch the network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_run_in_parallel_up_to_the_jobs_limit() {
    let (srv, _dir, store) = setup().await;
    srv.delay_responses(std::time::Duration::from_millis(300));
    let out = run(
        &store,
        &Options {
            jobs: 2,
            ..Options::default()
        },
    )
    .await;
    assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
    assert_eq!(srv.max_concurrent(), 2, "4 files with --jobs 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_halfway_is_resumed_not_restarted() {
    let (srv, _dir, store) = setup().await;
    let etcd = &releases()[0];
    let path = upstream_path(etcd);
    let half = etcd.bytes.len() / 2;
    srv.cut_next(&path, half);
    let opts = Options {
        only: vec!["etcd".into()],
        ..Options::default()
    };
    let out = run(&store, &opts).await;
    assert!(
        matches!(out[0].result, Ok(Status::Downloaded { attempts: 2, .. })),
        "{:?}",
        out[0].result
    );

    let log = srv.log_for(&path);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].range, None);
    assert_eq!(log[0].body_bytes_sent, half);
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(log[1].status, 206);
    let served: usize = log.iter().map(|l| l.body_bytes_sent).sum();
    assert_eq!(served, etcd.bytes.len(), "every byte sent exactly once");
    assert_eq!(
        store.binary("etcd", "test").unwrap().sha256,
        sha256_path(Path::new("/usr/bin/etcd"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_left_by_an_interrupted_run_is_resumed() {
    let (srv, _dir, store) = setup().await;
    let ctrd = &releases()[1];
    let a = store
        .manifest()
        .set("test")
        .unwrap()
        .1
        .artifact_for("containerd")
        .unwrap()
        .clone();
    let third = ctrd.bytes.len() / 3;
    let part = store.part_path(&a);
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &ctrd.bytes[..third]).unwrap();

    let out = run(
        &store,
        &Options {
            only: vec!["containerd".into()],
            ..Options::default()
        },
    )
    .await;
    match &out[0].result {
        Ok(Status::Downloaded { resumed_from, .. }) => assert_eq!(*resumed_from, third as u64),
        other => panic!("{other:?}"),
    }
    let log = srv.log_for(&upstream_path(ctrd));
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].range.as_deref(),
        Some(format!("bytes={third}-").as_str())
    );
    assert_eq!(log[0].body_bytes_sent, ctrd.bytes.len() - third);
    assert!(!part.exists());
    assert_eq!(
        store.binary("ctr", "test").unwrap().sha256,
        sha256_path(Path::new("/usr/bin/ctr"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_file_is_quarantined_and_store_unchanged() {
    let (srv, _dir, store) = setup().await;
    let others = Options {
        only: vec!["containerd".into(), "runc".into(), "cni-plugins".into()],
        ..Options::default()
    };
    run(&store, &others).await;
    let before = snapshot(store.dir());

    let etcd = &releases()[0];
    let mut bad = etcd.bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    srv.serve(&upstream_path(etcd), bad.clone());
    let out = run(
        &store,
        &Options {
            only: vec!["etcd".into()],
            ..Options::default()
        },
    )
    .await;
    match &out[0].result {
        Err(ArtifactError::Mismatch {
            url,
            expected,
            got,
            quarantined,
        }) => {
            assert_eq!(url, &srv.url(&upstream_path(etcd)));
            assert_eq!(expected, &format!("sha256:{}", etcd.sha256()));
            assert_eq!(got, &format!("sha256:{}", crate::support::sha256(&bad)));
            assert_eq!(std::fs::read(quarantined).unwrap(), bad);
            let msg = out[0].result.as_ref().unwrap_err().to_string();
            assert!(
                msg.contains(url) && msg.contains(expected) && msg.contains(got),
                "{msg}"
            );
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert_eq!(
        snapshot(store.dir()),
        before,
        "store changed by a bad download"
    );
    assert!(matches!(
        store.binary("etcd", "test"),
        Err(ArtifactError::Missing { .. })
    ));
    assert_eq!(store.missing(&["etcd", "runc"], "test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_is_laid_out_like_the_store() {
    let (srv, _dir, store) = setup().await;
    for r in releases() {
        srv.serve(
            &format!("/m/{}/{}/{}", r.name, r.version, r.filename),
            r.bytes.clone(),
        );
    }
    let opts = Options {
        mirror: Some(srv.url("/m/")),
        ..Options::default()
    };
    let out = run(&store, &opts).await;
    assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
    let log = srv.log();
    assert_eq!(log.len(), releases().len());
    assert!(
        log.iter()
            .all(|l| l.path.starts_with("/m/") && l.status == 200),
        "{log:?}"
    );
    assert_binaries_are_debians(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_imports_into_an_identical_store_and_tampering_is_rejected() {
    let (_srv, dir, store) = setup().await;
    run(&store, &Options::default()).await;
    let bundle_path = dir.path().join("bundle.tar");
    let written = bundle::write_bundle(&store, &bundle_path).unwrap();
    assert_eq!(written.len(), releases().len());

    let empty = Store::at(dir.path().join("other"), store.manifest().clone());
    let imported = bundle::import_bundle(&empty, &bundle_path).unwrap();
    assert_eq!(imported.len(), releases().len());
    assert_eq!(snapshot(empty.dir()), snapshot(store.dir()));
    assert_binaries_are_debians(&empty);

    // Flip one byte inside runc's data in the tar: import must refuse and change nothing.
    let mut raw = std::fs::read(&bundle_path).unwrap();
    let runc = std::fs::read(
        store.file_path(
            store
                .manifest()
                .set("test")
                .unwrap()
                .1
                .artifact_for("runc")
                .unwrap(),
        ),
    )
    .unwrap();
    let at = raw
        .windows(64)
        .position(|w| w == &runc[4096..4160])
        .expect("runc data in bundle");
    raw[at] ^= 0xff;
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, raw).unwrap();
    let fresh = Store::at(dir.path().join("fresh"), store.manifest().clone());
    let err = bundle::import_bundle(&fresh, &tampered)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("runc.amd64"),
        "{err}"
    );
    assert!(
        snapshot(fresh.dir()).is_empty(),
        "a rejected bundle left files behind"
    );
    // Also into a filled store: nothing is replaced.
    let before = snapshot(empty.dir());
    assert!(bundle::import_bundle(&empty, &tampered).is_err());
    assert_eq!(snapshot(empty.dir()), before);
}

#[test]
fn bundle_with_a_link_entry_is_rejected() {
    let manifest = Manifest::parse(
        &crate::support::manifest_yaml("http://127.0.0.1:9"),
        "test manifest",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("link.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "files/runc/1.1.5/runc.amd64", "/usr/sbin/runc")
        .unwrap();
    b.finish().unwrap();
    drop(b);
    let store = Store::at(dir.path().join("down"), manifest);
    let err = bundle::import_bundle(&store, &tar_path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only regular files are accepted"), "{err}");
    assert!(snapshot(store.dir()).is_empty());
}
