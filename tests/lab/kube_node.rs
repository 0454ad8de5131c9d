//! Steps 05 kube-node and 06 network on the 5-host Kubernetes lab, with the real v1.20.2
//! kubelet and kube-proxy and containerd + runc on lab hosts: every node Ready with its role,
//! labels and taints, kubelet serving certificates naming their node, pods of the locally made
//! busybox image on every node reaching each other across nodes over the host-gw routes,
//! ClusterIP and NodePort services answering from every node, logs and exec, nodes staying
//! Ready with one apiserver down, a re-run changing nothing, and destroy leaving no pod, route
//! or process behind before `setup all` builds it all again.
//!
//! kube-proxy runs in iptables mode: this machine's kernel has no IPVS (CONFIG_IP_VS is not
//! set), so the ipvs mode cannot run here; its rendered configuration is checked by the flag and
//! template tests only.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::kube_master::{MASTERS, WORKERS, ensure_control_plane};
use crate::steps_support::{assert_nothing_changed, setup_ok, text};
use crate::support::{kubectl, kubectl_apply, kubectl_ok, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "kube_node::every_node_ready_with_roles_labels_and_taints", run: every_node_ready_with_roles_labels_and_taints },
    Test { name: "kube_node::kubelet_serving_certificates_name_their_node", run: kubelet_serving_certificates_name_their_node },
    Test { name: "kube_node::pods_reach_each_other_across_nodes", run: pods_reach_each_other_across_nodes },
    Test { name: "kube_node::services_answer_from_every_node", run: services_answer_from_every_node },
    Test { name: "kube_node::logs_and_exec_work", run: logs_and_exec_work },
    Test { name: "kube_node::nodes_stay_ready_with_an_apiserver_down", run: nodes_stay_ready_with_an_apiserver_down },
    Test { name: "kube_node::rerun_of_all_changes_nothing_and_restarts_nothing", run: rerun_of_all_changes_nothing_and_restarts_nothing },
    Test { name: "kube_node::a_kube_lb_change_reloads_it_without_a_restart", run: a_kube_lb_change_reloads_it_without_a_restart },
    Test { name: "kube_node::destroy_leaves_nothing_and_setup_builds_it_again", run: destroy_leaves_nothing_and_setup_builds_it_again },
];

/// The test workload: one busybox httpd per node (a DaemonSet tolerating the masters' taint)
/// answering with its pod name, a ClusterIP and a NodePort service in front, and a headless
/// service over the same pods (cluster DNS answers with every ready pod's address).
const WEB: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ezk-web, namespace: default}
spec:
  selector: {matchLabels: {app: ezk-web}}
  template:
    metadata: {labels: {app: ezk-web}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - name: web
        image: ezk.local/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && echo serving && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ezk-web, namespace: default}
spec:
  selector: {app: ezk-web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ezk-web-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: ezk-web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ezk-web-np, namespace: default}
spec:
  type: NodePort
  selector: {app: ezk-web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"#;

fn node_names(lab: &Lab) -> Vec<String> {
    lab.hosts.iter().map(|h| h.name.clone()).collect()
}

/// Until every node reports Ready (at most `secs`).
pub fn wait_all_ready(lab: &Lab, secs: u64) {
    let start = Instant::now();
    loop {
        let out = kubectl(lab)
            .args(["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let ready = node_names(lab).iter().all(|n| s.split_whitespace().any(|w| w == format!("{n}=True")));
        if ready {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "nodes not all Ready: {s} {}", text(&out));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The DaemonSet runs on every node; pod name → (node, pod IP).
pub fn ensure_web(lab: &Lab) -> Vec<(String, String, String)> {
    kubectl_apply(lab, WEB);
    let start = Instant::now();
    loop {
        let out = kubectl(lab)
            .args(["get", "pods", "-l", "app=ezk-web", "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.containerStatuses[0].ready}{"\n"}{end}"#])
            .output()
            .unwrap();
        let pods: Vec<(String, String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[3] == "true").then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
            })
            .collect();
        let mut nodes: Vec<&str> = pods.iter().map(|p| p.1.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        if pods.len() == lab.hosts.len() && nodes.len() == lab.hosts.len() {
            return pods;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "ezk-web not ready on every node: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            kubectl(lab).args(["get", "events", "--sort-by=.lastTimestamp"]).output().map(|o| text(&o)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `wget` inside pod `pod`; busybox's wget `-T` crashes in Debian's 1.35 build, so `timeout`.
pub fn fetch_in(lab: &Lab, pod: &str, url: &str) -> Result<String, String> {
    let out = kubectl(lab)
        .args(["exec", pod, "--", "timeout", "5", "wget", "-q", "-O-", url])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(text(&out))
    }
}

fn every_node_ready_with_roles_labels_and_taints(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 120);
        for &i in &MASTERS {
            let n = &lab.hosts[i].name;
            let labels = kubectl_ok(lab, &["get", "node", n, "-o", "jsonpath={.metadata.labels}"]);
            assert!(labels.contains("\"node-role.kubernetes.io/control-plane\""), "{n}: {labels}");
            let taints = kubectl_ok(lab, &["get", "node", n, "-o", "jsonpath={.spec.taints}"]);
            assert!(taints.contains("\"key\":\"node-role.kubernetes.io/control-plane\"") && taints.contains("NoSchedule"), "{n}: {taints}");
        }
        for &i in &WORKERS {
            let n = &lab.hosts[i].name;
            let labels = kubectl_ok(lab, &["get", "node", n, "-o", "jsonpath={.metadata.labels}"]);
            assert!(labels.contains("\"node-role.kubernetes.io/node\""), "{n}: {labels}");
            assert!(!labels.contains("control-plane"), "{n}: {labels}");
            assert_eq!(kubectl_ok(lab, &["get", "node", n, "-o", "jsonpath={.spec.taints}"]), "", "{n}");
        }
        // The node's address is its inventory address; each has a pod subnet inside CLUSTER_CIDR.
        for h in &lab.hosts {
            let ip = kubectl_ok(lab, &["get", "node", &h.name, "-o", r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#]);
            assert_eq!(ip, h.ip);
            let cidr = kubectl_ok(lab, &["get", "node", &h.name, "-o", "jsonpath={.spec.podCIDR}"]);
            assert!(cidr.starts_with("198.19.") && cidr.ends_with("/24"), "{}: {cidr}", h.name);
        }
    });
}

fn kubelet_serving_certificates_name_their_node(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        for h in &lab.hosts {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "openssl s_client -connect {}:10250 -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -subject -ext subjectAltName",
                    h.ip,
                    lab.cluster_dir().join("ssl/ca.pem").display()
                ))
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout);
            assert!(s.contains(&format!("CN = system:node:{}", h.name)), "{}: {s}", h.name);
            assert!(s.contains(&format!("DNS:{}", h.name)) && s.contains(&format!("IP Address:{}", h.ip)), "{}: {s}", h.name);
        }
        // The kubelet API refuses anonymous requests.
        let anon = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{}:10250/pods", lab.hosts[3].ip))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&anon.stdout), "401");
    });
}

fn pods_reach_each_other_across_nodes(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        for (from, from_node, _) in &pods {
            for (to, to_node, ip) in &pods {
                let got = fetch_in(lab, from, &format!("http://{ip}:8080/"));
                assert_eq!(got.as_deref(), Ok(to.as_str()), "{from} on {from_node} -> {to} on {to_node} ({ip})");
            }
        }
    });
}

/// Until the Endpoints of service `svc` list exactly the addresses of `pods` (the endpoints
/// controller has seen them ready; at most 60 s).
pub fn wait_endpoints(lab: &Lab, svc: &str, pods: &[(String, String, String)]) {
    let want: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.2.as_str()).collect();
    let start = Instant::now();
    loop {
        let got = kubectl_ok(lab, &["get", "endpoints", svc, "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
        if got.split_whitespace().collect::<std::collections::BTreeSet<_>>() == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "endpoints of {svc}: {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What kube-proxy on host `i` has programmed for service address `ip` (nat rules naming it),
/// and its last log lines: printed when a service address did not answer at once.
fn proxy_state(lab: &Lab, i: usize, ip: &str) -> String {
    let out = lab.ssh(i, &format!("iptables-save -t nat | grep -F -- '-d {ip}/32'; journalctl -u kube-proxy -n 8 --no-pager -o cat"));
    text(&out)
}

/// `get` until it answers (at most 30 s). Each node's kube-proxy programs a service once it
/// has seen its Endpoints, on its own schedule (a sync at least 1 s after the last); a first
/// miss is printed with that node's rules and log, so a slow node shows in the output and a
/// node that never programs the service fails the test.
pub fn answered(what: &str, lab: &Lab, host: usize, ip: &str, mut get: impl FnMut() -> Result<String, String>) -> String {
    let first = match get() {
        Ok(v) => return v,
        Err(e) => e,
    };
    let state = proxy_state(lab, host, ip);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        match get() {
            Ok(v) => {
                println!("  {what}: answered after {:.1}s more; first try: {}\n  kube-proxy on {}: {state}", start.elapsed().as_secs_f64(), first.trim(), lab.hosts[host].name);
                return v;
            }
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("{what}: {e}\nfirst try: {first}\nkube-proxy on {} then: {state}\nnow: {}", lab.hosts[host].name, proxy_state(lab, host, ip))
            }
            Err(_) => {}
        }
    }
}

pub fn host_of(lab: &Lab, node: &str) -> usize {
    lab.hosts.iter().position(|h| h.name == node).unwrap_or_else(|| panic!("no lab host named {node}"))
}

fn services_answer_from_every_node(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        let names: Vec<&str> = pods.iter().map(|p| p.0.as_str()).collect();
        let svc = kubectl_ok(lab, &["get", "svc", "ezk-web", "-o", "jsonpath={.spec.clusterIP}"]);
        wait_endpoints(lab, "ezk-web", &pods);
        wait_endpoints(lab, "ezk-web-np", &pods);
        // ClusterIP from a pod on every node and from every host; NodePort on every node's
        // address from this machine. Each answer comes from one of the pods.
        for (pod, node, _) in &pods {
            let at = format!("ClusterIP from {pod} on {node}");
            let got = answered(&at, lab, host_of(lab, node), &svc, || fetch_in(lab, pod, &format!("http://{svc}/")));
            assert!(names.contains(&got.as_str()), "{at}: {got}");
        }
        let mut served = std::collections::BTreeSet::new();
        for (i, h) in lab.hosts.iter().enumerate() {
            let at = format!("ClusterIP from host {}", h.name);
            let got = answered(&at, lab, i, &svc, || {
                let out = lab.ssh(i, &format!("curl -sS -m 5 http://{svc}/"));
                if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()) } else { Err(text(&out)) }
            });
            assert!(names.contains(&got.as_str()), "{at}: {got:?}");
            for _ in 0..3 {
                let out = Command::new("curl").args(["-s", "-m", "5"]).arg(format!("http://{}:30080/", h.ip)).output().unwrap();
                let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
                assert!(names.contains(&got.as_str()), "NodePort on {}: {got:?}", h.name);
                served.insert(got);
            }
        }
        assert!(served.len() > 1, "every NodePort answer came from one pod: {served:?}");
    });
}

fn logs_and_exec_work(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        // kube-apiserver -> kubelet over TLS (its client cert, RBAC), on a worker and a master.
        for (pod, node, _) in pods.iter().filter(|p| p.1 == lab.hosts[0].name || p.1 == lab.hosts[4].name) {
            assert_eq!(kubectl_ok(lab, &["logs", pod]), "serving", "logs of {pod} on {node}");
            assert_eq!(kubectl_ok(lab, &["exec", pod, "--", "hostname"]), *pod, "exec in {pod} on {node}");
        }
    });
}

fn nodes_stay_ready_with_an_apiserver_down(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 60);
        lab.sh(0, "systemctl stop kube-apiserver");
        // Longer than the node monitor's grace period (40 s): a node whose kubelet could not
        // renew its lease would be NotReady by then.
        std::thread::sleep(Duration::from_secs(45));
        let out = kubectl(lab)
            .args(["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#])
            .output()
            .unwrap();
        lab.sh(0, "systemctl start kube-apiserver");
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        for n in node_names(lab) {
            assert!(s.split_whitespace().any(|w| w == format!("{n}=True")), "{n} not Ready with an apiserver down: {s}");
        }
        // Every kubelet went on through its kube-lb (nginx retried the other masters).
        wait_all_ready(lab, 60);
    });
}

fn main_pids(lab: &Lab, unit: &str, hosts: &[usize]) -> Vec<String> {
    hosts.iter().map(|&i| lab.sh(i, &format!("systemctl show -p MainPID --value {unit}"))).collect()
}

fn rerun_of_all_changes_nothing_and_restarts_nothing(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let all: Vec<usize> = (0..lab.hosts.len()).collect();
        let units = ["kubelet", "kube-proxy", "kube-lb", "containerd"];
        let before: Vec<Vec<String>> = units.iter().map(|u| main_pids(lab, u, &all)).collect();
        let api_before = main_pids(lab, "kube-apiserver", &MASTERS);
        let r = setup_ok(lab, "all", &[]);
        let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
        assert_nothing_changed(&r, &ips);
        assert_eq!(r.recap["steps"].as_array().map(Vec::len), Some(8), "01 02 03 10 04 05 06 07 in one document");
        // A role's gather takes along the host's roles of later waves that only read: a no-op
        // 01 (chrony-package and prepare, then chrony) is one round trip per host.
        for step in r.recap["steps"].as_array().unwrap() {
            let trips: Vec<String> = ips.iter().map(|ip| format!("{}", step["hosts"][ip]["round_trips"])).collect();
            println!("  round trips of a no-op {}: {}", step["step"], trips.join(" "));
            if step["step"].as_str().is_some_and(|s| s.starts_with("01")) {
                for ip in &ips {
                    assert_eq!(step["hosts"][ip]["round_trips"], 1, "{ip}: {}", step["hosts"][ip]);
                }
            }
        }
        let after: Vec<Vec<String>> = units.iter().map(|u| main_pids(lab, u, &all)).collect();
        assert_eq!(before, after, "a no-op run restarted one of {units:?}");
        assert_eq!(api_before, main_pids(lab, "kube-apiserver", &MASTERS));
    });
}

/// kube-lb.conf changes (here its fail timeout; in an add-master, its upstream list): only that
/// file changes, nginx reloads it (kube-lb's main process stays), kubelets keep their
/// connections and every node stays Ready.
fn a_kube_lb_change_reloads_it_without_a_restart(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let all: Vec<usize> = (0..lab.hosts.len()).collect();
        let lb = main_pids(lab, "kube-lb", &all);
        let kubelet = main_pids(lab, "kubelet", &all);
        let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
        let p = setup_ok(lab, "05", &["--plan", "-e", "KUBE_LB_FAIL_TIMEOUT=7s"]);
        for ip in &ips {
            let (diff, actions) = p.plan_split(ip, "kube-lb");
            assert_eq!(diff.len(), 6, "three upstream lines change on {ip}: {diff:#?}");
            assert!(diff.iter().all(|l| l.contains("fail_timeout=")), "{diff:#?}");
            assert_eq!(
                actions,
                ["[kube-lb] changed /etc/kube-lb/kube-lb.conf", "[kube-lb] restart kube-lb-reload (kube-lb upstreams (every master))"],
                "{ip}"
            );
        }
        let r = setup_ok(lab, "05", &["-e", "KUBE_LB_FAIL_TIMEOUT=7s"]);
        for (i, ip) in ips.iter().enumerate() {
            assert_eq!(r.count(ip, "changed"), 2, "the file and the reload on {ip}:\n{}", r.output);
            assert!(lab.sh(i, "cat /etc/kube-lb/kube-lb.conf").contains("fail_timeout=7s"));
            assert!(lab.sh(i, "journalctl -u kube-lb --no-pager | grep -c 'Reloaded\\|Reloading' || true") != "0", "kube-lb not reloaded on {ip}");
        }
        assert_eq!(main_pids(lab, "kube-lb", &all), lb, "kube-lb restarted instead of reloading");
        assert_eq!(main_pids(lab, "kubelet", &all), kubelet, "kubelet restarted");
        wait_all_ready(lab, 30);
        // Back to the inventory's value: the same, then quiet.
        setup_ok(lab, "05", &[]);
        assert_nothing_changed(&setup_ok(lab, "05", &[]), &ips);
    });
}

fn destroy_leaves_nothing_and_setup_builds_it_again(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        ensure_web(lab);
        let out = lab.ezk(&["destroy", &lab.name, "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        for (i, h) in lab.hosts.iter().enumerate() {
            // No process of the cluster, no pod, no route or rule of the network.
            let procs = lab.sh(i, "ps -e -o comm= | grep -E '^(kubelet|kube-proxy|kube-apiserver|kube-controller|kube-scheduler|etcd|containerd|containerd-shim|httpd|pause|nginx)$' || true");
            assert_eq!(procs, "", "{}: processes left", h.name);
            assert_eq!(lab.sh(i, "ip route show proto 211"), "", "{}: ezk routes left", h.name);
            assert_eq!(lab.sh(i, "iptables-save | grep -c -e KUBE- -e CNI- -e 'ezk host-gw' || true"), "0", "{}", h.name);
            // (host0, the lab host's own link, is a veth too.)
            assert_eq!(lab.sh(i, "ip netns list; ip -o link show type veth | grep -v ' host0@'; ip link show cni0 2>/dev/null || true"), "", "{}", h.name);
            assert_eq!(lab.sh(i, "findmnt -rn -o TARGET | grep -E 'kubelet|containerd' || true"), "", "{}: mounts left", h.name);
            for p in ["/var/lib/kubelet", "/etc/kubernetes/kubelet.kubeconfig", "/etc/cni/net.d/10-ezk-host-gw.conflist", "/etc/kube-lb", "/etc/systemd/system/kubelet.service"] {
                assert_eq!(lab.sh(i, &format!("test -e {p} && echo left || true")), "", "{}: {p}", h.name);
            }
        }
        // And it builds again: every node Ready, the workload runs.
        setup_ok(lab, "all", &[]);
        wait_all_ready(lab, 120);
        ensure_web(lab);
    });
}
