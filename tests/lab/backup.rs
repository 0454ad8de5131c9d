//! `ezk backup` and `ezk restore` on the shared lab's real 3-member etcd (kubeasz's `ezctl
//! backup` / `restore`): a snapshot taken from this machine over TLS is kept 0600 with its
//! sha256; a restore asks first, `--plan` changes nothing, and `--yes` puts every member back
//! to the snapshot (a key written after it is gone, the old data kept beside), after which
//! step 02 has nothing to do.

use std::os::unix::fs::PermissionsExt;

use crate::steps_support::*;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "backup::snapshot_then_restore_puts_etcd_back",
    run: snapshot_then_restore_puts_etcd_back,
}];

const KEY: &str = "/ezk-test/backup-probe";
const LATER: &str = "/ezk-test/written-after-the-snapshot";

fn get(lab: &Lab, ip: &str, key: &str) -> String {
    let out = etcdctl(lab, ip, &["get", key, "--print-value-only"]);
    assert!(out.status.success(), "get {key} via {ip}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn put(lab: &Lab, key: &str, value: &str) {
    let out = etcdctl(lab, &lab.hosts[0].ip, &["put", key, value]);
    assert!(out.status.success(), "put {key}: {}", text(&out));
}

fn snapshot_then_restore_puts_etcd_back(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    put(lab, KEY, "in-the-snapshot");

    let out = lab.ezk(&["backup", &lab.name]);
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let dir = lab.cluster_dir().join("backup");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&dir),
        0o700,
        "the backup dir holds every secret of the cluster"
    );
    let snaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "db") && p.file_name().unwrap() != "snapshot.db"
        })
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0];
    assert_eq!(mode(snap), 0o600);
    let recorded = std::fs::read_to_string(snap.with_extension("db.sha256")).unwrap();
    let sha = |p: &std::path::Path| {
        let out = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert!(recorded.starts_with(&sha(snap)), "{recorded}");
    assert_eq!(
        sha(&dir.join("snapshot.db")),
        sha(snap),
        "snapshot.db is the latest"
    );

    put(lab, KEY, "written-after");
    put(lab, LATER, "x");

    // Asks first: not at a terminal and no --yes, nothing happens; --plan changes nothing.
    let out = lab.ezk(&["restore", &lab.name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pass --yes to restore cluster"),
        "{}",
        text(&out)
    );
    let out = lab.ezk(&["restore", &lab.name, "--plan", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for ip in &ips {
        let lines = plan["plan"][ip].to_string();
        assert!(
            lines.contains("ezk-etcd-restore /var/lib/ezk/etcd-restore/member.tar.gz"),
            "{lines}"
        );
    }
    assert_eq!(get(lab, &ips[1], KEY), "written-after", "--plan restored");
    // setup refuses the restore playbook.
    let out = lab.ezk(&["setup", &lab.name, "95"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("`ezk restore {}` runs it", lab.name)),
        "{}",
        text(&out)
    );

    let out = lab.ezk(&["restore", &lab.name, "--yes"]);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert_cluster_healthy(lab, &ips[0], &ips, 30);
    for ip in &ips {
        assert_eq!(get(lab, ip, KEY), "in-the-snapshot", "via {ip}");
        assert_eq!(
            get(lab, ip, LATER),
            "",
            "a key written after the snapshot survived via {ip}"
        );
    }
    let members = etcdctl(lab, &ips[0], &["member", "list"]);
    for ip in &ips {
        assert!(
            text(&members).contains(&format!("started, etcd-{ip}, https://{ip}:2380")),
            "{}",
            text(&members)
        );
    }
    for i in 0..ips.len() {
        lab.sh(i, "test -d /var/lib/etcd.ezk-before-restore/member");
        lab.sh(i, "! test -e /var/lib/ezk/etcd-restore/member.tar.gz");
        assert_eq!(lab.sh(i, "stat -c %a /var/lib/etcd"), "700");
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore-"))
        .collect();
    assert!(
        left.is_empty(),
        "restore workspace left on this machine: {left:?}"
    );

    // The restored members are what step 02 installs: nothing to do.
    assert_nothing_changed(&setup_ok(lab, "02", &[]), &ips);
}
