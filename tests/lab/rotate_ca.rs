//! `ezk rotate-ca <c> kubernetes` on the same lab, after it: see
//! `kubernetes_ca_is_rotated_under_the_api_and_pods` (the cluster keeps serving the tests after
//! it, on the new CA).
//!
//! `ezk rotate-ca <c> etcd` on the Kubernetes lab (ezk built it: an etcd CA of its own, etcd on
//! the three masters, an apiserver on each): the API through the VIP and an etcd client
//! (this machine's trust file, kept by ezk, with the old client certificate until phase 2 has
//! handed out the new one) read all along: no API request fails but for kube-apiserver passing on
//! etcd's "leader changed" (at most once per leader change) or a request in flight on a member
//! as it stops (at most once per member restart: `VipReads::assert_served`), and no etcd probe but for a write
//! in flight on a member going down or during the leader hand-over
//! (at most once per member restart, never two in a row, never a refusal: `assert_no_outage`); in each phase the members
//! and then the apiservers restart one at a time; a re-run restarts nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::kube_master::{MASTERS, WORKERS, ensure_control_plane};
use crate::kube_node::wait_all_ready;
use crate::steps_support::{leader_endpoint, raft_term_in, text};
use crate::support::{kubectl, kubectl_apply, kubectl_ok, poll_vip, wait_for, with_cluster_lab};
use crate::takeover::{ClientFiles, assert_no_outage, certs_in, client, prober, unit_restarted_one_at_a_time, unit_times};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "rotate_ca::etcd_ca_is_rotated_under_the_api", run: etcd_ca_is_rotated_under_the_api },
    Test { name: "rotate_ca::kubernetes_ca_is_rotated_under_the_api_and_pods", run: kubernetes_ca_is_rotated_under_the_api_and_pods },
];

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
        // Three phases, each restarting every member.
        api.assert_served("the etcd CA rotation", changes, 3 * MASTERS.len() as u64);
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

/// A pod on a worker that reads the API as in-cluster clients do (its ServiceAccount token, the
/// mounted `ca.crt`, https://kubernetes.default's ClusterIP) every 0.2 s, with the node's
/// kubectl (a static binary) mounted in: one line per read, `ok` or `FAIL <why>`.
const PROBE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ezk-ca-probe, namespace: default}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: ezk.local/busybox:1.35.0
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /tmp; while true; do sa=/var/run/secrets/kubernetes.io/serviceaccount; if /k/kubectl --kubeconfig=/dev/null --server=https://kubernetes.default --certificate-authority=$sa/ca.crt --token=$(cat $sa/token) --request-timeout=5s get --raw /api >/dev/null 2>/tmp/e; then echo ok; else echo \"FAIL $(date +%T) $(head -c 300 /tmp/e | tr '\\n' ' ')\"; fi; sleep 0.2; done"]
    volumeMounts: [{name: kubectl, mountPath: /k/kubectl, readOnly: true}]
  volumes:
  - name: kubectl
    hostPath: {path: /opt/kube/bin/kubectl, type: File}
"#;

/// The probe pod's lines so far: (reads, failures). Its kubelet may have just restarted (the
/// last phase's step 05): asked again for up to a minute.
fn probe_lines(lab: &Lab) -> (usize, Vec<String>) {
    let start = Instant::now();
    let out = loop {
        let o = kubectl(lab).args(["logs", "ezk-ca-probe"]).output().unwrap();
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).to_string();
        }
        assert!(start.elapsed().as_secs() < 60, "the probe's logs: {}", text(&o));
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    let fails: Vec<String> = out.lines().filter(|l| l.starts_with("FAIL")).map(String::from).collect();
    (out.lines().filter(|l| *l == "ok").count(), fails)
}

fn openssl_verify(lab: &Lab, ip: &str, ca: &std::path::Path) -> String {
    let _ = lab;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect {ip}:6443 -CAfile {} -verify_return_error </dev/null 2>&1 | grep -E 'Verify return code|verify error' | head -1", ca.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 21 item 2: `ezk rotate-ca <c> kubernetes` on the Kubernetes lab, phase by phase
/// (`--until`), while the admin kubeconfig on this machine reads through the VIP and a pod
/// reads the API with its ServiceAccount token and mounted ca.crt, each every 0.1-0.2 s: none
/// refused; apiservers restart one at a time in each phase; nodes stay Ready; the pods'
/// kube-root-ca.crt holds both CAs before the serving certificate changes; afterwards a client
/// certificate of the old CA is refused, the new admin kubeconfig works, the ServiceAccount
/// key and the etcd CA are what they were, and a re-run restarts nothing.
fn kubernetes_ca_is_rotated_under_the_api_and_pods(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 120);
        let ssl = lab.cluster_dir().join("ssl");
        let read = |f: &str| std::fs::read_to_string(ssl.join(f)).unwrap();
        let (old_ca, sa, etcd_ca) = (read("ca.pem"), read("sa.key"), read("etcd-ca.pem"));
        let work = tempfile::tempdir().unwrap();
        for f in ["admin.pem", "admin-key.pem", "ca.pem"] {
            std::fs::copy(ssl.join(f), work.path().join(f)).unwrap();
        }
        let out = lab.ezk(&["rotate-ca", &lab.name, "kubernetes", "--plan"]);
        let plan = text(&out);
        assert!(out.status.success(), "{plan}");
        for want in ["phase 1/3 (next)", "phase 3/3 (to do)", "sa.key", "who loses access", "kube-root-ca.crt"] {
            assert!(plan.contains(want), "the plan does not say {want:?}:\n{plan}");
        }
        for h in &lab.hosts {
            assert!(plan.contains(&format!("    {}: ", h.ip)), "{} missing from the plan:\n{plan}", h.ip);
        }
        assert!(!ssl.join("ca-new.pem").exists(), "--plan made a CA");

        // The in-cluster probe, reading before anything changes.
        let _ = kubectl(lab).args(["delete", "pod", "ezk-ca-probe", "--ignore-not-found", "--wait=true"]).output();
        let manifest = PROBE.replace("NODE", &lab.hosts[WORKERS[0]].name);
        kubectl_apply(lab, &manifest);
        let start = Instant::now();
        loop {
            let (ok, fails) = kubectl(lab).args(["logs", "ezk-ca-probe"]).output().map(|o| {
                let s = String::from_utf8_lossy(&o.stdout).to_string();
                (s.lines().filter(|l| *l == "ok").count(), s.lines().filter(|l| l.starts_with("FAIL")).count())
            }).unwrap();
            assert_eq!(fails, 0, "the probe fails before the rotation: {}", kubectl(lab).args(["logs", "ezk-ca-probe"]).output().map(|o| text(&o)).unwrap());
            if ok >= 3 {
                break;
            }
            assert!(start.elapsed().as_secs() < 90, "the probe pod does not read the API: {}", kubectl(lab).args(["describe", "pod", "ezk-ca-probe"]).output().map(|o| text(&o)).unwrap());
            std::thread::sleep(std::time::Duration::from_secs(1));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let vip = poll_vip(lab, stop.clone());
        let started = Instant::now();
        let nodes: Vec<usize> = (0..lab.hosts.len()).collect();
        let kubelets = |lab: &Lab| nodes.iter().map(|&i| unit_times(lab, i, "kubelet")).collect::<Vec<_>>();
        let (a0, k0) = (times(lab, "kube-apiserver"), kubelets(lab));

        let out = lab.ezk(&["rotate-ca", &lab.name, "kubernetes", "--yes", "--until", "1"]);
        assert!(out.status.success(), "{}", text(&out));
        let a1 = unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a0, "phase 1");
        let k1 = kubelets(lab);
        assert!(k1.iter().zip(&k0).all(|(n, b)| n.1 > b.1), "phase 1: a kubelet did not restart: {k0:?} {k1:?}");
        for &i in &nodes {
            assert_eq!(certs_in(&lab.sh(i, "cat /etc/kubernetes/ssl/ca.pem")), 2, "host {i}");
        }
        for &i in &MASTERS {
            assert_eq!(lab.sh(i, "cat /etc/kubernetes/ssl/ca-signing.pem").trim(), old_ca.trim(), "host {i}: the signing CA");
        }
        let root = kubectl_ok(lab, &["-n", "kube-system", "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]);
        assert_eq!(certs_in(&root), 2, "kube-root-ca.crt after phase 1: {root}");

        let out = lab.ezk(&["rotate-ca", &lab.name, "kubernetes", "--yes", "--until", "2"]);
        assert!(out.status.success(), "{}", text(&out));
        let a2 = unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a1, "phase 2");
        let new_ca = read("ca.pem");
        assert_ne!(new_ca, old_ca);
        let new_only = work.path().join("new-ca.pem");
        std::fs::write(&new_only, &new_ca).unwrap();
        for &i in &MASTERS {
            let v = openssl_verify(lab, &lab.hosts[i].ip, &new_only);
            assert!(v.contains("Verify return code: 0"), "master {i} serves a certificate the new CA does not verify: {v}");
        }

        let out = lab.ezk(&["rotate-ca", &lab.name, "kubernetes", "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        unit_restarted_one_at_a_time(lab, &MASTERS, "kube-apiserver", &a2, "phase 3");
        std::thread::sleep(std::time::Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        let api = vip.join().unwrap();
        let (pod_reads, pod_fails) = probe_lines(lab);
        println!(
            "  Kubernetes CA rotated in {:.0}s: {} admin reads through the VIP ({}), {pod_reads} in-cluster reads by a pod ({} failed)",
            started.elapsed().as_secs_f64(),
            api.n,
            api.summary(),
            pod_fails.len()
        );
        api.assert_served("the Kubernetes CA rotation", 0, 0);
        assert!(pod_fails.is_empty(), "{} of {} in-cluster reads failed: {:?}", pod_fails.len(), pod_reads + pod_fails.len(), &pod_fails[..pod_fails.len().min(5)]);
        assert!(pod_reads > 100, "the pod read the API only {pod_reads} times");
        wait_all_ready(lab, 60);
        for &i in &nodes {
            assert_eq!(lab.sh(i, "cat /etc/kubernetes/ssl/ca.pem").trim(), new_ca.trim(), "host {i}");
        }
        // The controller-manager that leads after phase 3's restarts publishes the new CA alone;
        // taking the lease over can take its 15 s duration, so wait for it.
        let root = || kubectl_ok(lab, &["-n", "kube-system", "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]);
        wait_for(90, "kube-root-ca.crt after phase 3 to hold the new CA alone", || (root().trim() == new_ca.trim()).then_some(()));
        // Unchanged: the ServiceAccount key, the etcd CA.
        assert_eq!(read("sa.key"), sa, "the ServiceAccount key changed");
        assert_eq!(read("etcd-ca.pem"), etcd_ca, "the etcd CA changed");
        // The old CA's admin certificate is refused; the new admin kubeconfig reads.
        let ip = &lab.hosts[MASTERS[0]].ip;
        let old = kubectl(lab)
            .arg("--kubeconfig=/dev/null")
            .args(["--server", &format!("https://{ip}:6443")])
            .arg(format!("--certificate-authority={}", new_only.display()))
            .arg(format!("--client-certificate={}", work.path().join("admin.pem").display()))
            .arg(format!("--client-key={}", work.path().join("admin-key.pem").display()))
            .args(["get", "--raw", "/api/v1/namespaces/kube-system"])
            .output()
            .unwrap();
        assert!(!old.status.success() && text(&old).contains("Unauthorized"), "the old CA's admin certificate: {}", text(&old));
        kubectl_ok(lab, &["get", "--raw", "/api/v1/namespaces/kube-system"]);

        let (a3, k3) = (times(lab, "kube-apiserver"), kubelets(lab));
        let out = lab.ezk(&["rotate-ca", &lab.name, "kubernetes", "--yes"]);
        assert!(out.status.success() && text(&out).contains("nothing to do"), "{}", text(&out));
        assert_eq!((times(lab, "kube-apiserver"), kubelets(lab)), (a3, k3), "a re-run restarted something");
        let _ = kubectl(lab).args(["delete", "pod", "ezk-ca-probe", "--ignore-not-found", "--wait=false"]).output();
    });
}
