//! Faults once the control plane exists (the 5-host Kubernetes lab): one master's
//! kube-apiserver killed (SIGKILL) while `setup 04` restarts the apiservers one at a time, and
//! one etcd member lost while a run restarts them. Each run ends either cleanly or naming the
//! host and the cause; the next run converges; the lab is left as `kube_master` left it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::kube_master::{MASTERS, ensure_control_plane};
use crate::support::kubectl;
use crate::steps_support::{Run, assert_cluster_healthy, setup_ok, text};
use crate::support::with_cluster_lab;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "faults_kube::apiserver_killed_during_setup_04_converges", run: apiserver_killed_during_setup_04_converges },
    Test { name: "faults_kube::etcd_member_lost_during_a_run", run: etcd_member_lost_during_a_run },
];

const FLAG: &str = "NODE_PORT_RANGE=30000-32000";

fn main_pid(lab: &Lab, i: usize, unit: &str) -> String {
    lab.sh(i, &format!("systemctl show -p MainPID --value {unit}"))
}

fn master_ips(lab: &Lab) -> Vec<String> {
    MASTERS.iter().map(|&i| lab.hosts[i].ip.clone()).collect()
}

/// `/readyz` through the VIP answers ok within `secs`.
fn wait_api_ready(lab: &Lab, secs: u64) {
    let start = Instant::now();
    loop {
        let out = kubectl(lab).args(["get", "--raw", "/readyz"]).output().expect("kubectl runs");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "the API is not ready through the VIP after {secs}s: {}", text(&out));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every master's apiserver unit carries `--service-node-port-range=<range>` (or not).
fn flag_everywhere(lab: &Lab, on: bool) {
    for &i in &MASTERS {
        assert_eq!(has_flag(lab, i), on, "master {i}: {}", lab.sh(i, "systemctl cat kube-apiserver"));
    }
}

/// Whether master `i`'s apiserver unit carries the flag.
fn has_flag(lab: &Lab, i: usize) -> bool {
    lab.sh(i, "systemctl cat kube-apiserver").contains("--service-node-port-range=30000-32000")
}

fn assert_converged(r: &Run, ips: &[String]) {
    for ip in ips {
        assert_eq!(r.count(ip, "changed"), 0, "{ip} changed on a converged run:\n{}", r.output);
        assert_eq!(r.count(ip, "failed"), 0, "{}", r.output);
    }
}

/// `setup 04` with a flag change restarts the three apiservers one at a time. As soon as it
/// has restarted the first, the third master's apiserver is killed (SIGKILL, systemd brings it
/// back after RestartSec). The run either finishes (the killed apiserver was healthy again by
/// its turn) or stops naming that master and why; either way no unit file is half-written,
/// the next run converges to every master on the new flag, and one after it changes nothing.
/// Wait until every unit is active on host `i` (systemd restarting what was killed).
fn wait_active(lab: &Lab, i: usize, units: &[&str], secs: u64) {
    let cmd = format!("systemctl is-active {}", units.join(" "));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let now = lab.sh(i, &format!("{cmd} || true"));
        if now.lines().all(|l| l == "active") {
            return;
        }
        assert!(std::time::Instant::now() < end, "{units:?} on {} not active again after {secs}s: {now}", lab.hosts[i].ip);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn apiserver_killed_during_setup_04_converges(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        // The shared lab as the inventory says (a test that failed before it may have left the
        // flag on): the run below must have a restart to make.
        if MASTERS.iter().any(|&i| has_flag(lab, i)) {
            setup_ok(lab, "04", &[]);
        }
        flag_everywhere(lab, false);
        let masters = master_ips(lab);
        let first_pid = main_pid(lab, MASTERS[0], "kube-apiserver");
        let victim = MASTERS[2];
        // On the first master: wait until ezk restarted its apiserver (a new MainPID); then kill
        // the victim's (from this machine, over its own SSH).
        let mut watcher = lab
            .ssh_cmd(MASTERS[0])
            .arg(format!("for n in $(seq 1 3000); do p=$(systemctl show -p MainPID --value kube-apiserver); [ \"$p\" != {first_pid} ] && [ \"$p\" != 0 ] && exit 0; sleep 0.1; done; exit 1"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let child = crate::common::ezk::command(&lab.home).args(["setup", &lab.name, "04", "-e", FLAG, "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let seen = watcher.wait().unwrap().success();
        let killed_pid = main_pid(lab, victim, "kube-apiserver");
        if seen {
            lab.sh(victim, "systemctl kill -s KILL kube-apiserver");
        }
        let out = child.wait_with_output().unwrap();
        let output = text(&out);
        assert!(seen, "the first apiserver was never restarted:\n{output}");
        println!("  killed kube-apiserver pid {killed_pid} on {}", lab.hosts[victim].ip);
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            // A refusal must name the host and the cause.
            let recap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let failed: Vec<String> = masters.iter().filter(|ip| recap["hosts"][ip.as_str()]["failed"].as_u64().unwrap_or(0) > 0).cloned().collect();
            assert!(!failed.is_empty(), "the run failed without naming a host:\n{output}");
            for ip in &failed {
                let e = recap["hosts"][ip.as_str()]["errors"].to_string();
                assert!(e.contains("kube-apiserver"), "{ip}: the cause is not named: {e}");
            }
            println!("  the run stopped ({code}): {failed:?}");
        } else {
            println!("  the run finished despite the kill");
        }
        for &i in &MASTERS {
            assert_eq!(lab.sh(i, "find /etc/systemd/system -name '.ezk-tmp.*' | wc -l"), "0");
        }
        if code == 0 {
            // The kill may land after ezk's turn on the victim: then systemd's own restart
            // (RestartSec) brings the apiserver back, and the scheduler, which exits when it
            // loses its lease; a run while they wait for it would start them itself. Converged
            // means: once systemd has done its part, the next run changes nothing.
            wait_active(lab, victim, &["kube-apiserver", "kube-controller-manager", "kube-scheduler"], 90);
        }
        let r = setup_ok(lab, "04", &["-e", FLAG]);
        if code == 0 {
            assert_converged(&r, &masters);
        }
        flag_everywhere(lab, true);
        assert_converged(&setup_ok(lab, "04", &["-e", FLAG]), &masters);
        wait_api_ready(lab, 60);
        // The killed one runs again (systemd's restart, or ezk's).
        assert_ne!(main_pid(lab, victim, "kube-apiserver"), killed_pid);
    });
}

/// Etcd loses a member while `setup 04` (back to the inventory's flags) restarts the
/// apiservers one at a time: the third host's etcd is stopped once the run has begun. Two of
/// three members keep the quorum: the apiservers restart against them and the run finishes;
/// the API answers through the VIP. `setup 02` then brings the member back (a start, nothing
/// else), the cluster is healthy with all three, and runs of 02 and 04 change nothing.
fn etcd_member_lost_during_a_run(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let masters = master_ips(lab);
        let etcd: Vec<String> = masters.clone();
        let lost = MASTERS[2];
        let first_pid = main_pid(lab, MASTERS[0], "kube-apiserver");
        let mut watcher = lab
            .ssh_cmd(MASTERS[0])
            .arg(format!("for n in $(seq 1 3000); do p=$(systemctl show -p MainPID --value kube-apiserver); [ \"$p\" != {first_pid} ] && exit 0; sleep 0.1; done; exit 1"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let child = crate::common::ezk::command(&lab.home).args(["setup", &lab.name, "04", "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let seen = watcher.wait().unwrap().success();
        if seen {
            lab.sh(lost, "systemctl stop etcd");
        }
        let out = child.wait_with_output().unwrap();
        let output = text(&out);
        assert!(seen, "the first apiserver was never restarted (was the flag on?):\n{output}");
        assert_eq!(out.status.code(), Some(0), "a run with 2 of 3 etcd members failed:\n{output}");
        assert_eq!(lab.sh(lost, "systemctl is-active etcd || true"), "inactive", "the member came back by itself");
        flag_everywhere(lab, false);
        wait_api_ready(lab, 60);
        // The member back: 02 starts it and changes nothing else.
        let r = setup_ok(lab, "02", &[]);
        let lost_ip = &lab.hosts[lost].ip;
        assert!(r.count(lost_ip, "changed") >= 1, "the lost member was not started:\n{}", r.output);
        for ip in etcd.iter().filter(|ip| *ip != lost_ip) {
            assert_eq!(r.count(ip, "changed"), 0, "{}", r.output);
        }
        assert_cluster_healthy(lab, &lab.hosts[0].ip, &etcd, 90);
        assert_converged(&setup_ok(lab, "02", &[]), &etcd);
        assert_converged(&setup_ok(lab, "04", &[]), &masters);
    });
}
