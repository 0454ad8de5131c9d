//! `ezk upgrade` on the Kubernetes lab (after day2_master), between the lab's two builds of
//! Kubernetes v1.20.2: `lab-debian` (stamped v1.20.2) and `lab-debian-next` (the same source
//! and recipe, stamped v1.20.2+lab.1; both in the machine's build cache, tests/deps.sh). What is
//! tested is the mechanics: the masters one at a time, then the workers; each node cordoned,
//! drained (its pods move) and uncordoned, Ready at the new version before the next; a run
//! killed with SIGKILL halfway, then a re-run that goes on from there; a re-run after success
//! that touches nothing; all with the API read through the VIP and no request failing. The lab
//! ends as it began: upgraded back to lab-debian (two workers at a time), K8S_VER as it was.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::kube_master::{MASTERS, WORKERS, ensure_control_plane, stop_and_ready};
use crate::kube_node::wait_all_ready;
use crate::steps_support::text;
use crate::support::{json_docs, kubectl, kubectl_ok, poll_vip, wait_for, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "upgrade::refusals_and_plan_touch_nothing", run: refusals_and_plan_touch_nothing },
    Test { name: "upgrade::masters_then_nodes_and_a_killed_run_goes_on", run: masters_then_nodes_and_a_killed_run_goes_on },
    Test { name: "upgrade::a_rerun_changes_nothing_and_back_two_nodes_at_a_time", run: a_rerun_changes_nothing_and_back_two_nodes_at_a_time },
];

const OLD: &str = "v1.20.2";
const NEW: &str = "v1.20.2+lab.1";

/// The second lab set in the lab's store (from the machine's build cache).
fn fill_next(lab: &Lab) {
    let out = lab.ezk(&["download", "--k8s-ver", "lab-debian-next", "--from-apt"]);
    assert!(out.status.success(), "download lab-debian-next:\n{}", text(&out));
}

/// Node name → (unschedulable, the upgrade's annotation).
fn cordons(lab: &Lab) -> BTreeMap<String, (bool, String)> {
    let out = kubectl(lab)
        .args(["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}{"|"}{.spec.unschedulable}{"|"}{.metadata.annotations.ezk\.io/upgrade-cordoned}{"\n"}{end}"#])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split('|');
            Some((w.next()?.to_string(), (w.next()? == "true", w.next().unwrap_or("").to_string())))
        })
        .collect()
}

/// Node name → "Ready kubeletVersion".
fn node_versions(lab: &Lab) -> BTreeMap<String, String> {
    kubectl_ok(lab, &["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.nodeInfo.kubeletVersion}{"\n"}{end}"#])
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, v)| (n.to_string(), v.to_string())))
        .collect()
}

/// Every Kubernetes binary on host `i`, as it says its version.
fn binary_versions(lab: &Lab, i: usize) -> Vec<String> {
    let mut bins = vec!["kubelet --version", "kube-proxy --version", "kubectl version --client --short"];
    if MASTERS.contains(&i) {
        bins.extend(["kube-apiserver --version", "kube-controller-manager --version", "kube-scheduler --version"]);
    }
    bins.iter().map(|b| lab.sh(i, &format!("/opt/kube/bin/{b} 2>&1 | tail -n 1"))).collect()
}

fn assert_at(lab: &Lab, version: &str) {
    for (node, v) in node_versions(lab) {
        if lab.hosts.iter().any(|h| h.name == node) {
            assert_eq!(v, format!("True {version}"), "node {node}");
        }
    }
    for i in 0..lab.hosts.len() {
        for v in binary_versions(lab, i) {
            assert!(v.ends_with(&format!(": {version}")) || v.ends_with(&format!(" {version}")), "host {i}: {v}");
        }
    }
    let api: Value = serde_json::from_str(&kubectl_ok(lab, &["get", "--raw", "/version"])).unwrap();
    assert_eq!(api["gitVersion"], version);
}

/// Watches the nodes' cordons until `stop`: the order in which nodes were first seen cordoned,
/// and the most nodes seen cordoned at once.
fn watch_cordons(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    let lab_kubectl = lab.home.join("down/bin/kubernetes-server/1.20.2/kubectl");
    let kc = lab.cluster_dir().join("kubectl.kubeconfig");
    std::thread::spawn(move || {
        let (mut order, mut most) = (Vec::<String>::new(), 0);
        while !stop.load(Ordering::SeqCst) {
            let out = std::process::Command::new(&lab_kubectl)
                .arg("--kubeconfig")
                .arg(&kc)
                .args(["--request-timeout=5s", "get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}{"|"}{.spec.unschedulable}{"\n"}{end}"#])
                .output()
                .unwrap();
            let cordoned: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_suffix("|true").map(String::from))
                .collect();
            most = most.max(cordoned.len());
            for n in cordoned {
                if !order.contains(&n) {
                    order.push(n);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        (order, most)
    })
}

/// Two replicas of a pod that tolerates no taint: on the workers, moved by their drains.
const CANARY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: ezk-upgrade-canary, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: ezk-upgrade-canary}}
  template:
    metadata: {labels: {app: ezk-upgrade-canary}}
    spec:
      containers:
      - name: c
        image: ezk.local/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "exec sleep 100000"]
"#;

/// The canary's running pods' names.
fn canary_pods(lab: &Lab) -> Vec<String> {
    let out = kubectl_ok(lab, &["get", "pods", "-l", "app=ezk-upgrade-canary", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"]);
    let mut v: Vec<String> = out.split_whitespace().map(String::from).collect();
    v.sort();
    v
}

fn refusals_and_plan_touch_nothing(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 180);
        fill_next(lab);
        let inv = lab.inventory();
        let config = std::fs::read_to_string(lab.cluster_dir().join("config.yml")).unwrap();
        let untouched = |what: &str| {
            assert_eq!(lab.inventory(), inv, "{what}: the inventory changed");
            assert_eq!(std::fs::read_to_string(lab.cluster_dir().join("config.yml")).unwrap(), config, "{what}: config.yml changed");
            assert!(cordons(lab).values().all(|(c, a)| !c && a.is_empty()), "{what}: a node was cordoned: {:?}", cordons(lab));
        };
        // Not a terminal, no --yes.
        let out = lab.ezk(&["upgrade", &lab.name, "--to", "lab-debian-next"]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        untouched("no --yes");
        // A skip of minors (1.20 → 1.34), an unknown version, -e K8S_VER.
        let out = lab.ezk(&["upgrade", &lab.name, "--to", "v1.34.7", "--yes"]);
        assert!(!out.status.success() && text(&out).contains("skips 1.21"), "{}", text(&out));
        untouched("a skip");
        let out = lab.ezk(&["upgrade", &lab.name, "--to", "no-such-set", "--yes"]);
        assert!(!out.status.success() && text(&out).contains("lab-debian-next"), "{}", text(&out));
        let out = lab.ezk(&["upgrade", &lab.name, "--yes", "-e", "K8S_VER=lab-debian-next"]);
        assert!(!out.status.success() && text(&out).contains("--to"), "{}", text(&out));
        untouched("refusals");
        // At the inventory's own version: nothing to do on any host.
        let out = lab.ezk(&["upgrade", &lab.name, "--yes", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let doc = &json_docs(&String::from_utf8_lossy(&out.stdout))[0];
        assert!(doc["hosts"].as_array().unwrap().iter().all(|h| h["action"] == "at target"), "{doc}");
        // --plan: the order, and per host the binaries that change; nothing changes.
        let out = lab.ezk(&["upgrade", &lab.name, "--to", "lab-debian-next", "--plan"]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("would set K8S_VER to lab-debian-next"), "{t}");
        let heads: Vec<&str> = t.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(heads.len(), 5, "{t}");
        for (k, &i) in MASTERS.iter().chain(WORKERS.iter()).enumerate() {
            let role = if MASTERS.contains(&i) { "master" } else { "node" };
            let h = &lab.hosts[i];
            assert!(heads[k].starts_with(&format!("[{}/5] {role} {} ({})", k + 1, h.name, h.ip)), "{}", heads[k]);
            assert!(heads[k].contains("would cordon, drain"), "{}", heads[k]);
        }
        for bin in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"] {
            assert!(t.contains(&format!("/opt/kube/bin/{bin}")), "{bin} not in the plan:\n{t}");
        }
        untouched("--plan");
    });
}

fn masters_then_nodes_and_a_killed_run_goes_on(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 180);
        fill_next(lab);
        let inv = lab.inventory();
        assert!(inv.contains("K8S_VER=\"lab-debian\""), "{inv}");
        assert_at(lab, OLD);
        let mut apply = kubectl(lab);
        apply.args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = apply.spawn().unwrap();
        child.stdin.take().unwrap().write_all(CANARY.as_bytes()).unwrap();
        assert!(child.wait_with_output().unwrap().status.success());
        let canary = wait_for(120, "two canary pods running", || Some(canary_pods(lab)).filter(|p| p.len() == 2));

        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        let watcher = watch_cordons(lab, stop.clone());

        // The first run, killed (SIGKILL) once the second master is cordoned.
        let second = lab.hosts[MASTERS[1]].name.clone();
        let mut first = crate::common::ezk::command(&lab.home)
            .args(["upgrade", &lab.name, "--to", "lab-debian-next", "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(600, "the second master cordoned by the upgrade", || {
            if let Ok(Some(status)) = first.try_wait() {
                panic!("the upgrade ended ({status}) before it reached the second master");
            }
            cordons(lab).get(&second).filter(|(c, a)| *c && a == NEW).map(|_| ())
        });
        std::thread::sleep(Duration::from_secs(3));
        first.kill().unwrap();
        first.wait().unwrap();
        // The first master is done and Ready; the second is cordoned by the upgrade; the
        // workers are as they were. K8S_VER was recorded before any host was touched.
        let v = node_versions(lab);
        assert_eq!(v[&lab.hosts[MASTERS[0]].name], format!("True {NEW}"), "{v:?}");
        for &w in &WORKERS {
            assert_eq!(v[&lab.hosts[w].name], format!("True {OLD}"), "{v:?}");
        }
        assert_eq!(cordons(lab)[&second], (true, NEW.to_string()));
        assert!(lab.inventory().contains("K8S_VER=\"lab-debian-next\""), "{}", lab.inventory());

        // The re-run, with no --to: the recorded K8S_VER; it goes on from the second master.
        let out = lab.ezk(&["upgrade", &lab.name, "--yes", "--json"]);
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let (order, most) = watcher.join().unwrap();
        assert!(out.status.success(), "re-run failed:\n{}", text(&out));
        let doc = &json_docs(&String::from_utf8_lossy(&out.stdout))[0];
        let hosts = doc["hosts"].as_array().unwrap();
        let expect: Vec<usize> = MASTERS.iter().chain(WORKERS.iter()).copied().collect();
        assert_eq!(hosts.iter().map(|h| h["host"].as_str().unwrap().to_string()).collect::<Vec<_>>(), expect.iter().map(|&i| lab.hosts[i].ip.clone()).collect::<Vec<_>>(), "{doc}");
        assert_eq!(hosts[0]["action"], "at target", "{doc}");
        assert!(hosts[1]["action"] == "upgraded" || hosts[1]["action"] == "uncordoned", "{doc}");
        for h in &hosts[2..] {
            assert_eq!(h["action"], "upgraded", "{doc}");
            assert!(h["changed"].as_u64().unwrap() > 0, "{doc}");
        }

        // The API through the VIP answered every request, the whole time.
        assert!(api.n >= 50, "only {} requests", api.n);
        api.assert_served("the upgrade", 0, 0);
        // Cordoned one at a time, masters first, in order; all uncordoned at the end.
        let names: Vec<String> = expect.iter().map(|&i| lab.hosts[i].name.clone()).collect();
        assert_eq!(order, names, "first cordon of each node, in order");
        assert_eq!(most, 1, "nodes cordoned at once");
        assert!(cordons(lab).values().all(|(c, a)| !c && a.is_empty()), "{:?}", cordons(lab));
        // Restarts in that order too (systemd's own clock): each apiserver stopped after the
        // previous one was ready again, every master's kubelet up before a worker's stopped.
        let mut windows: Vec<(u64, u64)> = MASTERS.iter().map(|&i| stop_and_ready(lab, i, "kube-apiserver")).collect();
        windows.sort();
        for w in windows.windows(2) {
            assert!(w[1].0 > w[0].1, "apiserver restarts overlap: {windows:?}");
        }
        let masters_up = MASTERS.iter().map(|&i| stop_and_ready(lab, i, "kubelet").1).max().unwrap();
        for &w in &WORKERS {
            assert!(stop_and_ready(lab, w, "kubelet").0 > masters_up, "worker {w}'s kubelet restarted before the masters were done");
        }
        // Every binary and node at the new stamp; drained: the canary's pods are new ones.
        assert_at(lab, NEW);
        wait_all_ready(lab, 60);
        let now = wait_for(120, "two canary pods running", || Some(canary_pods(lab)).filter(|p| p.len() == 2));
        assert!(now.iter().all(|p| !canary.contains(p)), "pods not moved by the drains: {canary:?} → {now:?}");
        kubectl_ok(lab, &["delete", "deployment", "ezk-upgrade-canary"]);
        // K8S_VER recorded where the inventory set it; nothing else in the file changed.
        assert_eq!(lab.inventory(), inv.replace("K8S_VER=\"lab-debian\"", "K8S_VER=\"lab-debian-next\""));
    });
}

fn a_rerun_changes_nothing_and_back_two_nodes_at_a_time(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let inv = lab.inventory();
        if !inv.contains("K8S_VER=\"lab-debian-next\"") {
            // The previous test did not get there: nothing to go back from.
            panic!("the cluster is not at lab-debian-next (upgrade::masters_then_nodes… failed?)");
        }
        let ids = |i: usize| lab.sh(i, "for u in kubelet kube-proxy kube-apiserver; do systemctl show -p InvocationID --value $u; done");
        let before: Vec<String> = (0..lab.hosts.len()).map(ids).collect();
        let out = lab.ezk(&["upgrade", &lab.name, "--yes", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let doc = &json_docs(&String::from_utf8_lossy(&out.stdout))[0];
        assert!(doc["hosts"].as_array().unwrap().iter().all(|h| h["action"] == "at target" && h["changed"] == 0), "{doc}");
        assert_eq!((0..lab.hosts.len()).map(ids).collect::<Vec<_>>(), before, "a service restarted on a re-run");
        assert_eq!(lab.inventory(), inv);

        // Back to lab-debian, the workers two at a time, the VIP answering all along.
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        let watcher = watch_cordons(lab, stop.clone());
        let out = lab.ezk(&["upgrade", &lab.name, "--to", "lab-debian", "--batch", "2", "--yes"]);
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let (order, most) = watcher.join().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("cluster {} is at {OLD}: 5 host(s) upgraded", lab.name)), "{}", text(&out));
        api.assert_served("the upgrade", 0, 0);
        let masters: Vec<String> = MASTERS.iter().map(|&i| lab.hosts[i].name.clone()).collect();
        assert_eq!(order[..3], masters[..], "{order:?}");
        assert_eq!(most, 2, "the two workers are one batch");
        assert_at(lab, OLD);
        wait_all_ready(lab, 60);
        assert_eq!(lab.inventory(), inv.replace("K8S_VER=\"lab-debian-next\"", "K8S_VER=\"lab-debian\""));
    });
}
