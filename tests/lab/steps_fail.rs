//! Hosts failing partway through step 02 on the shared lab (issue 7): the other hosts finish
//! and stay a consistent, healthy etcd quorum; once the host is back, a re-run changes that
//! host only and the cluster converges. Runs after `steps` (it needs the cluster made there).

use std::process::Command;

use crate::steps_support::*;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test {
        name: "steps::unreachable_host_others_converge_then_rerun_converges",
        run: unreachable_host_then_rerun_converges,
    },
    Test {
        name: "steps::failed_restart_mid_step_then_rerun_converges",
        run: failed_restart_mid_step_then_rerun_converges,
    },
];

/// Puts a host's bridge-side link back up even when the test panics.
struct LinkDown(String);
impl LinkDown {
    fn new(link: String) -> LinkDown {
        let ok = Command::new("ip")
            .args(["link", "set", &link, "down"])
            .status()
            .expect("ip runs");
        assert!(ok.success(), "ip link set {link} down");
        LinkDown(link)
    }
}
impl Drop for LinkDown {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "set", &self.0, "up"])
            .status();
    }
}

/// Host 3 is cut off the network while 02 applies a change: the other two apply it, stay a
/// healthy quorum; back online, a re-run changes host 3 only and the cluster is whole again.
fn unreachable_host_then_rerun_converges(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    let change = ["-e", "ETCD_SNAPSHOT_COUNT=40000"];
    let cut = LinkDown::new(format!("vb-ez{}-3", lab.index));
    let mut args = change.to_vec();
    args.extend(["--connect-timeout", "2"]);
    let r = setup(lab, "02", &args);
    assert_ne!(
        r.code, 0,
        "a run with an unreachable host reported success:\n{}",
        r.output
    );
    // Bounded: a stopping leader that cannot hand over to the cut-off member must not stall
    // the others' restarts for systemd's default 90 s stop timeout.
    assert!(
        r.secs < 45.0,
        "the run took {:.0}s with one member cut off:\n{}",
        r.secs,
        r.output
    );
    assert_eq!(r.count(&ips[2], "unreachable"), 1, "{}", r.output);
    for (i, ip) in ips.iter().enumerate().take(2) {
        assert_eq!(r.count(ip, "failed"), 0, "{}", r.output);
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
        assert!(
            etcd_cmdline(lab, i).contains("--snapshot-count=40000 "),
            "{ip} not restarted with the change"
        );
    }
    assert_put_get(lab, &ips[0], &ips[1], "quorum-without-member-3");
    drop(cut);
    let r = setup_ok(lab, "02", &change);
    assert_nothing_changed(&r, &ips[..2]);
    assert!(
        r.count(&ips[2], "changed") > 0,
        "the re-run did not change host 3:\n{}",
        r.output
    );
    assert!(etcd_cmdline(lab, 2).contains("--snapshot-count=40000 "));
    assert_cluster_healthy(lab, &ips[0], &ips, 15);
    assert_put_get(lab, &ips[0], &ips[2], "member-3-caught-up");
}

/// On host 2, etcd refuses to start (a fault drop-in standing in for a broken disk or binary):
/// 02 applies a change, host 2 fails at the restart after its new unit file landed, hosts 1
/// and 3 finish and keep a quorum. Once the fault is gone, a re-run changes host 2 only and the
/// member comes back with the new configuration.
fn failed_restart_mid_step_then_rerun_converges(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    let change = ["-e", "ETCD_SNAPSHOT_COUNT=30000"];
    let fault = "/etc/systemd/system/etcd.service.d/zz-ezk-test-fault.conf";
    lab.sh(
        1,
        &format!(
            "mkdir -p /etc/systemd/system/etcd.service.d && printf '[Service]\\nExecStartPre=/bin/false\\nRestart=no\\n' > {fault} && systemctl daemon-reload"
        ),
    );
    struct Fault<'a>(&'a Lab, &'static str);
    impl Drop for Fault<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .ssh(1, &format!("rm -f {} && systemctl daemon-reload", self.1));
        }
    }
    let fault_guard = Fault(lab, fault);
    let r = setup(lab, "02", &change);
    assert_ne!(r.code, 0, "{}", r.output);
    assert_eq!(r.count(&ips[1], "failed"), 1, "{}", r.output);
    assert!(
        r.output.contains("systemctl restart etcd failed"),
        "failure not named:\n{}",
        r.output
    );
    // The unit's journal tail comes with the error: why it did not start.
    assert!(r.output.contains("status=1/FAILURE"), "no journal tail in the error:\n{}", r.output);
    assert!(
        lab.sh(1, "cat /etc/systemd/system/etcd.service")
            .contains("--snapshot-count=30000")
    );
    assert_ne!(lab.sh(1, "systemctl is-active etcd || true"), "active");
    for i in [0, 2] {
        assert_eq!(r.count(&ips[i], "failed"), 0, "{}", r.output);
        assert!(etcd_cmdline(lab, i).contains("--snapshot-count=30000 "));
    }
    assert_put_get(lab, &ips[0], &ips[2], "quorum-without-member-2");
    drop(fault_guard);
    let r = setup_ok(lab, "02", &change);
    assert_nothing_changed(&r, &[ips[0].clone(), ips[2].clone()]);
    assert!(r.count(&ips[1], "changed") > 0, "{}", r.output);
    assert!(etcd_cmdline(lab, 1).contains("--snapshot-count=30000 "));
    assert_cluster_healthy(lab, &ips[1], &ips, 15);
    assert_put_get(lab, &ips[2], &ips[1], "member-2-caught-up");
    // Back to the inventory's values: every member restarts once, then nothing to do.
    let r = setup_ok(lab, "02", &[]);
    for ip in &ips {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
    }
    assert_cluster_healthy(lab, &ips[0], &ips, 15);
    assert_nothing_changed(&setup_ok(lab, "02", &[]), &ips);
}
