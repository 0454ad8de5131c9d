//! Images through the cluster's own registry (IMAGE_DELIVERY=registry) on the 5-host Kubernetes
//! lab: step 03 with `-e IMAGE_DELIVERY=registry` starts Debian's docker-registry on the first
//! master (TLS from the cluster CA, read-only, the store's pause, coredns and busybox laid into
//! its storage) and points every node's containerd at it (certs.d hosts.toml). On a worker
//! whose containerd then has neither the pause nor the busybox image, a pod of busybox starts:
//! containerd pulls both from the registry (its access log shows the node's requests; the lab
//! has no route out, so nothing can come from outside), at the digests the store recorded. A
//! re-run changes nothing; a run back in the default mode (import) removes the hosts.toml files
//! and stops the registry.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::kube_master::{MASTERS, ensure_control_plane};
use crate::kube_node::wait_all_ready;
use crate::steps_support::{assert_nothing_changed, setup_ok, text};
use crate::support::{kubectl, kubectl_ok, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "kube_images::pods_pull_pause_and_busybox_from_the_cluster_registry",
    run: pods_pull_pause_and_busybox_from_the_cluster_registry,
}];

const REGISTRY: [&str; 2] = ["-e", "IMAGE_DELIVERY=registry"];
const WORKER: usize = 4;
const CTR: &str = "/opt/kube/bin/containerd-bin/ctr --address /run/containerd/containerd.sock -n k8s.io";

/// The pod: busybox on the worker, always pulled.
fn pod(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ezk-pulled, namespace: default}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: c
    image: ezk.local/busybox:1.35.0
    imagePullPolicy: Always
    command: ["sh", "-c", "echo pulled-and-running && sleep 3600"]
"#
    )
}

fn digest_on(lab: &Lab, i: usize, reference: &str) -> String {
    lab.sh(i, &format!("{CTR} images ls -q 'name=={reference}' >/dev/null; {CTR} images ls 'name=={reference}' | awk 'NR>1 {{print $3}}'"))
        .trim()
        .to_string()
}

fn pods_pull_pause_and_busybox_from_the_cluster_registry(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        wait_all_ready(lab, 120);
        let registry_host = &lab.hosts[MASTERS[0]];
        let first = setup_ok(lab, "03", &REGISTRY);
        assert!(first.count(&registry_host.ip, "changed") > 10, "the registry was set up:\n{}", first.output);

        // The registry: Debian's binary, our unit, TLS with a certificate of the cluster CA.
        let ca = lab.cluster_dir().join("ssl/ca.pem");
        let catalog = std::process::Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{}:5000/v2/_catalog", registry_host.ip))
            .output()
            .unwrap();
        let catalog = String::from_utf8_lossy(&catalog.stdout).to_string();
        for repo in ["ezk.local/pause", "ezk.local/busybox", "registry.k8s.io/coredns/coredns"] {
            assert!(catalog.contains(repo), "{repo} in {catalog}");
        }
        assert!(lab.sh(MASTERS[0], "systemctl is-active ezk-registry").trim() == "active");
        assert_eq!(lab.sh(MASTERS[0], "ps -o user:32= -C docker-registry").trim(), "docker-registry", "not root");
        // Read-only: nothing can be pushed.
        let push = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{}:5000/v2/ezk.local/busybox/blobs/uploads/", registry_host.ip))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&push.stdout).to_string();
        assert!(code == "405" || code == "503", "a push is refused: HTTP {code}");
        // Every node's containerd goes there for ezk.local and registry.k8s.io.
        for i in 0..lab.hosts.len() {
            let toml = lab.sh(i, "cat /etc/containerd/certs.d/ezk.local/hosts.toml");
            assert!(toml.contains(&format!("https://{}:5000/v2/ezk.local", registry_host.ip)), "host {i}: {toml}");
            assert!(lab.sh(i, "test -f /etc/containerd/certs.d/registry.k8s.io/hosts.toml && echo yes").contains("yes"));
        }

        // The worker loses its copies of pause and busybox; the pod brings them back.
        let node = lab.hosts[WORKER].name.clone();
        let _ = kubectl(lab).args(["delete", "pod", "ezk-pulled", "--ignore-not-found", "--wait=true"]).output();
        let want_pause = digest_on(lab, WORKER, "ezk.local/pause:3.4");
        let want_busybox = digest_on(lab, WORKER, "ezk.local/busybox:1.35.0");
        assert!(want_pause.starts_with("sha256:") && want_busybox.starts_with("sha256:"), "imported before: {want_pause} {want_busybox}");
        lab.sh(WORKER, &format!("{CTR} images rm ezk.local/pause:3.4 ezk.local/busybox:1.35.0"));
        assert_eq!(digest_on(lab, WORKER, "ezk.local/busybox:1.35.0"), "");
        let since = lab.sh(MASTERS[0], "date '+%Y-%m-%d %H:%M:%S'").trim().to_string();
        let mut apply = kubectl(lab);
        apply.args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = apply.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(pod(&node).as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let start = Instant::now();
        loop {
            let phase = kubectl_ok(lab, &["get", "pod", "ezk-pulled", "-o", "jsonpath={.status.phase}"]);
            if phase == "Running" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "pod not running ({phase}):\n{}\n{}",
                kubectl(lab).args(["describe", "pod", "ezk-pulled"]).output().map(|o| text(&o)).unwrap_or_default(),
                lab.sh(WORKER, "journalctl -u containerd -n 30 --no-pager")
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        assert!(kubectl_ok(lab, &["logs", "ezk-pulled"]).contains("pulled-and-running"));
        // Pulled from the registry, at the store's digests (the same as the imported ones).
        assert_eq!(digest_on(lab, WORKER, "ezk.local/pause:3.4"), want_pause);
        assert_eq!(digest_on(lab, WORKER, "ezk.local/busybox:1.35.0"), want_busybox);
        let log = lab.sh(MASTERS[0], &format!("journalctl -u ezk-registry --since '{since}' --no-pager -o cat"));
        let worker_ip = &lab.hosts[WORKER].ip;
        for repo in ["ezk.local/pause", "ezk.local/busybox"] {
            assert!(
                log.lines().any(|l| l.contains(worker_ip.as_str()) && l.contains(&format!("/v2/{repo}/manifests/")) && l.contains(" 200 ")),
                "{repo} pulled by {worker_ip} from the registry:\n{log}"
            );
        }
        let _ = kubectl(lab).args(["delete", "pod", "ezk-pulled", "--wait=false"]).output();

        // A re-run changes nothing anywhere.
        let again = setup_ok(lab, "03", &REGISTRY);
        let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
        assert_nothing_changed(&again, &ips);

        // Back to the default: the hosts.toml files go, the registry stops and its files go.
        setup_ok(lab, "03", &[]);
        for i in 0..lab.hosts.len() {
            assert!(lab.sh(i, "test -e /etc/containerd/certs.d/ezk.local/hosts.toml || echo gone").contains("gone"), "host {i}");
        }
        assert_eq!(lab.sh(MASTERS[0], "systemctl is-active ezk-registry || true").trim(), "inactive");
        assert!(lab.sh(MASTERS[0], "ls /var/lib/ezk-registry /etc/ezk-registry 2>&1 || true").contains("No such file"));
    });
}
