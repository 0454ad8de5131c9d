//! Step 07's cluster DNS on the 5-host Kubernetes lab: CoreDNS v1.8.3, built offline with the
//! lab's Kubernetes and imported on every node as `registry.k8s.io/coredns/coredns:v1.8.3` (the
//! name step 07's manifest gives it), runs at SERVICE_CIDR's network address + 2 and answers
//! pods on every node: the API's name, Services by short name, `<svc>.<ns>` and FQDN, a headless
//! Service with every ready pod, SRV records for a named port; an outside name fails instead of
//! hanging (the lab has no outside DNS); resolution returns once deleted CoreDNS pods are
//! replaced; a re-run of 07 changes nothing and a Corefile setting is applied by a re-run.
//! The add-ons whose images the lab cannot have (node-local DNS cache, metrics-server, the
//! dashboard) are rendered by step 07 and checked by the real API server with a server-side
//! dry run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::kube_master::{MASTERS, ensure_control_plane};
use crate::kube_node::{answered, ensure_web, fetch_in, host_of, wait_endpoints};
use crate::steps_support::{assert_nothing_changed, setup_ok, text};
use crate::support::{kubectl, kubectl_ok, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "kube_dns::coredns_runs_at_the_cluster_dns_address", run: coredns_runs_at_the_cluster_dns_address },
    Test { name: "kube_dns::names_resolve_from_a_pod_on_every_node", run: names_resolve_from_a_pod_on_every_node },
    Test { name: "kube_dns::an_outside_name_fails_without_hanging", run: an_outside_name_fails_without_hanging },
    Test { name: "kube_dns::resolution_returns_after_coredns_pods_are_deleted", run: resolution_returns_after_coredns_pods_are_deleted },
    Test { name: "kube_dns::a_rerun_changes_nothing_and_a_setting_is_applied", run: a_rerun_changes_nothing_and_a_setting_is_applied },
    Test { name: "kube_dns::every_addon_manifest_passes_a_server_side_dry_run", run: every_addon_manifest_passes_a_server_side_dry_run },
];

const DOMAIN: &str = "cluster.local";

/// The `kubernetes` Service's address (SERVICE_CIDR's first) and the cluster DNS address
/// derived from it as kubeasz does (the network address + 2: the first + 1).
fn service_ips(lab: &Lab) -> (String, String) {
    let api = kubectl_ok(lab, &["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    let (net, last) = api.rsplit_once('.').expect("an IPv4 address");
    let dns = format!("{net}.{}", last.parse::<u8>().unwrap() + 1);
    (api, dns)
}

/// `sh -c script` in `pod`: (success, stdout + stderr).
fn in_pod(lab: &Lab, pod: &str, script: &str) -> (bool, String) {
    let out = kubectl(lab).args(["exec", pod, "--", "sh", "-c", script]).output().unwrap();
    (out.status.success(), text(&out))
}

/// The addresses busybox's nslookup printed for the name (after the server's own lines).
fn answers(out: &str) -> BTreeSet<String> {
    out.split("\nName:")
        .skip(1)
        .flat_map(|block| block.lines().filter_map(|l| l.strip_prefix("Address: ").map(|a| a.trim().to_string())))
        .collect()
}

/// The CoreDNS pods: name → (ready, node).
fn coredns_pods(lab: &Lab) -> Vec<(String, bool, String)> {
    let out = kubectl_ok(
        lab,
        &["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o",
          r#"jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].ready} {.spec.nodeName} {.metadata.deletionTimestamp}{"\n"}{end}"#],
    );
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // A pod being deleted (it has a deletion timestamp) is not counted.
            (f.len() == 3).then(|| (f[0].to_string(), f[1] == "true", f[2].to_string()))
        })
        .collect()
}

fn coredns_runs_at_the_cluster_dns_address(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let (_, dns) = service_ips(lab);
        assert_eq!(kubectl_ok(lab, &["-n", "kube-system", "get", "svc", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"]), dns);
        let image = kubectl_ok(lab, &["-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "registry.k8s.io/coredns/coredns:v1.8.3");
        // setup 07 waited for the rollout: both replicas Ready, on two different nodes.
        let pods = coredns_pods(lab);
        assert_eq!(pods.len(), 2, "{pods:?}");
        assert!(pods.iter().all(|p| p.1), "not Ready after setup: {pods:?}");
        assert_ne!(pods[0].2, pods[1].2, "both replicas on one node: {pods:?}");
        // The image every node runs is the one imported by step 03 (the lab's offline build).
        let running = kubectl_ok(lab, &["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[0].status.containerStatuses[0].imageID}"]);
        let node = lab.hosts.iter().position(|h| h.name == pods[0].2).unwrap();
        let images = lab.sh(node, "/opt/kube/bin/containerd-bin/ctr -n k8s.io images ls name==registry.k8s.io/coredns/coredns:v1.8.3");
        let manifest = images
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .find(|d| d.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("not imported on {}: {images}", pods[0].2));
        // The CRI names an image by its config's digest; the manifest names the config.
        let m: serde_json::Value = serde_json::from_str(&lab.sh(node, &format!("/opt/kube/bin/containerd-bin/ctr -n k8s.io content get {manifest}"))).unwrap();
        assert_eq!(m["config"]["digest"].as_str(), Some(running.trim_start_matches("docker-pullable://")), "running {running}, imported {images}");
        // The version it reports is the one built.
        let log = kubectl_ok(lab, &["-n", "kube-system", "logs", &pods[0].0]);
        assert!(log.contains("CoreDNS-1.8.3"), "{log}");
        // Every kubelet points pods at it.
        for (i, h) in lab.hosts.iter().enumerate() {
            let conf = lab.sh(i, "cat /var/lib/kubelet/config.yaml");
            let y: serde_yaml::Value = serde_yaml::from_str(&conf).unwrap_or_else(|e| panic!("{}: {e}: {conf}", h.name));
            assert_eq!(y["clusterDNS"][0].as_str(), Some(dns.as_str()), "{}: {conf}", h.name);
            assert_eq!(y["clusterDomain"].as_str(), Some(DOMAIN), "{}: {conf}", h.name);
        }
    });
}

fn names_resolve_from_a_pod_on_every_node(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        wait_endpoints(lab, "ezk-web", &pods);
        wait_endpoints(lab, "ezk-web-headless", &pods);
        let (api, dns) = service_ips(lab);
        let web = kubectl_ok(lab, &["get", "svc", "ezk-web", "-o", "jsonpath={.spec.clusterIP}"]);
        let pod_ips: BTreeSet<String> = pods.iter().map(|p| p.2.clone()).collect();
        let names: Vec<&str> = pods.iter().map(|p| p.0.as_str()).collect();
        for (pod, node, _) in &pods {
            let at = format!("{pod} on {node}");
            // resolv.conf: the cluster DNS, the namespace's search path, ndots:5.
            let (_, conf) = in_pod(lab, pod, "cat /etc/resolv.conf");
            assert!(conf.lines().any(|l| l == format!("nameserver {dns}")), "{at}: {conf}");
            assert!(
                conf.lines().any(|l| l == format!("search default.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}")),
                "{at}: {conf}"
            );
            assert!(conf.lines().any(|l| l == "options ndots:5"), "{at}: {conf}");
            // The API's name: the first service address.
            let (ok, out) = in_pod(lab, pod, &format!("nslookup kubernetes.default.svc.{DOMAIN}"));
            assert!(ok && answers(&out) == BTreeSet::from([api.clone()]), "{at}: {out}");
            // A ClusterIP Service by short name, <svc>.<ns> and FQDN (the C library's resolver,
            // which applies the search path: ping prints the address it resolved).
            for name in ["ezk-web".to_string(), "ezk-web.default".to_string(), format!("ezk-web.default.svc.{DOMAIN}")] {
                let (_, out) = in_pod(lab, pod, &format!("ping -c1 -W1 {name} | head -n1"));
                assert!(out.starts_with(&format!("PING {name} ({web})")), "{at}: {name}: {out}");
            }
            // ... and HTTP through that name.
            let got = answered(&at, lab, host_of(lab, node), &web, || fetch_in(lab, pod, "http://ezk-web/"));
            assert!(names.contains(&got.as_str()), "{at}: {got}");
            // A headless Service: every ready pod's address.
            let (ok, out) = in_pod(lab, pod, &format!("nslookup ezk-web-headless.default.svc.{DOMAIN}"));
            assert!(ok && answers(&out) == pod_ips, "{at}: {out}\nwant {pod_ips:?}");
            // SRV for the named port.
            let (ok, out) = in_pod(lab, pod, &format!("nslookup -type=SRV _http._tcp.ezk-web.default.svc.{DOMAIN}"));
            assert!(ok && out.contains(&format!("service = 0 100 80 ezk-web.default.svc.{DOMAIN}")), "{at}: {out}");
        }
    });
}

fn an_outside_name_fails_without_hanging(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        let pod = &pods[0].0;
        // CoreDNS forwards it to the node's nameserver, which does not answer (no outside DNS
        // in the lab): a failure within CoreDNS's forward deadline, not a hang (timeout: 124).
        let out = kubectl(lab)
            .args(["exec", pod, "--", "timeout", "30", "nslookup", "www.example.com"])
            .output()
            .unwrap();
        let s = text(&out);
        assert_ne!(out.status.code(), Some(0), "{s}");
        assert!(s.contains("can't find www.example.com") && !s.contains("timed out"), "{s}");
        // CoreDNS keeps answering cluster names.
        let (ok, out) = in_pod(lab, pod, &format!("nslookup kubernetes.default.svc.{DOMAIN}"));
        assert!(ok, "{out}");
    });
}

fn resolution_returns_after_coredns_pods_are_deleted(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let pods = ensure_web(lab);
        let pod = &pods[pods.len() - 1].0;
        let before: BTreeSet<String> = coredns_pods(lab).into_iter().map(|p| p.0).collect();
        kubectl_ok(lab, &["-n", "kube-system", "delete", "pods", "-l", "k8s-app=kube-dns", "--wait=false"]);
        let start = Instant::now();
        loop {
            let (ok, out) = in_pod(lab, pod, &format!("timeout 5 nslookup kubernetes.default.svc.{DOMAIN}"));
            let now = coredns_pods(lab);
            if ok && !now.is_empty() && now.iter().all(|p| !before.contains(&p.0)) {
                assert!(now.iter().any(|p| p.1), "answered with no replacement Ready: {now:?}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no answer after the CoreDNS pods were replaced: {out}\n{now:?}\n{}",
                kubectl(lab).args(["-n", "kube-system", "get", "events", "--sort-by=.lastTimestamp"]).output().map(|o| text(&o)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // Both replicas come back.
        let start = Instant::now();
        while coredns_pods(lab).iter().filter(|p| p.1).count() < 2 {
            assert!(start.elapsed() < Duration::from_secs(120), "{:?}", coredns_pods(lab));
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

fn a_rerun_changes_nothing_and_a_setting_is_applied(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let first = vec![lab.hosts[MASTERS[0]].ip.clone()];
        let pods: BTreeSet<String> = coredns_pods(lab).into_iter().map(|p| p.0).collect();
        assert_nothing_changed(&setup_ok(lab, "07", &[]), &first);
        assert_eq!(pods, coredns_pods(lab).into_iter().map(|p| p.0).collect::<BTreeSet<_>>(), "a no-op 07 replaced CoreDNS pods");
        // A Corefile setting: the manifest changes, kubectl applies it (the ConfigMap; CoreDNS's
        // reload plugin picks it up without a restart), the pods stay.
        let r = setup_ok(lab, "07", &["-e", "COREDNS_CACHE_TTL=15"]);
        assert_eq!(r.count(&first[0], "changed"), 2, "the manifest and its apply:\n{}", r.output);
        let corefile = kubectl_ok(lab, &["-n", "kube-system", "get", "cm", "coredns", "-o", "jsonpath={.data.Corefile}"]);
        assert!(corefile.contains("cache 15"), "{corefile}");
        assert_eq!(pods, coredns_pods(lab).into_iter().map(|p| p.0).collect::<BTreeSet<_>>(), "a Corefile change replaced CoreDNS pods");
        // Back to the inventory's value, then quiet again.
        setup_ok(lab, "07", &[]);
        assert_nothing_changed(&setup_ok(lab, "07", &[]), &first);
        let corefile = kubectl_ok(lab, &["-n", "kube-system", "get", "cm", "coredns", "-o", "jsonpath={.data.Corefile}"]);
        assert!(corefile.contains("cache 30"), "{corefile}");
    });
}

/// Step 07 with every add-on on, rendered for the lab's cluster, and each manifest accepted by
/// the lab's kube-apiserver (`kubectl apply --dry-run=server`: schema, defaulting, admission);
/// the node-local cache in both kube-proxy modes (it binds the kube-dns address in iptables
/// mode only).
fn every_addon_manifest_passes_a_server_side_dry_run(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let (_, dns) = service_ips(lab);
        for mode in ["iptables", "ipvs"] {
            let dir = tempfile::tempdir().unwrap();
            let out = lab.ezk(&[
                "render", &lab.name, "07", "--out", &dir.path().display().to_string(),
                "-e", "metricsserver_install=yes", "-e", "dashboard_install=yes",
                "-e", "ENABLE_LOCAL_DNS_CACHE=true", "-e", &format!("PROXY_MODE={mode}"),
            ]);
            assert!(out.status.success(), "{}", text(&out));
            let addons = dir.path().join(&lab.hosts[MASTERS[0]].ip).join("etc/kubernetes/ezk/addons");
            let mut files: Vec<String> = std::fs::read_dir(&addons).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            files.sort();
            assert_eq!(files, ["coredns.yaml", "dashboard.yaml", "metrics-server.yaml", "nodelocaldns.yaml"]);
            for f in &files {
                let path = addons.join(f);
                let out = kubectl(lab).args(["apply", "--dry-run=server", "-f"]).arg(&path).output().unwrap();
                assert!(out.status.success(), "{mode} {f}: {}", text(&out));
            }
            let cache = std::fs::read_to_string(addons.join("nodelocaldns.yaml")).unwrap();
            let binds_service = cache.contains(&format!("bind 169.254.20.10 {dns}\n"));
            assert_eq!(binds_service, mode == "iptables", "{mode}:\n{cache}");
            // metrics-server verifies the kubelets' serving certificates.
            let ms = std::fs::read_to_string(addons.join("metrics-server.yaml")).unwrap();
            assert!(ms.contains("- --kubelet-certificate-authority=") && !ms.contains("- --kubelet-insecure-tls"), "{ms}");
        }
    });
}
