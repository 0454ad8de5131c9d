//! Day-2 operations on the Kubernetes lab (5 hosts in the inventory and one spare host beside
//! them, `ezk lab up --spare 1`), with the real v1.20.2 binaries: `add-node` brings the spare
//! host in as a Ready node whose pods the old nodes' pods reach, changing on the old hosts only
//! what lists the nodes and restarting none of their services; `del-node` drains it (its pods
//! move), deletes it, cleans it and takes it out of the inventory and the others' routes.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::kube_master::{MASTERS, WORKERS, ensure_control_plane};
use crate::kube_node::{ensure_web, fetch_in, wait_all_ready};
use crate::steps_support::{Run, ezk_json, text};
use crate::support::{Host, json_docs, kubectl, kubectl_ok, node_registered, wait_for, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "day2::add_node_changes_only_what_lists_the_nodes", run: add_node_changes_only_what_lists_the_nodes },
    Test { name: "day2::del_node_drains_deletes_and_cleans_the_host", run: del_node_drains_deletes_and_cleans_the_host },
    Test { name: "day2::kcfg_adm_view_user_reads_only_and_a_revoked_user_is_refused", run: kcfg_adm_view_user_reads_only_and_a_revoked_user_is_refused },
    Test { name: "day2::stop_takes_everything_down_and_start_brings_the_workloads_back", run: stop_takes_everything_down_and_start_brings_the_workloads_back },
];

/// Services that must not restart on the old hosts when a node comes or goes.
const KEEP_RUNNING: &str = "kubelet kube-proxy etcd kube-apiserver";

/// Per old host, each kept service's InvocationID (changes on every start).
fn invocations(lab: &Lab) -> Vec<String> {
    (0..lab.hosts.len())
        .map(|i| lab.sh(i, &format!("for u in {KEEP_RUNNING}; do echo $u=$(systemctl show -p InvocationID --value $u); done")))
        .collect()
}

pub(crate) fn spare(lab: &Lab) -> Host {
    lab.spare.first().cloned().expect("the Kubernetes lab has a spare host")
}

/// Run `cmd` on the spare host.
pub(crate) fn spare_sh(lab: &Lab, cmd: &str) -> String {
    let h = spare(lab);
    let out = crate::support::ssh_with(&lab.key(), &lab.known_hosts(), &h.ip).arg(cmd).stdin(Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `[kube_node]` section's host lines.
fn kube_node_lines(inv: &str) -> Vec<String> {
    inv.lines()
        .skip_while(|l| l.trim() != "[kube_node]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(String::from)
        .collect()
}

/// The step recap `step` of a multi-step run.
pub(crate) fn step<'a>(r: &'a Run, step: &str) -> &'a Value {
    r.recap["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["step"] == step))
        .unwrap_or_else(|| panic!("no step {step} in the recap:\n{}", r.output))
}

pub(crate) fn changed(step: &Value, ip: &str) -> u64 {
    step["hosts"][ip]["changed"].as_u64().unwrap_or_else(|| panic!("no {ip} in {step}"))
}

pub(crate) fn hosts_of(step: &Value) -> Vec<String> {
    step["hosts"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn add_spare(lab: &Lab) -> Run {
    let h = spare(lab);
    let r = ezk_json(lab, &["add-node", &lab.name, &h.ip, &format!("k8s_nodename={}", h.name)]);
    assert_eq!(r.code, 0, "add-node failed:\n{}", r.output);
    r
}

fn add_node_changes_only_what_lists_the_nodes(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 180);
        let new = spare(lab);
        assert!(!node_registered(lab, &new.name), "{} is a node before add-node", new.name);
        let old_pods = ensure_web(lab);
        let inv_before = lab.inventory();
        let ids_before = invocations(lab);

        // Bad input: refused before any host is contacted, nothing written.
        let out = lab.ezk(&["add-node", &lab.name, "not-an-ip"]);
        assert!(!out.status.success() && text(&out).contains("IP address"), "{}", text(&out));
        let out = lab.ezk(&["add-node", &lab.name, &new.ip, "9bad=1"]);
        assert!(!out.status.success() && text(&out).contains("\"9bad\""), "{}", text(&out));
        assert_eq!(lab.inventory(), inv_before);

        // --plan: the new host's steps shown, nothing written, no node.
        let p = ezk_json(lab, &["add-node", &lab.name, &new.ip, &format!("k8s_nodename={}", new.name), "--plan"]);
        assert_eq!(p.code, 0, "{}", p.output);
        assert!(p.plan(&new.ip).iter().any(|l| l.contains("/opt/kube/bin/kubelet")), "{}", p.output);
        assert_eq!(lab.inventory(), inv_before, "--plan wrote the inventory");
        assert!(!node_registered(lab, &new.name));

        let r = add_spare(lab);
        // The inventory: one line more, at the end of [kube_node], the rest as it was.
        let inv = lab.inventory();
        let line = format!("{} k8s_nodename={}", new.ip, new.name);
        assert_eq!(kube_node_lines(&inv).last(), Some(&line), "{inv}");
        assert_eq!(inv.replacen(&format!("{line}\n"), "", 1), inv_before);

        // Which hosts each step reached, and what changed on the old ones.
        let old: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
        let first_master = &lab.hosts[MASTERS[0]].ip;
        assert_eq!(hosts_of(step(&r, "03.runtime")), vec![new.ip.clone()], "{}", r.output);
        let s05 = step(&r, "05.kube-node");
        let mut want05 = vec![first_master.clone(), new.ip.clone()];
        want05.sort();
        let mut got05 = hosts_of(s05);
        got05.sort();
        assert_eq!(got05, want05, "{}", r.output);
        // The first master labels the node: one change, nothing else.
        assert_eq!(changed(s05, first_master), 1, "{}", r.output);
        for ip in &old {
            // 01: at most the node's /etc/hosts line (the lab's hosts know each other already);
            // 06: the routes file and the one-shot that applies it.
            assert!(changed(step(&r, "01.prepare"), ip) <= 1, "01 changed more on {ip}:\n{}", r.output);
            assert_eq!(changed(step(&r, "06.network"), ip), 2, "06 on {ip}:\n{}", r.output);
        }
        assert!(changed(step(&r, "03.runtime"), &new.ip) > 5);
        assert_eq!(invocations(lab), ids_before, "a service restarted on an old host");

        // Ready with its role; every old node routes to its pods; a pod on it answers the old
        // nodes' pods.
        let ready = kubectl_ok(lab, &["get", "node", &new.name, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]);
        assert_eq!(ready, "True");
        let labels = kubectl_ok(lab, &["get", "node", &new.name, "-o", "jsonpath={.metadata.labels}"]);
        assert!(labels.contains("\"node-role.kubernetes.io/node\""), "{labels}");
        let cidr = kubectl_ok(lab, &["get", "node", &new.name, "-o", "jsonpath={.spec.podCIDR}"]);
        for i in 0..lab.hosts.len() {
            let routes = lab.sh(i, "ip route");
            assert!(routes.contains(&format!("{cidr} via {}", new.ip)), "host {i}:\n{routes}");
        }
        let (pod, ip) = wait_for(180, "the ezk-web pod on the new node", || {
            let out = kubectl(lab)
                .args(["get", "pods", "-l", "app=ezk-web", "--field-selector", &format!("spec.nodeName={}", new.name), "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.status.containerStatuses[0].ready}{end}"#])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout).to_string();
            let f: Vec<&str> = s.split_whitespace().collect();
            (f.len() == 3 && f[2] == "true").then(|| (f[0].to_string(), f[1].to_string()))
        });
        for (from, node, _) in &old_pods {
            let got = fetch_in(lab, from, &format!("http://{ip}:8080/")).unwrap_or_else(|e| panic!("{from} on {node}: {e}"));
            assert_eq!(got, pod, "from {from} on {node}");
        }

        // Again: the host is in the inventory; it converges and changes nothing.
        let again = ezk_json(lab, &["add-node", &lab.name, &new.ip]);
        assert_eq!(again.code, 0, "{}", again.output);
        assert_eq!(lab.inventory(), inv);
        for ip in old.iter().chain([&new.ip]) {
            assert_eq!(again.count(ip, "changed"), 0, "re-run changed {ip}:\n{}", again.output);
        }
    });
}

/// A Deployment whose one pod prefers node `node`.
fn mover(node: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ezk-mover, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: ezk-mover}}}}
  template:
    metadata: {{labels: {{app: ezk-mover}}}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]}}
      containers:
      - name: c
        image: ezk.local/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "exec sleep 100000"]
"#
    )
}

/// The node of the ezk-mover pod, once it runs.
fn mover_node(lab: &Lab) -> Option<String> {
    let out = kubectl(lab)
        .args(["get", "pods", "-l", "app=ezk-mover", "-o", r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    // A pod being deleted has a third field (its deletionTimestamp).
    let running: Vec<&str> = s.lines().map(str::trim_end).filter(|l| l.split_whitespace().count() == 2 && l.ends_with(" Running")).collect();
    (running.len() == 1).then(|| running[0].split_whitespace().next().unwrap().to_string())
}

fn del_node_drains_deletes_and_cleans_the_host(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let new = spare(lab);
        if !node_registered(lab, &new.name) {
            add_spare(lab);
        }
        let inv_before = lab.inventory();
        let ids_before = invocations(lab);
        let mut apply = kubectl(lab);
        apply.args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = apply.spawn().unwrap();
        child.stdin.take().unwrap().write_all(mover(&new.name).as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let on = wait_for(120, "the ezk-mover pod", || mover_node(lab));
        assert_eq!(on, new.name);

        // Not a terminal and no --yes: refused, nothing changed.
        let out = lab.ezk(&["del-node", &lab.name, &new.ip]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        assert_eq!(kubectl_ok(lab, &["get", "node", &new.name, "-o", "jsonpath={.spec.unschedulable}"]), "");
        // A master is refused.
        let out = lab.ezk(&["del-node", &lab.name, &lab.hosts[0].ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("[kube_master]"), "{}", text(&out));

        let args = ["del-node", lab.name.as_str(), new.ip.as_str(), "--yes", "--json"];
        let out = lab.ezk(&args);
        assert!(out.status.success(), "del-node failed:\n{}", text(&out));
        let docs = json_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 2, "{}", text(&out));
        // The clean ran on the node only; the others changed only their routes.
        assert_eq!(docs[0]["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&new.ip]);
        let others = &docs[1]["steps"];
        for s in others.as_array().unwrap() {
            assert!(s["hosts"].get(&new.ip).is_none(), "{} reached the removed host", s["step"]);
        }

        // Gone from the API, its pod moved, its line gone from the inventory (the rest as it
        // was), no cluster process left on it, no route to it elsewhere.
        assert!(!node_registered(lab, &new.name));
        let moved = wait_for(120, "ezk-mover rescheduled", || mover_node(lab));
        assert!(lab.hosts.iter().any(|h| h.name == moved), "moved to {moved}");
        let inv = lab.inventory();
        assert!(!inv.contains(&new.ip), "{inv}");
        assert_eq!(inv, inv_before.replacen(&format!("{} k8s_nodename={}\n", new.ip, new.name), "", 1));
        assert_eq!(spare_sh(lab, "pgrep -x kubelet; pgrep -x kube-proxy; pgrep -x containerd; pgrep -f containerd-shim"), "");
        assert_eq!(spare_sh(lab, "ls /etc/kubernetes/ssl /var/lib/kubelet 2>/dev/null | wc -l"), "0");
        for i in 0..lab.hosts.len() {
            let routes = lab.sh(i, "ip route");
            assert!(!routes.contains(&format!("via {}", new.ip)), "host {i}:\n{routes}");
        }
        assert_eq!(invocations(lab), ids_before, "a service restarted on an old host");
        wait_all_ready(lab, 60);

        // Again: nothing to remove, said so.
        let out = lab.ezk(&["del-node", &lab.name, &new.ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("not in [kube_node]"), "{}", text(&out));
        kubectl_ok(lab, &["delete", "deployment", "ezk-mover"]);
    });
}

/// kubectl (the lab's v1.20.2) with kubeconfig `kc`.
fn kubectl_as(lab: &Lab, kc: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(lab.home.join("down/bin/kubernetes-server/1.20.2/kubectl"))
        .arg("--kubeconfig")
        .arg(kc)
        .arg("--request-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn kcfg_adm_view_user_reads_only_and_a_revoked_user_is_refused(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let ezk_ok = |args: &[&str]| {
            let out = lab.ezk(args);
            assert!(out.status.success(), "ezk {args:?}:\n{}", text(&out));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        // --plan issues nothing.
        ezk_ok(&["kcfg-adm", &lab.name, "-A", "-u", "viewer", "-t", "view", "--plan"]);
        assert!(!lab.cluster_dir().join("ssl/users/viewer.kubeconfig").exists());
        // A reserved name is refused.
        let out = lab.ezk(&["kcfg-adm", &lab.name, "-A", "-u", "admin"]);
        assert!(!out.status.success() && text(&out).contains("reserved"), "{}", text(&out));

        let added: Value = serde_json::from_str(&ezk_ok(&["kcfg-adm", &lab.name, "-A", "-u", "viewer", "-t", "view", "-e", "30", "--json"])).unwrap();
        let kc = std::path::PathBuf::from(added["kubeconfig"].as_str().unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777, 0o600);
        // The certificate: CN = the name, no group, from the cluster CA, 30 days.
        let cert = lab.cluster_dir().join("ssl/users/viewer.pem");
        let x = std::process::Command::new("openssl").args(["x509", "-noout", "-subject", "-enddate", "-in"]).arg(&cert).output().unwrap();
        let x = String::from_utf8_lossy(&x.stdout).to_string();
        assert!(x.contains("subject=CN = viewer") && !x.contains("O ="), "{x}");
        let v = std::process::Command::new("openssl").arg("verify").arg("-CAfile").arg(lab.cluster_dir().join("ssl/ca.pem")).arg(&cert).output().unwrap();
        assert!(v.status.success(), "{}", text(&v));

        // view: lists pods, may not create one.
        let out = kubectl_as(lab, &kc, &["get", "pods", "-n", "kube-system", "-o", "name"]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pod/coredns"), "{}", text(&out));
        let out = kubectl_as(lab, &kc, &["run", "ezk-denied", "--image=ezk.local/pause:3.4", "--restart=Never"]);
        assert!(!out.status.success() && text(&out).contains("Forbidden"), "{}", text(&out));
        let out = kubectl_as(lab, &kc, &["get", "secrets", "-n", "kube-system"]);
        assert!(!out.status.success() && text(&out).contains("Forbidden"), "{}", text(&out));

        // An admin user may create.
        let admin: Value = serde_json::from_str(&ezk_ok(&["kcfg-adm", &lab.name, "-A", "-u", "ops", "-t", "admin", "--json"])).unwrap();
        let akc = std::path::PathBuf::from(admin["kubeconfig"].as_str().unwrap());
        let out = kubectl_as(lab, &akc, &["create", "configmap", "ezk-kcfg-test", "--from-literal=a=b"]);
        assert!(out.status.success(), "{}", text(&out));
        kubectl_ok(lab, &["delete", "configmap", "ezk-kcfg-test"]);

        // Listed with role and expiry.
        let listed: Value = serde_json::from_str(&ezk_ok(&["kcfg-adm", &lab.name, "-L", "--json"])).unwrap();
        let row = |u: &str| listed.as_array().unwrap().iter().find(|r| r["user"] == u).cloned().unwrap_or_else(|| panic!("{u} not listed: {listed}"));
        assert_eq!(row("viewer")["role"], "view");
        assert_eq!(row("ops")["role"], "cluster-admin");
        assert_eq!(row("viewer")["expires"], added["expires"]);

        // Revoked: off a terminal -D needs --yes; then the kept kubeconfig is refused.
        let copy = lab.home.join("viewer.kubeconfig");
        std::fs::copy(&kc, &copy).unwrap();
        let out = lab.ezk(&["kcfg-adm", &lab.name, "-D", "-u", "viewer"]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        ezk_ok(&["kcfg-adm", &lab.name, "-D", "-u", "viewer", "--yes"]);
        ezk_ok(&["kcfg-adm", &lab.name, "-D", "-u", "ops", "--yes"]);
        assert!(!kc.exists() && !cert.exists());
        let out = kubectl_as(lab, &copy, &["get", "pods", "-n", "kube-system"]);
        assert!(!out.status.success() && text(&out).contains("Forbidden"), "{}", text(&out));
        let listed = ezk_ok(&["kcfg-adm", &lab.name, "-L", "--json"]);
        assert_eq!(listed.trim(), "[]");
    });
}

/// `systemctl is-active` and `is-enabled` of `units` on host `i`, one word each.
fn unit_states(lab: &Lab, i: usize, units: &str) -> String {
    lab.ssh(i, &format!("systemctl is-active {units}; systemctl is-enabled {units}"))
        .stdout
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn stop_takes_everything_down_and_start_brings_the_workloads_back(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 180);
        ensure_web(lab);
        let readyz = || kubectl(lab).args(["get", "--raw", "/readyz"]).output().map(|o| o.status.success()).unwrap_or(false);

        // Off a terminal without --yes: refused. --plan: the order, and nothing stops.
        let out = lab.ezk(&["stop", &lab.name]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        let p = lab.ezk(&["stop", &lab.name, "--plan"]);
        assert!(p.status.success(), "{}", text(&p));
        let waves: Vec<String> = String::from_utf8_lossy(&p.stdout).lines().filter(|l| l.starts_with("wave ")).map(String::from).collect();
        let order: Vec<&str> = waves.iter().map(|w| w.split_whitespace().nth(2).unwrap()).collect();
        assert_eq!(order, ["stop-kube-master", "stop-etcd", "stop-ex-lb", "stop-kube-node"], "{waves:?}");
        assert!(readyz(), "--plan stopped the API");

        let r = ezk_json(lab, &["stop", &lab.name, "--yes"]);
        assert_eq!(r.code, 0, "{}", r.output);
        assert!(!readyz(), "the API answers after stop");
        for &i in &MASTERS {
            assert_eq!(unit_states(lab, i, "kube-apiserver kube-controller-manager kube-scheduler etcd kubelet kube-proxy kube-lb"), ["inactive"; 7].join(" ") + " " + &["disabled"; 7].join(" "), "host {i}");
        }
        for &i in &WORKERS {
            assert_eq!(unit_states(lab, i, "kubelet kube-proxy kube-lb keepalived haproxy"), ["inactive"; 5].join(" ") + " " + &["disabled"; 5].join(" "), "host {i}");
        }
        // Stopped again: nothing left to stop.
        let again = ezk_json(lab, &["stop", &lab.name, "--yes"]);
        assert_eq!(again.code, 0, "{}", again.output);
        for h in &lab.hosts {
            assert_eq!(again.count(&h.ip, "changed"), 0, "{}", again.output);
        }

        let s = ezk_json(lab, &["start", &lab.name]);
        assert_eq!(s.code, 0, "{}", s.output);
        assert!(readyz());
        wait_all_ready(lab, 180);
        // The workload: a pod on every node again, each reachable from the first one's pod.
        let pods = ensure_web(lab);
        let (from, _, _) = &pods[0];
        for (pod, node, ip) in &pods[1..] {
            let got = fetch_in(lab, from, &format!("http://{ip}:8080/")).unwrap_or_else(|e| panic!("{pod} on {node}: {e}"));
            assert_eq!(&got, pod);
        }
        for &i in &MASTERS {
            assert_eq!(unit_states(lab, i, "kube-apiserver etcd kubelet"), "active active active enabled enabled enabled", "host {i}");
        }
    });
}
