//! Taking over the control plane and nodes kubeasz built (issue 21), on a 3-host lab of its own
//! and a spare host for add-node: etcd, a master and a node on every host, laid out by this
//! file's own code from what kubeasz 3.x's deploy, kube-master and kube-node roles do —
//! kube-apiserver, kube-controller-manager and kube-scheduler in /opt/kube/bin with kubeasz's
//! flags (those v1.20.2 accepts); one CA for everything (`ca.pem`, `kubernetes.pem` serving,
//! etcd client and kubelet client, `aggregator-proxy.pem`, the service-account key being the
//! CA's own key `ca-key.pem`), all in /etc/kubernetes/ssl; kubeconfigs with embedded
//! certificates of their own; kubeasz's admin kubeconfig as /root/.kube/config on the masters
//! and `clusters/<c>/kubectl.kubeconfig` on the deploy machine. Departures, each said where it
//! is made: kubeasz's kubeconfigs on the hosts point at its kube-lb on 127.0.0.1, which is not
//! laid out here (they point at the host's own apiserver); the kubelet's and kube-proxy's
//! settings a lab host cannot take (eviction thresholds, conntrack, a cgroup remount).
//!
//! Then `ezk setup <c> 02` and `04` must keep serving every client kubeasz handed out: a client
//! with kubeasz's admin certificate and a ServiceAccount token issued before the takeover (signed
//! with ca-key.pem) read the API every 0.2 s, through any master that answers (as behind a load
//! balancer), and none is ever refused or finds no apiserver; the apiservers restart one at a
//! time; a bound token requested before still authenticates after; a re-run changes nothing.
//!
//! Then the nodes (`nodes_are_taken_over`): kubeasz's kubelet and kube-proxy on every host
//! (each is a node too), on containerd from `ezk setup 03`, a pod running; `ezk setup 05` under
//! the same clients keeps the Node objects, the pod's container and kubeasz's kubelet
//! certificates, and the API still serves the pod's logs through the kubelet. Last, day 2:
//! `ezk setup 01` and `ezk add-node` of the lab's spare host under the same clients: the new
//! node gets ready, the old Node objects, kubelets and the pod are left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::kubeasz;
use crate::steps_support::{assert_nothing_changed, ezk_json, fill_store, setup_ok, text};
use crate::takeover::{SSL, kubeasz_etcd, put, stored, unit_restarted_one_at_a_time, unit_times};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "takeover_master::kubeasz_control_plane_is_taken_over_without_an_outage",
    run: kubeasz_control_plane_is_taken_over_without_an_outage,
}];

const UNITS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// kubeasz 3.1's kube-apiserver flags on master `ip` (issuer `https://kubernetes.default.svc`,
/// audiences `api,istio-ca`, tokens signed with the CA's key and checked with its certificate).
fn apiserver_unit(ip: &str, etcd: &[String], svc_cidr: &str) -> String {
    let endpoints: Vec<String> = etcd.iter().map(|e| format!("https://{e}:2379")).collect();
    let flags = [
        format!("--advertise-address={ip}"),
        "--allow-privileged=true".into(),
        "--anonymous-auth=false".into(),
        "--api-audiences=api,istio-ca".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--bind-address={ip}"),
        format!("--client-ca-file={SSL}/ca.pem"),
        "--endpoint-reconciler-type=lease".into(),
        format!("--etcd-cafile={SSL}/ca.pem"),
        format!("--etcd-certfile={SSL}/kubernetes.pem"),
        format!("--etcd-keyfile={SSL}/kubernetes-key.pem"),
        format!("--etcd-servers={}", endpoints.join(",")),
        format!("--kubelet-certificate-authority={SSL}/ca.pem"),
        format!("--kubelet-client-certificate={SSL}/kubernetes.pem"),
        format!("--kubelet-client-key={SSL}/kubernetes-key.pem"),
        "--secure-port=6443".into(),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-signing-key-file={SSL}/ca-key.pem"),
        format!("--service-account-key-file={SSL}/ca.pem"),
        format!("--service-cluster-ip-range={svc_cidr}"),
        "--service-node-port-range=30000-32767".into(),
        format!("--tls-cert-file={SSL}/kubernetes.pem"),
        format!("--tls-private-key-file={SSL}/kubernetes-key.pem"),
        format!("--requestheader-client-ca-file={SSL}/ca.pem"),
        "--requestheader-allowed-names=".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        format!("--proxy-client-cert-file={SSL}/aggregator-proxy.pem"),
        format!("--proxy-client-key-file={SSL}/aggregator-proxy-key.pem"),
        "--enable-aggregator-routing=true".into(),
        "--v=2".into(),
    ];
    unit("Kubernetes API Server", "kube-apiserver", &flags, "Type=notify\nLimitNOFILE=65536\n")
}

fn controller_manager_unit(ip: &str, svc_cidr: &str, pod_cidr: &str) -> String {
    let kc = "/etc/kubernetes/kube-controller-manager.kubeconfig";
    let flags = [
        format!("--bind-address={ip}"),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={pod_cidr}"),
        "--cluster-name=kubernetes".into(),
        format!("--cluster-signing-cert-file={SSL}/ca.pem"),
        format!("--cluster-signing-key-file={SSL}/ca-key.pem"),
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--leader-elect=true".into(),
        "--node-cidr-mask-size=24".into(),
        format!("--root-ca-file={SSL}/ca.pem"),
        format!("--service-account-private-key-file={SSL}/ca-key.pem"),
        format!("--service-cluster-ip-range={svc_cidr}"),
        "--use-service-account-credentials=true".into(),
        "--v=2".into(),
    ];
    unit("Kubernetes Controller Manager", "kube-controller-manager", &flags, "")
}

fn scheduler_unit(ip: &str) -> String {
    let kc = "/etc/kubernetes/kube-scheduler.kubeconfig";
    let flags = [
        format!("--bind-address={ip}"),
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--leader-elect=true".into(),
        "--v=2".into(),
    ];
    unit("Kubernetes Scheduler", "kube-scheduler", &flags, "")
}

fn unit(what: &str, bin: &str, flags: &[String], extra: &str) -> String {
    format!(
        "[Unit]\nDescription={what}\nDocumentation=https://github.com/GoogleCloudPlatform/kubernetes\nAfter=network.target\n\n[Service]\nExecStart=/opt/kube/bin/{bin} \\\n  {}\nRestart=always\nRestartSec=5\n{extra}\n[Install]\nWantedBy=multi-user.target\n",
        flags.join(" \\\n  ")
    )
}

/// A kubeconfig as `kubectl config set-cluster/set-credentials --embed-certs` writes it.
fn kubeconfig(ssl: &Path, user: &str, stem: &str, server: &str) -> String {
    let b = |f: String| ezk::pki::kubeconfig::base64(&std::fs::read(ssl.join(f)).unwrap());
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b("ca.pem".into()),
        b(format!("{stem}.pem")),
        b(format!("{stem}-key.pem"))
    )
}

/// How a client authenticates: kubeasz's admin certificate (files in a dir) or a bearer token.
#[derive(Clone)]
enum Cred {
    Cert(PathBuf),
    Token(String),
}

/// One GET of `path` on master `ip` with `cred`, trusting kubeasz's ca.pem in `dir`: the HTTP
/// code, or curl's exit code as `curl N` (0 = 200).
fn get(dir: &Path, ip: &str, cred: &Cred, path: &str) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--connect-timeout", "1", "-m", "4", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("--cacert")
        .arg(dir.join("ca.pem"));
    match cred {
        Cred::Cert(d) => {
            c.arg("--cert").arg(d.join("admin.pem")).arg("--key").arg(d.join("admin-key.pem"));
        }
        Cred::Token(t) => {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
    }
    let out = c.arg(format!("https://{ip}:6443{path}")).stdin(Stdio::null()).output().expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (code, format!("{ip}: exit {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()))
}

/// curl's exit codes for a TLS handshake or a certificate refused (either side).
const TLS_REFUSED: [i32; 8] = [35, 51, 53, 58, 59, 60, 77, 83];

/// One read as a client behind a load balancer makes it: the masters in turn from `first`, until
/// one serves it. `Ok` when one did; `Err((refused, why))` else, `refused` when any master
/// refused the client (TLS, 401, 403) rather than not answering.
fn read(dir: &Path, ips: &[String], first: usize, cred: &Cred, path: &str) -> Result<(), (bool, String)> {
    let mut why = Vec::new();
    let mut refused = false;
    for k in 0..ips.len() {
        let ip = &ips[(first + k) % ips.len()];
        let (code, err) = get(dir, ip, cred, path);
        if code == "200" {
            return Ok(());
        }
        let exit: i32 = err.split("exit Some(").nth(1).and_then(|s| s.split(')').next()).and_then(|s| s.parse().ok()).unwrap_or(-1);
        if code == "401" || code == "403" || TLS_REFUSED.contains(&exit) {
            refused = true;
        }
        why.push(format!("HTTP {code} {err}"));
    }
    Err((refused, why.join("; ")))
}

fn wait_read(dir: &Path, ips: &[String], cred: &Cred, path: &str, secs: u64) {
    let start = Instant::now();
    loop {
        match read(dir, &ips[..1], 0, cred, path) {
            Ok(()) => return,
            Err((_, why)) => assert!(start.elapsed() < Duration::from_secs(secs), "{path} not served: {why}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

type Prober = std::thread::JoinHandle<(u32, Vec<(bool, String)>)>;

/// Reads of the namespace's pods every 0.2 s, with kubeasz's admin certificate and with the
/// token, each through whichever master answers, until `stop`: (probes, failures as
/// (refused, what)).
fn probe(stop: Arc<AtomicBool>, ips: Vec<String>, dir: PathBuf, creds: [Cred; 2]) -> Prober {
    std::thread::spawn(move || {
        let (mut probes, mut failures) = (0u32, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            for (n, c) in creds.iter().enumerate() {
                if let Err((refused, why)) = read(&dir, &ips, probes as usize, c, PODS) {
                    failures.push((refused, format!("probe {probes} ({}): {why}", ["admin.pem", "token"][n])));
                }
            }
            probes += 1;
            std::thread::sleep(Duration::from_millis(200).saturating_sub(t.elapsed()));
        }
        (probes, failures)
    })
}

/// Stop the probes: none refused, none unanswered.
fn finish(stop: &AtomicBool, prober: Prober, what: &str) {
    stop.store(true, Ordering::Relaxed);
    let (probes, failures) = prober.join().unwrap();
    println!("  {probes} probes during {what}, {} failed", failures.len());
    let list = failures.iter().map(|f| f.1.as_str()).collect::<Vec<_>>().join("\n");
    assert!(!failures.iter().any(|f| f.0), "{what}: a kubeasz client was refused:\n{list}");
    assert!(failures.is_empty(), "{what}: no apiserver served a read:\n{list}");
    assert!(probes >= 5, "too few probes ({probes})");
}

const PODS: &str = "/api/v1/namespaces/default/pods";

/// The token of ServiceAccount `sa` in `default`, from the Secret the token controller made.
fn sa_token(kubectl: &dyn Fn(&[&str]) -> String, sa: &str) -> String {
    let start = Instant::now();
    let secret = loop {
        let s = kubectl(&["get", "serviceaccount", sa, "-o", "jsonpath={.secrets[0].name}"]);
        if !s.is_empty() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no token secret for {sa}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let token = kubectl(&["get", "secret", &secret, "-o", "jsonpath={.data.token}"]);
    let out = Command::new("sh").arg("-c").arg(format!("printf %s '{token}' | base64 -d")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn kubeasz_control_plane_is_taken_over_without_an_outage(_shared: &Lab) {
    let lab = Lab::up_with_spare(&format!("kc{}", std::process::id()), 3, 1).expect("3-host lab and a spare host");
    fill_store(&lab);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let svc_cidr = ezk::lab::inventory::SERVICE_CIDR;
    let pod_cidr = ezk::lab::inventory::CLUSTER_CIDR;
    let svc_ip = svc_cidr.replace(".0/", ".1/");
    let svc_ip = svc_ip.split('/').next().unwrap();

    // kubeasz's deploy machine: ssl/ and the kubeconfigs in clusters/<name>/.
    let ssl = lab.cluster_dir().join("ssl");
    let config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(lab.cluster_dir().join("config.yml")).unwrap()).unwrap();
    let cert_hosts: Vec<&str> = config["MASTER_CERT_HOSTS"].as_sequence().map(|s| s.iter().filter_map(|h| h.as_str()).collect()).unwrap_or_default();
    kubeasz::ssl_for(&ssl, &ip_refs, &ip_refs, svc_ip, &cert_hosts);
    kubeasz::control_plane(&ssl);
    // ... and for the nodes (every host): kube-proxy's, and each kubelet's under kubeasz's name.
    kubeasz::leaf(&ssl, "kube-proxy", "system:kube-proxy", None, &[], 36500);
    for h in &lab.hosts {
        let sans = ["IP:127.0.0.1".to_string(), format!("IP:{}", h.ip), format!("DNS:{}", h.name)];
        kubeasz::leaf(&ssl, &format!("{}-kubelet", h.name), &format!("system:node:{}", h.name), Some("system:nodes"), &sans, 36500);
    }
    let admin_kc = kubeconfig(&ssl, "admin", "admin", &format!("https://{}:6443", ips[0]));
    std::fs::write(lab.cluster_dir().join("kubectl.kubeconfig"), &admin_kc).unwrap();
    // The clients keep their own copies (kubeasz's admin kubeconfig's files).
    let certs = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "kubernetes.pem", "kubernetes-key.pem", "admin.pem", "admin-key.pem", "kube-proxy.pem"] {
        std::fs::copy(ssl.join(f), certs.path().join(f)).unwrap();
    }
    let dir = certs.path();
    std::fs::write(dir.join("kubeconfig"), &admin_kc).unwrap();
    let file = |name: &str| std::fs::read(ssl.join(name)).unwrap();

    // kubeasz's etcd, then its masters.
    kubeasz_etcd(&lab, &ssl, dir, &ips);
    let bins: Vec<(&str, Vec<u8>)> = UNITS.iter().chain(&["kubectl"]).map(|b| (*b, std::fs::read(stored(&lab, b)).unwrap())).collect();
    for i in 0..3 {
        for (b, bytes) in &bins {
            put(&lab, i, &format!("/opt/kube/bin/{b}"), bytes, "0755");
        }
        for f in ["ca-key.pem", "aggregator-proxy.pem", "aggregator-proxy-key.pem"] {
            put(&lab, i, &format!("{SSL}/{f}"), &file(f), "0644");
        }
        let own = format!("https://{}:6443", ips[i]);
        for who in ["kube-controller-manager", "kube-scheduler"] {
            put(&lab, i, &format!("/etc/kubernetes/{who}.kubeconfig"), kubeconfig(&ssl, &format!("system:{who}"), who, &own).as_bytes(), "0644");
        }
        put(&lab, i, "/root/.kube/config", kubeconfig(&ssl, "admin", "admin", &own).as_bytes(), "0644");
        put(&lab, i, "/etc/systemd/system/kube-apiserver.service", apiserver_unit(&ips[i], &ips, svc_cidr).as_bytes(), "0644");
        put(&lab, i, "/etc/systemd/system/kube-controller-manager.service", controller_manager_unit(&ips[i], svc_cidr, pod_cidr).as_bytes(), "0644");
        put(&lab, i, "/etc/systemd/system/kube-scheduler.service", scheduler_unit(&ips[i]).as_bytes(), "0644");
        lab.sh(i, "systemctl daemon-reload && systemctl enable -q kube-apiserver kube-controller-manager kube-scheduler && systemctl start --no-block kube-apiserver kube-controller-manager kube-scheduler");
    }
    let admin = Cred::Cert(dir.to_path_buf());
    for ip in &ips {
        wait_read(dir, std::slice::from_ref(ip), &admin, "/readyz", 240);
    }
    println!("  kubeasz's control plane serves on {} masters", ips.len());

    // A ServiceAccount allowed to read the namespace, its token from the token controller
    // (signed with ca-key.pem by kube-controller-manager), and a bound token from the API.
    let kubectl = |args: &[&str]| {
        let out = Command::new(stored(&lab, "kubectl")).arg("--kubeconfig").arg(dir.join("kubeconfig")).arg("--request-timeout=10s").args(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // kubeasz lets its apiservers' kubelet client (`kubernetes.pem`, user kubernetes) use the
    // kubelets' API (logs, exec).
    kubectl(&["create", "clusterrolebinding", "kubernetes-crb", "--clusterrole=system:kubelet-api-admin", "--user=kubernetes"]);
    kubectl(&["create", "serviceaccount", "kz-reader"]);
    kubectl(&["create", "rolebinding", "kz-reader", "--clusterrole=view", "--serviceaccount=default:kz-reader"]);
    let token = sa_token(&kubectl, "kz-reader");
    std::fs::write(dir.join("tokenrequest.json"), r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":7200}}"#).unwrap();
    let bound = kubectl(&["create", "--raw", "/api/v1/namespaces/default/serviceaccounts/kz-reader/token", "-f", &dir.join("tokenrequest.json").to_string_lossy()]);
    let bound: serde_json::Value = serde_json::from_str(&bound).unwrap();
    let bound = Cred::Token(bound["status"]["token"].as_str().expect("a bound token").to_string());
    let legacy = Cred::Token(token);
    let pods = PODS;
    for c in [&admin, &legacy, &bound] {
        wait_read(dir, &ips, c, pods, 30);
    }

    // Step 02 first (etcd), then 04, under clients reading every 0.2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(stop.clone(), ips.clone(), dir.to_path_buf(), [admin.clone(), legacy.clone()]);
    let run = setup_ok(&lab, "02", &["--allow-client-cutoff"]);
    println!("  timing: setup 02 under kubeasz's apiservers {:.2}s", run.secs);
    let before: Vec<(u64, u64)> = (0..3).map(|i| unit_times(&lab, i, "kube-apiserver")).collect();
    let out = lab.ezk(&["setup", &lab.name, "04", "--plan"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert!(!plan.contains("--allow-client-cutoff") && !plan.contains("changed /etc/kubernetes/ssl/kubernetes.pem"), "{plan}");
    let run = setup_ok(&lab, "04", &[]);
    finish(&stop, prober, "setup 02 and 04");
    println!("  timing: setup 04 on kubeasz's masters {:.2}s, {} changed", run.secs, ips.iter().map(|ip| run.count(ip, "changed")).sum::<u64>());
    let hosts: Vec<usize> = (0..3).collect();
    unit_restarted_one_at_a_time(&lab, &hosts, "kube-apiserver", &before, "setup 04");

    // Every credential kubeasz's cluster handed out still works, on every master.
    for ip in &ips {
        for (c, what) in [(&admin, "admin.pem"), (&legacy, "the token secret"), (&bound, "the bound token")] {
            assert_eq!(read(dir, std::slice::from_ref(ip), 0, c, pods), Ok(()), "{what} on {ip}");
        }
    }
    for i in 0..3 {
        let unit = lab.sh(i, "cat /etc/systemd/system/kube-apiserver.service");
        assert!(unit.contains("--client-ca-file=/etc/kubernetes/ssl/ca.pem"), "host {i}: {unit}");
        // kubeasz's certificates do the job: kept, not issued anew.
        for f in ["ca.pem", "kubernetes.pem", "aggregator-proxy.pem"] {
            assert_eq!(lab.sh(i, &format!("sha256sum {SSL}/{f} | cut -d' ' -f1")), ezk::pki::sha256_hex(&file(f)), "host {i}: {f} replaced");
        }
    }
    // The token controller now signs with ezk's sa.key (kubeasz's ca-key.pem): a token issued
    // after the takeover authenticates too.
    kubectl(&["create", "serviceaccount", "kz-after"]);
    kubectl(&["create", "rolebinding", "kz-after", "--clusterrole=view", "--serviceaccount=default:kz-after"]);
    let after = Cred::Token(sa_token(&kubectl, "kz-after"));
    for ip in &ips {
        assert_eq!(read(dir, std::slice::from_ref(ip), 0, &after, pods), Ok(()), "a token issued after the takeover, on {ip}");
    }

    // A re-run changes nothing, restarts nothing.
    let times: Vec<Vec<(u64, u64)>> = (0..3).map(|i| UNITS.iter().map(|u| unit_times(&lab, i, u)).collect()).collect();
    let again = setup_ok(&lab, "04", &[]);
    assert_nothing_changed(&again, &ips);
    println!("  timing: setup 04 re-run {:.2}s", again.secs);
    let after: Vec<Vec<(u64, u64)>> = (0..3).map(|i| UNITS.iter().map(|u| unit_times(&lab, i, u)).collect()).collect();
    assert_eq!(after, times, "a re-run restarted a control-plane unit");

    let dns = svc_ip.rsplit_once('.').map(|(net, _)| format!("{net}.2")).unwrap();
    nodes_are_taken_over(&lab, &ssl, dir, &ips, [admin, legacy], &kubectl, pod_cidr, &dns);
}

/// kubeasz's kubelet configuration (its kube-node role's fields), but for the eviction
/// thresholds: the lab hosts share this machine's disk, so kubeasz's percentages would evict
/// on a machine other work fills; the lab's 1Gi instead.
fn kubelet_config(dns: &str) -> String {
    format!(
        "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\naddress: 0.0.0.0\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 2m0s\n    enabled: true\n  x509:\n    clientCAFile: {SSL}/ca.pem\nauthorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 5m0s\n    cacheUnauthorizedTTL: 30s\ncgroupDriver: systemd\ncgroupsPerQOS: true\nclusterDNS:\n- {dns}\nclusterDomain: cluster.local\nconfigMapAndSecretChangeDetectionStrategy: Watch\ncontainerLogMaxFiles: 3\ncontainerLogMaxSize: 10Mi\nenforceNodeAllocatable:\n- pods\neventBurst: 10\neventRecordQPS: 5\nevictionHard:\n  imagefs.available: 1Gi\n  memory.available: 300Mi\n  nodefs.available: 1Gi\nevictionPressureTransitionPeriod: 5m0s\nfailSwapOn: true\nfileCheckFrequency: 40s\nhairpinMode: hairpin-veth\nhealthzBindAddress: 0.0.0.0\nhealthzPort: 10248\nhttpCheckFrequency: 40s\nimageGCHighThresholdPercent: 85\nimageGCLowThresholdPercent: 80\nimageMinimumGCAge: 2m0s\nkubeAPIBurst: 100\nkubeAPIQPS: 50\nmakeIPTablesUtilChains: true\nmaxOpenFiles: 1000000\nmaxPods: 110\nnodeLeaseDurationSeconds: 40\nnodeStatusReportFrequency: 1m0s\nnodeStatusUpdateFrequency: 10s\noomScoreAdj: -999\npodPidsLimit: 1024\nport: 10250\nreadOnlyPort: 0\nresolvConf: /etc/resolv.conf\nruntimeRequestTimeout: 2m0s\nserializeImagePulls: true\nstreamingConnectionIdleTimeout: 4h0m0s\nsyncFrequency: 1m0s\ntlsCertFile: {SSL}/kubelet.pem\ntlsPrivateKeyFile: {SSL}/kubelet-key.pem\n"
    )
}

/// kubeasz's kubelet unit for node `name` (3.1's flags for a 1.20 kubelet on containerd; its
/// Debian-only `ExecStartPre` remounting /sys/fs/cgroup read-write is left out: a lab host may
/// not remount it).
fn kubelet_unit(name: &str, sandbox: &str) -> String {
    let flags = [
        "--config=/var/lib/kubelet/config.yaml".to_string(),
        "--cni-bin-dir=/opt/kube/bin".into(),
        "--cni-conf-dir=/etc/cni/net.d".into(),
        "--container-runtime=remote".into(),
        "--container-runtime-endpoint=unix:///run/containerd/containerd.sock".into(),
        format!("--hostname-override={name}"),
        "--image-pull-progress-deadline=5m".into(),
        "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig".into(),
        "--network-plugin=cni".into(),
        format!("--pod-infra-container-image={sandbox}"),
        "--root-dir=/var/lib/kubelet".into(),
        "--v=2".into(),
    ];
    format!(
        "[Unit]\nDescription=Kubernetes Kubelet\nDocumentation=https://github.com/GoogleCloudPlatform/kubernetes\n\n[Service]\nWorkingDirectory=/var/lib/kubelet\nExecStart=/opt/kube/bin/kubelet \\\n  {}\nRestart=always\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n",
        flags.join(" \\\n  ")
    )
}

/// kubeasz's kube-proxy configuration for node `name` at `ip`, with the lab's conntrack
/// setting (0: the table size is read-only in a lab host; kubeasz's 32768 per core would stop
/// kube-proxy from starting).
fn kube_proxy_config(ip: &str, name: &str, pod_cidr: &str) -> String {
    format!(
        "kind: KubeProxyConfiguration\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: {ip}\nclientConnection:\n  kubeconfig: \"/etc/kubernetes/kube-proxy.kubeconfig\"\nclusterCIDR: \"{pod_cidr}\"\nconntrack:\n  maxPerCore: 0\n  min: 0\n  tcpCloseWaitTimeout: 1h0m0s\n  tcpEstablishedTimeout: 24h0m0s\nhealthzBindAddress: {ip}:10256\nhostnameOverride: \"{name}\"\nmetricsBindAddress: {ip}:10249\nmode: \"iptables\"\n"
    )
}

const KUBE_PROXY_UNIT: &str = "[Unit]\nDescription=Kubernetes Kube-Proxy Server\nDocumentation=https://github.com/GoogleCloudPlatform/kubernetes\nAfter=network.target\n\n[Service]\nWorkingDirectory=/var/lib/kube-proxy\nExecStart=/opt/kube/bin/kube-proxy \\\n  --config=/var/lib/kube-proxy/kube-proxy-config.yaml\nRestart=always\nRestartSec=5\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n";

/// `ezk setup 05` on kubelets and kube-proxies kubeasz set up (on every host: each is a node
/// too), with containerd from `ezk setup 03` (kubeasz's containerd is step 03's business):
/// the nodes keep their Node objects, a pod running before keeps running (same container, no
/// restart), the API serves its logs after (apiserver → kubelet on kubeasz's kubelet
/// certificate, kept), and the API clients are never refused. Then 01 and add-node of the
/// spare host, likewise.
#[allow(clippy::too_many_arguments)]
fn nodes_are_taken_over(lab: &Lab, ssl: &Path, dir: &Path, ips: &[String], creds: [Cred; 2], kubectl: &dyn Fn(&[&str]) -> String, pod_cidr: &str, dns: &str) {
    let run = setup_ok(lab, "03", &[]);
    println!("  timing: setup 03 (ezk's containerd) {:.2}s", run.secs);
    let names: Vec<String> = lab.hosts.iter().map(|h| h.name.clone()).collect();
    let bins: Vec<(&str, Vec<u8>)> = ["kubelet", "kube-proxy"].iter().map(|b| (*b, std::fs::read(stored(lab, b)).unwrap())).collect();
    let file = |name: &str| std::fs::read(ssl.join(name)).unwrap();
    for i in 0..3 {
        let (ip, name) = (&ips[i], &names[i]);
        let stem = format!("{name}-kubelet");
        for (b, bytes) in &bins {
            put(lab, i, &format!("/opt/kube/bin/{b}"), bytes, "0755");
        }
        put(lab, i, &format!("{SSL}/kubelet.pem"), &file(&format!("{stem}.pem")), "0644");
        put(lab, i, &format!("{SSL}/kubelet-key.pem"), &file(&format!("{stem}-key.pem")), "0644");
        let own = format!("https://{ip}:6443");
        put(lab, i, "/etc/kubernetes/kubelet.kubeconfig", kubeconfig(ssl, &format!("system:node:{name}"), &stem, &own).as_bytes(), "0644");
        put(lab, i, "/etc/kubernetes/kube-proxy.kubeconfig", kubeconfig(ssl, "kube-proxy", "kube-proxy", &own).as_bytes(), "0644");
        put(lab, i, "/var/lib/kubelet/config.yaml", kubelet_config(dns).as_bytes(), "0644");
        put(lab, i, "/etc/systemd/system/kubelet.service", kubelet_unit(name, "ezk.local/pause:3.4").as_bytes(), "0644");
        put(lab, i, "/var/lib/kube-proxy/kube-proxy-config.yaml", kube_proxy_config(ip, name, pod_cidr).as_bytes(), "0644");
        put(lab, i, "/etc/systemd/system/kube-proxy.service", KUBE_PROXY_UNIT.as_bytes(), "0644");
        // kubeasz names each node on the masters in /etc/hosts (here every host is a master).
        let hosts_lines: String = ips.iter().zip(&names).map(|(ip, n)| format!("grep -q ' {n}$' /etc/hosts || echo '{ip}    {n}' >> /etc/hosts; ")).collect();
        lab.sh(i, &format!("{hosts_lines}mkdir -p /etc/cni/net.d && systemctl daemon-reload && systemctl enable -q kubelet kube-proxy && systemctl start --no-block kubelet kube-proxy"));
    }
    let nodes = || kubectl(&["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{"\n"}{end}"#]);
    let start = Instant::now();
    while nodes().lines().count() < 3 {
        assert!(start.elapsed() < Duration::from_secs(180), "kubeasz's kubelets did not register: {}", nodes());
        std::thread::sleep(Duration::from_secs(1));
    }
    let nodes_before = nodes();
    // A pod on the host network (no CNI here), pinned to the last node.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: kz-sleeper, namespace: default}}\nspec:\n  nodeName: {}\n  hostNetwork: true\n  tolerations: [{{operator: Exists}}]\n  containers:\n  - name: c\n    image: ezk.local/busybox:1.35.0\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo kubeasz-pod; sleep 36000\"]\n",
        names[2]
    );
    std::fs::write(dir.join("pod.yaml"), pod).unwrap();
    kubectl(&["apply", "-f", &dir.join("pod.yaml").to_string_lossy()]);
    let state = || kubectl(&["get", "pod", "kz-sleeper", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}"]);
    let start = Instant::now();
    while !state().starts_with("Running ") {
        assert!(start.elapsed() < Duration::from_secs(120), "the pod does not run: {}", state());
        std::thread::sleep(Duration::from_secs(1));
    }
    let pod_before = state();
    assert_eq!(kubectl(&["logs", "kz-sleeper"]), "kubeasz-pod");

    let before: Vec<(u64, u64)> = (0..3).map(|i| unit_times(lab, i, "kubelet")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let creds_again = creds.clone();
    let prober = probe(stop.clone(), ips.to_vec(), dir.to_path_buf(), creds);
    let run = setup_ok(lab, "05", &[]);
    finish(&stop, prober, "setup 05");
    println!("  timing: setup 05 on kubeasz's nodes {:.2}s, {} changed", run.secs, ips.iter().map(|ip| run.count(ip, "changed")).sum::<u64>());
    for (i, b) in before.iter().enumerate() {
        assert!(unit_times(lab, i, "kubelet").1 > b.1, "kubelet on host {i} not restarted");
        // kubeasz's kubelet certificate does the job: kept.
        let kept = lab.sh(i, &format!("sha256sum {SSL}/kubelet.pem | cut -d' ' -f1"));
        assert_eq!(kept, ezk::pki::sha256_hex(&file(&format!("{}-kubelet.pem", names[i]))), "host {i}: kubelet.pem issued anew");
        // Through the node's kube-lb now, as ezk's nodes reach the apiservers.
        let server = lab.sh(i, "grep server: /etc/kubernetes/kubelet.kubeconfig /etc/kubernetes/kube-proxy.kubeconfig");
        assert_eq!(server.matches("server: https://127.0.0.1:").count(), 2, "host {i}: {server}");
        // kubeasz's kube-proxy certificate too (kubeasz's copy as it was made is in `dir`).
        let kc = lab.sh(i, "cat /etc/kubernetes/kube-proxy.kubeconfig");
        let orig = std::fs::read(dir.join("kube-proxy.pem")).unwrap();
        assert!(kc.contains(&ezk::pki::kubeconfig::base64(&orig)), "host {i}: kube-proxy's certificate issued anew:\n{kc}");
    }
    assert_eq!(file("kube-proxy.pem"), std::fs::read(dir.join("kube-proxy.pem")).unwrap(), "ssl/kube-proxy.pem issued anew");
    assert_eq!(nodes(), nodes_before, "a Node object was replaced");
    let start = Instant::now();
    loop {
        let s = state();
        assert_eq!(s.split(' ').nth(1), pod_before.split(' ').nth(1), "the pod's container was replaced: {s}");
        if s == pod_before {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the pod is not back to {pod_before}: {s}");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(kubectl(&["logs", "kz-sleeper"]), "kubeasz-pod");

    let again = setup_ok(lab, "05", &[]);
    assert_nothing_changed(&again, ips);
    println!("  timing: setup 05 re-run {:.2}s", again.secs);

    // Day 2: ezk's 01 on kubeasz's hosts, then `ezk add-node` of the spare host, under the same
    // clients: the new node registers and gets ready; the old nodes, their kubelets and the pod
    // are left alone.
    let new = lab.spare.first().cloned().expect("a spare host");
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(stop.clone(), ips.to_vec(), dir.to_path_buf(), creds_again);
    let run = setup_ok(lab, "01", &[]);
    println!("  timing: setup 01 on kubeasz's hosts {:.2}s", run.secs);
    let kubelets: Vec<(u64, u64)> = (0..3).map(|i| unit_times(lab, i, "kubelet")).collect();
    let r = ezk_json(lab, &["add-node", &lab.name, &new.ip, &format!("k8s_nodename={}", new.name)]);
    assert_eq!(r.code, 0, "add-node failed:\n{}", r.output);
    finish(&stop, prober, "setup 01 and add-node");
    println!("  timing: add-node {:.2}s", r.secs);
    let start = Instant::now();
    loop {
        let ready = kubectl(&["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#]);
        if ready.lines().any(|l| l == format!("{}=True", new.name)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{} not ready: {ready}", new.name);
        std::thread::sleep(Duration::from_secs(1));
    }
    let now = nodes();
    assert_eq!(now.lines().count(), 4, "{now}");
    for line in nodes_before.lines() {
        assert!(now.lines().any(|l| l == line), "a Node object was replaced: {line} not in\n{now}");
    }
    assert_eq!(state(), pod_before, "the pod's container was replaced or restarted");
    for (i, k) in kubelets.iter().enumerate() {
        assert_eq!(&unit_times(lab, i, "kubelet"), k, "add-node restarted the kubelet on host {i}");
    }
}
