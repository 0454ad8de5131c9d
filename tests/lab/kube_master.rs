//! Step 04 kube-master on the 5-host Kubernetes lab (3 masters + etcd on hosts 1-3, ex_lb + VIP
//! on hosts 4-5), with the real Kubernetes v1.20.2 binaries of the lab's artifact set: the API
//! answers through the VIP and on every master, Secrets are encrypted in etcd, service-account
//! tokens are signed with sa.key, leases move when a holder stops, the API survives a stopped
//! apiserver, and a flag change restarts the apiservers one at a time while the API stays up.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::steps_support::{assert_nothing_changed, etcdctl, fill_store, setup_ok, text};
use crate::support::{kubectl, kubectl_ok, poll_vip, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "kube_master::control_plane_behind_the_vip", run: control_plane_behind_the_vip },
    Test { name: "kube_master::secrets_are_encrypted_in_etcd", run: secrets_are_encrypted_in_etcd },
    Test { name: "kube_master::service_account_tokens_are_signed_with_sa_key", run: service_account_tokens_are_signed_with_sa_key },
    Test { name: "kube_master::leases_move_when_their_holder_stops", run: leases_move_when_their_holder_stops },
    Test { name: "kube_master::the_api_survives_a_stopped_apiserver", run: the_api_survives_a_stopped_apiserver },
    Test { name: "kube_master::a_flag_change_restarts_apiservers_one_at_a_time", run: a_flag_change_restarts_apiservers_one_at_a_time },
];

/// Hosts (indices) of the masters and the workers in the 5-host layout.
pub const MASTERS: [usize; 3] = [0, 1, 2];
pub const WORKERS: [usize; 2] = [3, 4];

/// Steps 01-04 done on the Kubernetes lab (the first caller runs `setup all`, later ones find
/// it done). Returns the first run's recap when this call made it.
pub fn ensure_control_plane(lab: &Lab) -> Option<crate::steps_support::Run> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::SeqCst) {
        return None;
    }
    fill_store(lab);
    let r = setup_ok(lab, "all", &[]);
    DONE.store(true, Ordering::SeqCst);
    Some(r)
}

fn ips(lab: &Lab, which: &[usize]) -> Vec<String> {
    which.iter().map(|&i| lab.hosts[i].ip.clone()).collect()
}

/// `/readyz` through `server` (default: the VIP in the kubeconfig).
fn readyz(lab: &Lab, server: Option<&str>) -> Result<String, String> {
    let mut c = kubectl(lab);
    if let Some(s) = server {
        c.arg("--server").arg(s);
    }
    let out = c.args(["get", "--raw", "/readyz"]).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(text(&out))
    }
}

fn control_plane_behind_the_vip(_: &Lab) {
    with_cluster_lab(|lab| {
        let first = ensure_control_plane(lab).expect("this test runs first");
        let masters = ips(lab, &MASTERS);
        for ip in &masters {
            assert!(first.count(ip, "changed") > 20, "04 did little on {ip}:\n{}", first.output);
        }
        // One SSH connection per host for the whole run of eight steps: one handshake each.
        let hosts = first.recap["hosts"].as_object().expect("hosts in the recap");
        assert_eq!(hosts.len(), 5, "{}", first.output);
        for (ip, h) in hosts {
            assert_eq!(h["handshakes"], 1, "{ip}: {h}");
        }
        // Through the VIP (the deploy machine's kubeconfig points there) and on each master.
        let kc = std::fs::read_to_string(lab.cluster_dir().join("kubectl.kubeconfig")).unwrap();
        assert!(kc.contains(&format!("server: https://{}:8443", lab.vip())), "{kc}");
        assert_eq!(readyz(lab, None).as_deref(), Ok("ok"));
        for ip in &masters {
            assert_eq!(readyz(lab, Some(&format!("https://{ip}:6443"))).as_deref(), Ok("ok"), "{ip}");
        }
        // Anonymous requests may read /readyz (the LBs' health checks) and nothing else; no
        // plaintext port anywhere.
        let anon = |path: &str| {
            let o = Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("https://{}:6443{path}", masters[0]))
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        assert_eq!(anon("/readyz"), "200");
        for path in ["/api", "/api/v1/secrets", "/apis", "/metrics", "/logs/"] {
            assert_eq!(anon(path), "403", "anonymous GET {path}");
        }
        for &i in &MASTERS {
            let listening = lab.sh(i, "ss -Hltn | awk '{print $4}'");
            for port in [":8080", ":10251", ":10252"] {
                assert!(!listening.lines().any(|l| l.ends_with(port)), "{port} open on host {i}:\n{listening}");
            }
            assert!(listening.contains("127.0.0.1:10257") && listening.contains("127.0.0.1:10259"), "{listening}");
        }
        // Leader leases of controller-manager and scheduler have a holder among the masters.
        for lease in ["kube-controller-manager", "kube-scheduler"] {
            let holder = lease_holder(lab, lease, 60);
            assert!(MASTERS.iter().any(|&i| holder == lab.hosts[i].name), "{lease} held by {holder}");
        }
        // The cluster CA key is on the masters only (kube-controller-manager signs with it);
        // workers and the deploy machine's ssl/ keep the rest.
        for &i in &MASTERS {
            assert_eq!(lab.sh(i, "stat -c %a /etc/kubernetes/ssl/ca-key.pem /etc/kubernetes/ssl/sa.key /etc/kubernetes/encryption-config.yaml"), "600\n600\n600");
        }
        for &i in &WORKERS {
            assert_eq!(lab.sh(i, "ls /etc/kubernetes/ssl/ca-key.pem /etc/kubernetes/ssl/sa.key 2>/dev/null | wc -l"), "0", "host {i}");
        }
        // The RBAC kube-apiserver needs on kubelets, applied once from the first master.
        let crb = kubectl_ok(lab, &["get", "clusterrolebinding", "ezk:kube-apiserver-kubelet-client", "-o", "jsonpath={.roleRef.name} {.subjects[0].name}"]);
        assert_eq!(crb, "system:kubelet-api-admin kube-apiserver-kubelet-client");
        // --plan shows what a change would do, never a secret: a lost encryption config is
        // named, its key is not printed (nor any private key); nothing changes on the host.
        let key = std::fs::read_to_string(lab.cluster_dir().join("ssl/encryption.key")).unwrap();
        lab.sh(0, "mv /etc/kubernetes/encryption-config.yaml /root/enc.bak");
        let p = setup_ok(lab, "04", &["--plan", "-e", "KUBE_APISERVER_AUDIT_MAXAGE=9"]);
        let (diff, actions) = p.plan_split(&masters[0], "kube-master");
        assert!(diff.iter().any(|l| l.contains("+  --audit-log-maxage=9")), "{diff:#?}");
        assert!(actions.iter().any(|l| l.contains("/etc/kubernetes/encryption-config.yaml")), "{actions:#?}");
        assert!(!p.output.contains(key.trim()), "--plan printed the encryption key");
        assert!(!p.output.contains("PRIVATE KEY"), "--plan printed a private key");
        assert_eq!(lab.sh(0, "test -e /etc/kubernetes/encryption-config.yaml && echo there || echo gone"), "gone");
        lab.sh(0, "mv /root/enc.bak /etc/kubernetes/encryption-config.yaml");
        // A re-run changes nothing and restarts nothing.
        let pids: Vec<String> = MASTERS.iter().map(|&i| main_pid(lab, i, "kube-apiserver")).collect();
        let again = setup_ok(lab, "04", &[]);
        assert_nothing_changed(&again, &masters);
        let after: Vec<String> = MASTERS.iter().map(|&i| main_pid(lab, i, "kube-apiserver")).collect();
        assert_eq!(pids, after, "a no-op run restarted an apiserver");
    });
}

fn main_pid(lab: &Lab, i: usize, unit: &str) -> String {
    lab.sh(i, &format!("systemctl show -p MainPID --value {unit}"))
}

/// The host name holding lease `name` in kube-system (waiting up to `secs` for one).
fn lease_holder(lab: &Lab, name: &str, secs: u64) -> String {
    let start = Instant::now();
    loop {
        let out = kubectl(lab)
            .args(["-n", "kube-system", "get", "lease", name, "-o", "jsonpath={.spec.holderIdentity}"])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some((host, _)) = id.split_once('_') {
            return host.to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "lease {name} has no holder: {}", text(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn secrets_are_encrypted_in_etcd(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let value = "ezk-plaintext-canary-31337";
        let _ = kubectl(lab).args(["delete", "secret", "ezk-canary", "--ignore-not-found"]).output();
        kubectl_ok(lab, &["create", "secret", "generic", "ezk-canary", &format!("--from-literal=v={value}")]);
        let raw = etcdctl(lab, &lab.hosts[0].ip, &["get", "/registry/secrets/default/ezk-canary", "--print-value-only"]);
        assert!(raw.status.success(), "{}", text(&raw));
        assert!(raw.stdout.starts_with(b"k8s:enc:aescbc:v1:key1:"), "not encrypted: {:?}", String::from_utf8_lossy(&raw.stdout[..raw.stdout.len().min(40)]));
        assert!(!raw.stdout.windows(value.len()).any(|w| w == value.as_bytes()), "the value is in etcd in plaintext");
        // ... and the API gives it back.
        let b64 = kubectl_ok(lab, &["get", "secret", "ezk-canary", "-o", "jsonpath={.data.v}"]);
        let mut dec = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        dec.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
        assert_eq!(String::from_utf8_lossy(&dec.wait_with_output().unwrap().stdout), value);
        // The key never left the deploy machine in anything but the masters' 0600 config.
        let key = std::fs::read_to_string(lab.cluster_dir().join("ssl/encryption.key")).unwrap();
        for &i in &WORKERS {
            assert_eq!(lab.sh(i, &format!("grep -rls '{}' /etc /var/lib 2>/dev/null | wc -l", key.trim())), "0");
        }
    });
}

/// base64url (JWT) without padding.
fn b64url(s: &str) -> Vec<u8> {
    let mut std = s.replace('-', "+").replace('_', "/");
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    let mut dec = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    dec.stdin.take().unwrap().write_all(std.as_bytes()).unwrap();
    dec.wait_with_output().unwrap().stdout
}

/// A JWT ES256 signature (r||s, 32 bytes each) as the DER openssl verifies.
fn es256_der(sig: &[u8]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&sig[..32]), int(&sig[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// `kubectl create --raw PATH -f -` with `body` on stdin: the JSON answer.
fn create_raw(lab: &Lab, path: &str, body: &str) -> serde_json::Value {
    let mut c = kubectl(lab);
    c.args(["create", "--raw", path, "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out: Output = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{path}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A ServiceAccount token for `audiences` (the API's own when empty).
fn sa_token(lab: &Lab, audiences: &[&str]) -> String {
    let req = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600, "audiences": audiences}});
    let v = create_raw(lab, "/api/v1/namespaces/default/serviceaccounts/ezk-probe/token", &req.to_string());
    v["status"]["token"].as_str().unwrap().to_string()
}

fn service_account_tokens_are_signed_with_sa_key(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let _ = kubectl(lab).args(["create", "serviceaccount", "ezk-probe"]).output();
        // A token for the audience ezk's apiservers named before (their issuer) still
        // authenticates, as one for kubeasz's "api" does: tokens pods hold stay good.
        for aud in ["https://kubernetes.default.svc.cluster.local", "api"] {
            let review = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": sa_token(lab, &[aud])}});
            let v = create_raw(lab, "/apis/authentication.k8s.io/v1/tokenreviews", &review.to_string());
            assert_eq!(v["status"]["authenticated"], true, "a token for {aud}: {v}");
        }
        let token = sa_token(lab, &[]);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
        assert_eq!(header["alg"], "ES256", "{header}");
        let claims: serde_json::Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
        // kubeasz's issuer and audiences (and ezk's former issuer among the audiences).
        assert_eq!(claims["iss"], "https://kubernetes.default.svc", "{claims}");
        assert_eq!(claims["aud"], serde_json::json!(["api", "istio-ca", "https://kubernetes.default.svc.cluster.local"]), "{claims}");
        // The signature verifies with the deploy machine's sa.pub, and not with the CA's key.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signed"), format!("{}.{}", parts[0], parts[1])).unwrap();
        std::fs::write(dir.path().join("sig"), es256_der(&b64url(parts[2]))).unwrap();
        let verify = |pubkey: &std::path::Path| {
            Command::new("openssl")
                .args(["dgst", "-sha256", "-verify"])
                .arg(pubkey)
                .arg("-signature")
                .arg(dir.path().join("sig"))
                .arg(dir.path().join("signed"))
                .output()
                .unwrap()
        };
        let ok = verify(&lab.cluster_dir().join("ssl/sa.pub"));
        assert!(ok.status.success(), "token does not verify with sa.pub: {}", text(&ok));
        let ca_pub = dir.path().join("ca.pub");
        let x = Command::new("openssl").args(["x509", "-pubkey", "-noout", "-in"]).arg(lab.cluster_dir().join("ssl/ca.pem")).output().unwrap();
        std::fs::write(&ca_pub, &x.stdout).unwrap();
        assert!(!verify(&ca_pub).status.success(), "the token verifies with the CA's key");
    });
}

fn leases_move_when_their_holder_stops(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        for (lease, unit) in [("kube-controller-manager", "kube-controller-manager"), ("kube-scheduler", "kube-scheduler")] {
            let holder = lease_holder(lab, lease, 60);
            let i = lab.hosts.iter().position(|h| h.name == holder).expect("holder is a lab host");
            lab.sh(i, &format!("systemctl stop {unit}"));
            // Lease duration 15 s: another master takes it within about that.
            let start = Instant::now();
            let new = loop {
                let h = lease_holder(lab, lease, 5);
                if h != holder {
                    break h;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "{lease} still held by the stopped {holder}");
                std::thread::sleep(Duration::from_secs(1));
            };
            assert!(MASTERS.iter().any(|&m| lab.hosts[m].name == new), "{lease} moved to {new}");
            lab.sh(i, &format!("systemctl start {unit}"));
        }
    });
}

fn the_api_survives_a_stopped_apiserver(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        lab.sh(0, "systemctl stop kube-apiserver");
        // haproxy marks the stopped backend down after its failed checks and retries refused
        // connections on another backend: no request through the VIP fails.
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        std::thread::sleep(Duration::from_secs(8));
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let n = api.n;
        lab.sh(0, "systemctl start kube-apiserver");
        assert!(n >= 10, "only {n} requests");
        api.assert_served("one apiserver down", 0, 0);
        // It comes back and is served again.
        let start = Instant::now();
        while readyz(lab, Some(&format!("https://{}:6443", lab.hosts[0].ip))).is_err() {
            assert!(start.elapsed() < Duration::from_secs(90), "apiserver on host 1 did not come back");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

/// systemd's monotonic timestamps of a unit (microseconds; one clock for every lab host: they
/// share this machine's kernel): (last stop began, last became active).
pub(crate) fn stop_and_ready(lab: &Lab, i: usize, unit: &str) -> (u64, u64) {
    let out = lab.sh(i, &format!("systemctl show -p InactiveEnterTimestampMonotonic -p ActiveEnterTimestampMonotonic {unit}"));
    let get = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    (get("InactiveEnterTimestampMonotonic"), get("ActiveEnterTimestampMonotonic"))
}

fn a_flag_change_restarts_apiservers_one_at_a_time(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let masters = ips(lab, &MASTERS);
        let other = |i: usize, unit: &str| main_pid(lab, i, unit);
        // (MainPID, NRestarts): systemd counts the restarts it makes itself (Restart=always),
        // not a `systemctl restart`.
        let cm = |i: usize| (other(i, "kube-controller-manager"), lab.sh(i, "systemctl show -p NRestarts --value kube-controller-manager"));
        let cm_before: Vec<(String, String)> = MASTERS.iter().map(|&i| cm(i)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_vip(lab, stop.clone());
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // Whether `unit` on master `i` exited on losing its leader lease since the run began.
        let lost_lease = |i: usize, unit: &str| lab.sh(i, &format!("journalctl -u {unit} --since @{since} --no-pager -q | grep -c 'leaderelection lost' || true")) != "0";
        let r = setup_ok(lab, "04", &["-e", "NODE_PORT_RANGE=30000-32000"]);
        stop.store(true, Ordering::SeqCst);
        let api = poller.join().unwrap();
        let n = api.n;
        for (&i, ip) in MASTERS.iter().zip(&masters) {
            // The unit file, daemon-reload, and the restart: nothing else — but for a scheduler
            // or controller-manager that led and exited as its own apiserver restarted (see
            // below): the same run then finds it stopped, systemd about to start it again, and
            // starts it.
            let restarted_after_lease_lost = ["kube-scheduler", "kube-controller-manager"]
                .iter()
                .filter(|u| r.output.contains(&format!("{ip} [kube-master] {u} running and enabled: changed")))
                .inspect(|u| assert!(lost_lease(i, u), "{ip}: {u} started by the run though it did not lose its lease:\n{}", r.output))
                .count() as u64;
            assert_eq!(r.count(ip, "changed"), 3 + restarted_after_lease_lost, "{ip}:\n{}", r.output);
        }
        assert!(n >= 5, "only {n} requests");
        api.assert_served("the rolling restart", 0, 0);
        for &i in &MASTERS {
            assert!(lab.sh(i, "systemctl cat kube-apiserver").contains("--service-node-port-range=30000-32000"));
        }
        // One at a time: each apiserver stopped only after the previous one was ready again.
        let mut windows: Vec<(u64, u64)> = MASTERS.iter().map(|&i| stop_and_ready(lab, i, "kube-apiserver")).collect();
        windows.sort();
        for w in windows.windows(2) {
            assert!(w[1].0 > w[0].1, "restarts overlap: {windows:?} (stop, ready) in µs");
        }
        // ezk restarts no controller-manager for an apiserver flag. A controller-manager talks to
        // its own master's apiserver: the leader exits when that apiserver is down for longer
        // than its lease's renew deadline (Kubernetes' design: it must not act without the
        // lease), and systemd starts it again — the new leader can meet the next restart the
        // same way. Such a restart is systemd's (NRestarts grew), or the run's start of a leader
        // that had just exited so (its journal says "leaderelection lost"), never a new process
        // without either.
        for (&i, (before, after)) in MASTERS.iter().zip(cm_before.iter().zip(MASTERS.iter().map(|&i| cm(i)))) {
            let by_systemd = after.1.parse::<u64>().unwrap_or(0) > before.1.parse::<u64>().unwrap_or(0);
            assert!(
                before.0 == after.0 || by_systemd || lost_lease(i, "kube-controller-manager"),
                "controller-manager on master {i} restarted for an apiserver flag: {before:?} -> {after:?}"
            );
        }
        // Back to the inventory's value (the same one-at-a-time restart), then quiet.
        setup_ok(lab, "04", &[]);
        assert_nothing_changed(&setup_ok(lab, "04", &[]), &masters);
    });
}
