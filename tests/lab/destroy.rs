//! `ezk destroy` on the shared lab (kubeasz's `ezctl destroy`): after a plan that changes
//! nothing, etcd and containerd are stopped and disabled on every host, their units unloaded,
//! their data, certificates and configs gone, the node names ezk added to /etc/hosts removed
//! (the lab's own lines kept), the release binaries kept; a second destroy changes nothing; and
//! steps 01-03 then build a fresh cluster (the old etcd data is gone) that re-runs clean.
//! Runs last: it takes the shared lab down to bare hosts and builds it back.

use crate::steps_support::*;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "destroy::removes_the_cluster_and_setup_builds_it_again",
    run: removes_the_cluster_and_setup_builds_it_again,
}];

/// Added to every host's /etc/hosts the way step 01 tags the node names it writes (the lab's
/// hosts already list each other, so 01 adds none there).
const GHOST: &str = "198.18.255.99    ghost-node  # ezk";

/// Paths destroy removes on every host of the 3-host lab (all of them etcd, master and node).
const GONE: &[&str] = &[
    "/etc/systemd/system/etcd.service",
    "/var/lib/etcd",
    "/etc/systemd/system/containerd.service",
    "/etc/containerd",
    // the lab's CONTAINERD_STORAGE_DIR (below the host's own-filesystem dir)
    "/var/lib/ezk-lab-disk/containerd",
    "/run/containerd",
    "/etc/kubernetes/ssl",
    "/root/.kube/config",
    "/etc/profile.d/ezk-path.sh",
];

fn removes_the_cluster_and_setup_builds_it_again(lab: &Lab) {
    ensure_etcd_cluster(lab);
    ensure_runtime(lab);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let put = etcdctl(lab, &ips[0], &["put", "/ezk-test/destroy-probe", "before"]);
    assert!(put.status.success(), "{}", text(&put));
    for i in 0..ips.len() {
        lab.sh(i, &format!("echo '{GHOST}' >> /etc/hosts"));
    }

    // --plan: every removal listed, nothing done.
    let out = lab.ezk(&["destroy", &lab.name, "--plan", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, ip) in ips.iter().enumerate() {
        let lines: Vec<&str> = plan["plan"][ip]
            .as_array()
            .unwrap_or_else(|| panic!("no plan for {ip}: {plan}"))
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        for want in [
            "[clean-etcd] stop etcd",
            "[clean-containerd] stop containerd",
        ]
        .into_iter()
        .map(String::from)
        .chain(GONE.iter().map(|p| format!("remove {p}")))
        {
            assert!(
                lines.iter().any(|l| l.ends_with(&want)),
                "--plan on {ip} lacks {want:?}: {lines:#?}"
            );
        }
        assert_eq!(
            lab.sh(i, "systemctl is-active etcd containerd"),
            "active\nactive"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(
            &etcdctl(
                lab,
                &ips[1],
                &["get", "/ezk-test/destroy-probe", "--print-value-only"]
            )
            .stdout
        )
        .trim(),
        "before",
        "--plan removed etcd data"
    );

    let out = lab.ezk(&["destroy", &lab.name, "--yes", "--json"]);
    assert!(out.status.success(), "destroy failed: {}", text(&out));
    for (i, ip) in ips.iter().enumerate() {
        for unit in ["etcd", "containerd"] {
            let state: Vec<String> = ["ActiveState", "LoadState"]
                .iter()
                .map(|p| lab.sh(i, &format!("systemctl show -p {p} --value {unit}")))
                .collect();
            assert_eq!(
                state,
                ["inactive", "not-found"],
                "{unit} on {ip} after destroy: stopped, and unloaded once its unit file went"
            );
        }
        for p in GONE {
            assert!(
                !lab.ssh(i, &format!("test -e {p}")).status.success(),
                "{p} still on {ip}"
            );
        }
        let hosts = lab.sh(i, "cat /etc/hosts");
        assert!(
            !hosts.contains("ghost-node"),
            "tagged node name left on {ip}:\n{hosts}"
        );
        for h in &lab.hosts {
            assert!(
                hosts.contains(&h.name),
                "the lab's own line for {} went on {ip}",
                h.name
            );
        }
        // Kept: release binaries (a later setup reuses them), OS tuning.
        lab.sh(
            i,
            "test -x /opt/kube/bin/etcd && test -x /opt/kube/bin/containerd-bin/containerd",
        );
        lab.sh(i, "test -s /etc/sysctl.d/95-k8s-sysctl.conf");
    }

    let again = lab.ezk(&["destroy", &lab.name, "--yes", "--json"]);
    assert!(again.status.success(), "{}", text(&again));
    let recap: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    for ip in &ips {
        assert_eq!(
            recap["hosts"][ip]["changed"], 0,
            "a second destroy changed {ip}: {recap}"
        );
    }

    // Built again from the same inventory and CA: a new etcd cluster, without the old data.
    all_steps(lab);
    assert_cluster_healthy(lab, &ips[0], &ips, 30);
    let get = etcdctl(
        lab,
        &ips[2],
        &["get", "/ezk-test/destroy-probe", "--print-value-only"],
    );
    assert!(get.status.success(), "{}", text(&get));
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "",
        "old etcd data survived destroy"
    );
    for i in 0..ips.len() {
        assert_eq!(
            lab.sh(i, "systemctl is-active etcd containerd"),
            "active\nactive"
        );
    }
    // Re-run: nothing changes.
    for recap in &all_steps(lab) {
        for ip in &ips {
            assert_eq!(
                recap["hosts"][ip]["changed"], 0,
                "setup all re-run changed {ip}: {recap}"
            );
        }
    }
}

/// Steps 01 02 03 (what this suite's destroy removes: etcd and containerd; step 10 has no host
/// on the 3-host lab, and the Kubernetes steps have their own suite), each `--json`: they
/// succeed; one recap per step.
fn all_steps(lab: &Lab) -> Vec<serde_json::Value> {
    ["01", "02", "03"]
        .iter()
        .map(|step| {
            let out = lab.ezk(&["setup", &lab.name, step, "--json"]);
            assert!(out.status.success(), "setup {step} failed: {}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
        })
        .collect()
}
