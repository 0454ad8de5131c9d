//! add-master and del-master on the Kubernetes lab (after day2, which leaves the spare host as
//! it found it): the spare host joins as a fourth master whose apiserver certificate names it,
//! every kube-lb and the ex-lb take it in by a reload, and it leaves again the same way — with
//! the API read through the VIP all along, no request failing. No old apiserver, etcd, kubelet,
//! kube-proxy, kube-lb or haproxy restarts; the inventory ends as it began.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::day2::{changed, hosts_of, spare, spare_sh, step};
use crate::kube_master::{MASTERS, WORKERS, ensure_control_plane};
use crate::kube_node::wait_all_ready;
use crate::steps_support::{ezk_json, text};
use crate::support::{json_docs, kubectl_ok, node_registered, poll_vip, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "day2_master::add_master_then_del_master_keep_the_vip_answering",
    run: add_master_then_del_master_keep_the_vip_answering,
}];

/// Services that must keep running (same InvocationID) on the old hosts: kube-lb and haproxy
/// are reloaded, never restarted.
const KEEP_RUNNING: &str = "kubelet kube-proxy etcd kube-apiserver kube-lb haproxy";

fn invocations(lab: &Lab) -> Vec<String> {
    (0..lab.hosts.len())
        .map(|i| lab.sh(i, &format!("for u in {KEEP_RUNNING}; do echo $u=$(systemctl show -p InvocationID --value $u); done")))
        .collect()
}

/// The `[kube_master]` section's host lines.
fn kube_master_lines(inv: &str) -> Vec<String> {
    inv.lines()
        .skip_while(|l| l.trim() != "[kube_master]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(String::from)
        .collect()
}

/// Does every node's kube-lb and every ex_lb host's haproxy list `ip` as a backend?
fn lbs_list(lab: &Lab, ip: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for i in 0..lab.hosts.len() {
        let n = lab.sh(i, &format!("grep -c '{ip}:6443' /etc/kube-lb/kube-lb.conf || true"));
        out.push((format!("{} kube-lb", lab.hosts[i].name), n != "0"));
    }
    for &i in &WORKERS {
        let n = lab.sh(i, &format!("grep -c '{ip}:6443' /etc/haproxy/haproxy.cfg || true"));
        out.push((format!("{} haproxy", lab.hosts[i].name), n != "0"));
    }
    out
}

fn add_master_then_del_master_keep_the_vip_answering(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 180);
        let new = spare(lab);
        assert!(!node_registered(lab, &new.name), "{} is a node before add-master", new.name);
        let inv_before = lab.inventory();
        let ids_before = invocations(lab);

        // Bad input: refused before any host is contacted, nothing written.
        let out = lab.ezk(&["add-master", &lab.name, "not-an-ip"]);
        assert!(!out.status.success() && text(&out).contains("IP address"), "{}", text(&out));
        let worker = &lab.hosts[WORKERS[0]].ip;
        let out = lab.ezk(&["add-master", &lab.name, worker]);
        assert!(!out.status.success() && text(&out).contains("[kube_node]"), "{}", text(&out));
        let out = lab.ezk(&["del-master", &lab.name, &new.ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("not in [kube_master]"), "{}", text(&out));
        // A master that is an etcd member too is refused (the clean would stop its etcd).
        let out = lab.ezk(&["del-master", &lab.name, &lab.hosts[MASTERS[0]].ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("[etcd]"), "{}", text(&out));
        // The last master is refused: a copy of the inventory with one master left.
        let one = lab.home.join("clusters/one-master");
        std::fs::create_dir_all(&one).unwrap();
        std::fs::copy(lab.cluster_dir().join("config.yml"), one.join("config.yml")).unwrap();
        let mut single = String::new();
        let mut in_masters = false;
        for l in inv_before.lines() {
            if l.trim_start().starts_with('[') {
                in_masters = l.trim() == "[kube_master]";
            } else if in_masters && MASTERS[1..].iter().any(|&i| l.split_whitespace().next() == Some(lab.hosts[i].ip.as_str())) {
                continue;
            }
            single.push_str(l);
            single.push('\n');
        }
        std::fs::write(one.join("hosts"), single).unwrap();
        let out = lab.ezk(&["del-master", "one-master", &lab.hosts[MASTERS[0]].ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("last master"), "{}", text(&out));
        std::fs::remove_dir_all(&one).unwrap();
        assert_eq!(lab.inventory(), inv_before);

        // --plan: the new master's control plane shown, nothing written, nothing started.
        let p = ezk_json(lab, &["add-master", &lab.name, &new.ip, &format!("k8s_nodename={}", new.name), "--plan"]);
        assert_eq!(p.code, 0, "{}", p.output);
        assert!(p.plan(&new.ip).iter().any(|l| l.contains("/opt/kube/bin/kube-apiserver")), "{}", p.output);
        assert_eq!(lab.inventory(), inv_before, "--plan wrote the inventory");
        assert_eq!(spare_sh(lab, "systemctl is-active kube-apiserver || true"), "inactive");

        // add-master, the API read through the VIP throughout.
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        let r = ezk_json(lab, &["add-master", &lab.name, &new.ip, &format!("k8s_nodename={}", new.name)]);
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let n = api.n;
        assert_eq!(r.code, 0, "add-master failed:\n{}", r.output);
        assert!(n >= 20, "only {n} requests through the VIP during add-master");
        api.assert_served("add-master", 0, 0);
        println!("  add-master: {:.1}s, {n} reads through the VIP, none failed", r.secs);

        // The inventory: one line more, at the end of [kube_master], the rest as it was.
        let inv = lab.inventory();
        let line = format!("{} k8s_nodename={}", new.ip, new.name);
        assert_eq!(kube_master_lines(&inv).last(), Some(&line), "{inv}");
        assert_eq!(inv.replacen(&format!("{line}\n"), "", 1), inv_before);

        // Which hosts each step reached: the control plane and runtime on the new host only;
        // the LBs everywhere, changed by their config alone (kube-lb.conf + its reload;
        // haproxy.cfg + its reload).
        for s in ["03.runtime", "04.kube-master"] {
            assert_eq!(hosts_of(step(&r, s)), vec![new.ip.clone()], "{s}:\n{}", r.output);
        }
        let first_master = &lab.hosts[MASTERS[0]].ip;
        for h in &lab.hosts {
            let c = changed(step(&r, "05.kube-node"), &h.ip);
            let most = if &h.ip == first_master { 4 } else { 2 };
            assert!((1..=most).contains(&c), "05 changed {c} on {}:\n{}", h.ip, r.output);
        }
        for &i in &WORKERS {
            assert_eq!(changed(step(&r, "10.ex-lb"), &lab.hosts[i].ip), 2, "10 on host {i}:\n{}", r.output);
        }
        assert_eq!(invocations(lab), ids_before, "a service restarted on an old host");
        for (what, listed) in lbs_list(lab, &new.ip) {
            assert!(listed, "{what} does not list the new master");
        }

        // The new master: its apiserver certificate names it, it answers, it is a Ready
        // control-plane node.
        let sans = spare_sh(lab, "openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/ssl/kubernetes.pem");
        assert!(sans.contains(&format!("IP Address:{}", new.ip)), "{sans}");
        let direct = kubectl_ok(lab, &["--server", &format!("https://{}:6443", new.ip), "get", "--raw", "/readyz"]);
        assert_eq!(direct, "ok");
        wait_all_ready(lab, 180);
        let labels = kubectl_ok(lab, &["get", "node", &new.name, "-o", "jsonpath={.metadata.labels}"]);
        assert!(labels.contains("\"node-role.kubernetes.io/control-plane\""), "{labels}");

        // Again: converges, changes nothing anywhere.
        let again = ezk_json(lab, &["add-master", &lab.name, &new.ip]);
        assert_eq!(again.code, 0, "{}", again.output);
        assert_eq!(lab.inventory(), inv);
        for ip in lab.hosts.iter().map(|h| &h.ip).chain([&new.ip]) {
            assert_eq!(again.count(ip, "changed"), 0, "re-run changed {ip}:\n{}", again.output);
        }

        // del-master: off a terminal it needs --yes; --plan changes nothing.
        let out = lab.ezk(&["del-master", &lab.name, &new.ip]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        let out = lab.ezk(&["del-master", &lab.name, &new.ip, "--plan"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(lab.inventory(), inv, "--plan wrote the inventory");
        assert_eq!(spare_sh(lab, "systemctl is-active kube-apiserver || true"), "active");

        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        let out = lab.ezk(&["del-master", &lab.name, &new.ip, "--yes", "--json"]);
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let n = api.n;
        assert!(out.status.success(), "del-master failed:\n{}", text(&out));
        assert!(n >= 20, "only {n} requests through the VIP during del-master");
        api.assert_served("del-master", 0, 0);
        println!("  del-master: {n} reads through the VIP, none failed");
        // Three runs: the others' LBs, the host's clean, the others' lists.
        let docs = json_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 3, "{}", text(&out));
        assert_eq!(docs[1]["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&new.ip]);
        for d in [&docs[0], &docs[2]] {
            for s in d["steps"].as_array().unwrap() {
                assert!(s["hosts"].get(&new.ip).is_none(), "{} reached the removed host", s["step"]);
            }
        }

        // Gone: from the API, the LBs, the inventory (as it began), the routes; nothing of the
        // cluster runs on it; nothing restarted on the old hosts.
        assert!(!node_registered(lab, &new.name));
        for (what, listed) in lbs_list(lab, &new.ip) {
            assert!(!listed, "{what} still lists the removed master");
        }
        assert_eq!(lab.inventory(), inv_before);
        assert_eq!(spare_sh(lab, "pgrep -x kube-apiserver; pgrep -x kubelet; pgrep -x containerd"), "");
        assert_eq!(spare_sh(lab, "ls /etc/kubernetes/ssl /var/lib/kubelet 2>/dev/null | wc -l"), "0");
        for i in 0..lab.hosts.len() {
            let routes = lab.sh(i, "ip route");
            assert!(!routes.contains(&format!("via {}", new.ip)), "host {i}:\n{routes}");
        }
        assert_eq!(invocations(lab), ids_before, "a service restarted on an old host");
        wait_all_ready(lab, 60);

        // Again: nothing to remove, said so.
        let out = lab.ezk(&["del-master", &lab.name, &new.ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("not in [kube_master]"), "{}", text(&out));
    });
}
