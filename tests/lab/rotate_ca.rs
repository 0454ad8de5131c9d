//! `ezk rotate-ca <c> etcd` on the Kubernetes lab (ezk built it: an etcd CA of its own, etcd on
//! the three masters, an apiserver on each): the API through the VIP and an etcd client
//! (this machine's trust file, kept by ezk, with the old client certificate until phase 2 has
//! handed out the new one) read all along: no API request fails but for kube-apiserver passing on
//! etcd's "leader changed" (at most once per leader change), and no etcd probe but for a write
//! in flight on a member going down or during the leader hand-over
//! (at most once per member restart, never two in a row, never a refusal: `assert_no_outage`); in each phase the members
//! and then the apiservers restart one at a time; a re-run restarts nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::kube_master::{MASTERS, ensure_control_plane};
use crate::steps_support::{leader_endpoint, raft_term_in, text};
use crate::support::{poll_vip, with_cluster_lab};
use crate::takeover::{ClientFiles, assert_no_outage, certs_in, client, prober, unit_restarted_one_at_a_time, unit_times};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "rotate_ca::etcd_ca_is_rotated_under_the_api",
    run: etcd_ca_is_rotated_under_the_api,
}];

fn times(lab: &Lab, unit: &str) -> Vec<(u64, u64)> {
    MASTERS.iter().map(|&i| unit_times(lab, i, unit)).collect()
}

/// Which of `ips` leads etcd (asked through `files`).
fn leader(files: &ClientFiles, ips: &[String]) -> usize {
    let out = client(&files.lock().unwrap(), ips, &["endpoint", "status", "-w", "json"]);
    assert!(out.status.success(), "endpoint status: {}", text(&out));
    let ep = leader_endpoint(&out).expect("a member that leads");
    ips.iter().position(|ip| ep == format!("https://{ip}:2379")).expect("the leader is one of the masters")
}

/// The member that led when the phase began restarted after the others (etcd's
/// `restart_last_if`): the leadership moved once, to a member already restarted.
fn leader_went_last(restarts: &[(u64, u64)], lead: usize, what: &str) {
    let last = restarts.iter().map(|t| t.0).max().unwrap();
    assert_eq!(restarts[lead].0, last, "{what}: the leader (master {lead}) did not restart last: {restarts:?}");
}

fn etcd_ca_is_rotated_under_the_api(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let ssl = lab.cluster_dir().join("ssl");
        let ips: Vec<String> = MASTERS.iter().map(|&i| lab.hosts[i].ip.clone()).collect();
        let old_ca = std::fs::read_to_string(ssl.join("etcd-ca.pem")).unwrap();
        let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--plan"]);
        let plan = text(&out);
        assert!(out.status.success(), "{plan}");
        for &i in &MASTERS {
            let ip = &lab.hosts[i].ip;
            assert!(plan.contains(&format!("    {ip}: apiserver-etcd-ca.pem: the old CA → the old + the new CA; kube-apiserver restarts")), "{plan}");
        }
        assert!(!plan.contains("gives etcd a CA of its own"), "{plan}");

        // The old client certificate, as a client outside ezk keeps it.
        let work = tempfile::tempdir().unwrap();
        for f in ["etcd-client.pem", "etcd-client-key.pem"] {
            std::fs::copy(ssl.join(f), work.path().join(f)).unwrap();
        }
        let files: ClientFiles = Arc::new(Mutex::new((ssl.join("etcd-trust.pem"), work.path().join("etcd-client.pem"), work.path().join("etcd-client-key.pem"))));
        let stop = Arc::new(AtomicBool::new(false));
        let term = |files: &ClientFiles| raft_term_in(&client(&files.lock().unwrap(), &ips, &["endpoint", "status", "-w", "json"]));
        let term0 = term(&files);
        let vip = poll_vip(lab, stop.clone());
        let etcd = prober(files.clone(), ips.clone(), stop.clone());
        let started = Instant::now();

        let (e0, a0) = (times(lab, "etcd"), times(lab, "kube-apiserver"));
        let lead = leader(&files, &ips);
        let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes", "--until", "1"]);
        assert!(out.status.success(), "{}", text(&out));
        let e1 = unit_restarted_one_at_a_time(lab, &MASTERS, "etcd", &e0, "phase 1");
        leader_went_last(&e1, lead, "phase 1");
        let a1 = unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a0, "phase 1");
        assert!(e1.iter().max().unwrap().1 < a1.iter().min().unwrap().0, "an apiserver restarted before the last member: {e1:?} {a1:?}");
        for &i in &MASTERS {
            assert_eq!(certs_in(&lab.sh(i, "cat /etc/kubernetes/ssl/etcd-ca.pem")), 2, "host {i}");
            assert_eq!(certs_in(&lab.sh(i, "cat /etc/kubernetes/ssl/apiserver-etcd-ca.pem")), 2, "host {i}");
        }

        let lead = leader(&files, &ips);
        let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes", "--until", "2"]);
        assert!(out.status.success(), "{}", text(&out));
        let e2 = unit_restarted_one_at_a_time(lab, &MASTERS, "etcd", &e1, "phase 2");
        leader_went_last(&e2, lead, "phase 2");
        let a2 = unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a1, "phase 2");
        {
            let mut f = files.lock().unwrap();
            f.1 = ssl.join("etcd-client.pem");
            f.2 = ssl.join("etcd-client-key.pem");
        }

        let lead = leader(&files, &ips);
        let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        let e3 = unit_restarted_one_at_a_time(lab, &MASTERS, "etcd", &e2, "phase 3");
        leader_went_last(&e3, lead, "phase 3");
        unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a2, "phase 3");
        std::thread::sleep(std::time::Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        let api = vip.join().unwrap();
        let (probes, failures) = etcd.join().unwrap();
        let changes = term(&files) - term0;
        println!(
            "  etcd CA rotated in {:.0}s: {} reads through the VIP ({}), {probes} etcd writes+reads ({} timed out: {failures:?}); {changes} leader change(s)",
            started.elapsed().as_secs_f64(),
            api.n,
            api.summary(),
            failures.len()
        );
        api.assert_served("the etcd CA rotation", changes);
        // Three phases, each restarting every member.
        assert_no_outage(&failures, probes, 3 * MASTERS.len());
        let new_ca = std::fs::read_to_string(ssl.join("etcd-ca.pem")).unwrap();
        assert_ne!(new_ca, old_ca);
        for &i in &MASTERS {
            assert_eq!(lab.sh(i, "cat /etc/kubernetes/ssl/etcd-ca.pem").trim(), new_ca.trim(), "host {i}");
            assert_eq!(lab.sh(i, "cat /etc/kubernetes/ssl/apiserver-etcd-ca.pem").trim(), new_ca.trim(), "host {i}");
        }
        // The old client certificate is refused now.
        let old = (ssl.join("etcd-ca.pem"), work.path().join("etcd-client.pem"), work.path().join("etcd-client-key.pem"));
        assert!(!client(&old, &ips, &["get", "/x"]).status.success(), "the old CA's certificate is still accepted");

        let (e3, a3) = (times(lab, "etcd"), times(lab, "kube-apiserver"));
        let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes"]);
        assert!(out.status.success() && text(&out).contains("nothing to do"), "{}", text(&out));
        assert_eq!((times(lab, "etcd"), times(lab, "kube-apiserver")), (e3, a3), "a re-run restarted something");
    });
}
