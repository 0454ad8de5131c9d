//! Steps 01 prepare and 02 etcd, run for real with ezk's CLI on the shared 3-host lab (issue 7):
//! a TLS-only etcd cluster that answers etcdctl from this machine, unit files systemd accepts,
//! second runs that change nothing, plans that say exactly what a variable change would do,
//! and hosts failing partway through a step while the others stay consistent.
//!
//! Tests run in the order listed and build on each other: the store is filled once, 01 and 02
//! run once, later tests re-run and break things on the cluster the earlier ones made.
//! Step 10 (ex-lb) and chrony need 5 hosts: see `steps_lb.rs`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "steps::prepare_then_etcd_tls_cluster", run: prepare_then_etcd_tls_cluster },
    Test { name: "steps::etcd_no_plaintext_listener", run: etcd_no_plaintext_listener },
    Test { name: "steps::etcd_unit_passes_systemd_verify", run: etcd_unit_passes_systemd_verify },
    Test { name: "steps::second_run_changes_nothing_and_plans_nothing", run: second_run_changes_nothing_and_plans_nothing },
    Test { name: "steps::plan_after_var_change_is_exact_and_applies_nothing", run: plan_after_var_change_is_exact_and_applies_nothing },
    Test { name: "steps::unreachable_host_others_converge_then_rerun_converges", run: unreachable_host_then_rerun_converges },
    Test { name: "steps::failed_restart_mid_step_then_rerun_converges", run: failed_restart_mid_step_then_rerun_converges },
];

/// The artifact store filled by the first lab that needed it (`<home>/down`).
static STORE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Fill `<home>/down` with the lab-debian set: `ezk download --from-apt` once per test run
/// (Debian's real etcd, etcdctl, kubectl ... via apt-get download); later labs get a copy.
pub fn fill_store(lab: &Lab) {
    let mut store = STORE.lock().unwrap_or_else(|e| e.into_inner());
    let dst = lab.home.join("down");
    if dst.exists() {
        return;
    }
    if let Some(src) = store.as_ref().filter(|p| p.exists()) {
        let ok = Command::new("cp").arg("-a").arg(src).arg(&dst).status().expect("cp runs");
        assert!(ok.success(), "copying the store {} failed", src.display());
        return;
    }
    let start = Instant::now();
    let out = lab.ezk(&["download", &lab.name, "--from-apt"]);
    assert!(out.status.success(), "ezk download --from-apt failed:\n{}", text(&out));
    println!("  timing: ezk download --from-apt {:.1}s", start.elapsed().as_secs_f32());
    *store = Some(dst);
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One `ezk setup --json` run: exit code, the parsed recap, everything printed, seconds.
pub struct Run {
    pub code: i32,
    pub recap: Value,
    pub output: String,
    pub secs: f32,
}

impl Run {
    /// A recap counter of one host (hosts are keyed by inventory address).
    pub fn count(&self, ip: &str, what: &str) -> u64 {
        self.recap["hosts"][ip][what]
            .as_u64()
            .unwrap_or_else(|| panic!("no {what} for {ip} in the recap:\n{}", self.output))
    }
    /// The planned changes of one host (`--plan` runs), without warnings: the lab's container
    /// kernel refuses some kernel modules and sysctl keys, which 01 reports on every run.
    pub fn plan(&self, ip: &str) -> Vec<String> {
        self.recap["plan"][ip]
            .as_array()
            .unwrap_or_else(|| panic!("no plan for {ip}:\n{}", self.output))
            .iter()
            .map(|l| l.as_str().unwrap_or_default().to_string())
            .filter(|l| !l.contains("] warning: "))
            .collect()
    }
}

/// `ezk setup <cluster> <step> --json [extra...]`.
pub fn setup(lab: &Lab, step: &str, extra: &[&str]) -> Run {
    let mut args = vec!["setup", lab.name.as_str(), step, "--json"];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let out = lab.ezk(&args);
    let secs = start.elapsed().as_secs_f32();
    println!("  ezk {} ({secs:.1}s)", args[..].join(" "));
    let output = text(&out);
    let recap = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`ezk {}` printed no JSON recap ({e}):\n{output}", args.join(" ")));
    Run { code: out.status.code().unwrap_or(-1), recap, output, secs }
}

/// Run a step and require success on every listed host.
pub fn setup_ok(lab: &Lab, step: &str, extra: &[&str]) -> Run {
    let r = setup(lab, step, extra);
    assert_eq!(r.code, 0, "ezk setup {step} {extra:?} failed:\n{}", r.output);
    r
}

/// Every host in the recap changed nothing and failed nothing.
pub fn assert_nothing_changed(r: &Run, ips: &[String]) {
    for ip in ips {
        assert_eq!(r.count(ip, "changed"), 0, "a second run changed {ip}:\n{}", r.output);
        assert_eq!(r.count(ip, "failed"), 0, "{}", r.output);
    }
}

/// The etcd hosts of the shared lab (the 3-host layout: every host).
fn etcd_ips(lab: &Lab) -> Vec<String> {
    lab.hosts.iter().take(3).map(|h| h.ip.clone()).collect()
}

/// etcdctl on this machine against one member, over TLS with the cluster's client cert.
fn etcdctl(lab: &Lab, ip: &str, args: &[&str]) -> Output {
    let ssl = lab.cluster_dir().join("ssl");
    Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{ip}:2379"))
        .arg(format!("--cacert={}", ssl.join("etcd-ca.pem").display()))
        .arg(format!("--cert={}", ssl.join("etcd-client.pem").display()))
        .arg(format!("--key={}", ssl.join("etcd-client-key.pem").display()))
        .args(["--dial-timeout=3s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// `endpoint health --cluster` through `via`: every member listed and healthy. Retried for up
/// to `secs` (members just restarted by a step may still be electing).
fn assert_cluster_healthy(lab: &Lab, via: &str, members: &[String], secs: u64) {
    let start = Instant::now();
    loop {
        let out = etcdctl(lab, via, &["endpoint", "health", "--cluster", "-w", "json"]);
        let health: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let healthy: Vec<String> = health
            .iter()
            .filter(|e| e["health"] == true)
            .filter_map(|e| e["endpoint"].as_str().map(String::from))
            .collect();
        let mut want: Vec<String> = members.iter().map(|m| format!("https://{m}:2379")).collect();
        let mut got = healthy.clone();
        want.sort();
        got.sort();
        if out.status.success() && got == want && health.len() == members.len() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "etcd cluster not healthy through {via} (want {want:?}):\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A put through one member is read through another.
fn assert_put_get(lab: &Lab, put_ip: &str, get_ip: &str, value: &str) {
    let out = etcdctl(lab, put_ip, &["put", "/ezk-test/key", value]);
    assert!(out.status.success(), "put via {put_ip}: {}", text(&out));
    let out = etcdctl(lab, get_ip, &["get", "/ezk-test/key", "--print-value-only"]);
    assert!(out.status.success(), "get via {get_ip}: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), value, "read via {get_ip}");
}

/// The command line of the running etcd on host `i`.
fn etcd_cmdline(lab: &Lab, i: usize) -> String {
    lab.sh(i, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value etcd)/cmdline")
}

fn prepare_then_etcd_tls_cluster(lab: &Lab) {
    fill_store(lab);
    let ips = etcd_ips(lab);
    let r = setup_ok(lab, "01", &[]);
    println!("  timing: 01 prepare first run {:.1}s (3 hosts)", r.secs);
    for ip in &ips {
        assert!(r.count(ip, "changed") > 0, "01 changed nothing on {ip}:\n{}", r.output);
    }
    // What 01 leaves that users rely on: dirs, the CA, kubectl + admin kubeconfig on masters.
    for i in 0..3 {
        lab.sh(i, "test -d /opt/kube/bin && test -s /etc/kubernetes/ssl/ca.pem");
        lab.sh(i, "test -x /opt/kube/bin/kubectl && test -s /root/.kube/config");
        assert_eq!(lab.sh(i, "swapon --show --noheadings | wc -l"), "0");
    }
    let r = setup_ok(lab, "02", &[]);
    println!("  timing: 02 etcd first run {:.1}s (3 members)", r.secs);
    for (i, ip) in ips.iter().enumerate() {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
        assert_eq!(lab.sh(i, "systemctl is-active etcd"), "active");
        assert_eq!(lab.sh(i, "systemctl is-enabled etcd"), "enabled");
        assert_eq!(lab.sh(i, "stat -c %a /etc/kubernetes/ssl/etcd-key.pem"), "600");
    }
    assert_cluster_healthy(lab, &ips[0], &ips, 5);
    assert_put_get(lab, &ips[0], &ips[1], "written-on-member-1");
    assert_put_get(lab, &ips[2], &ips[0], "written-on-member-3");
}

/// No etcd port answers plaintext; each answers TLS with the cluster's client certificate.
fn etcd_no_plaintext_listener(lab: &Lab) {
    let ssl = lab.cluster_dir().join("ssl");
    let curl = |args: &[&str]| {
        Command::new("curl").args(["-sS", "-m", "5"]).args(args).stdin(Stdio::null()).output().expect("curl runs")
    };
    let file = |f: &str| ssl.join(f).display().to_string();
    let (ca, cert, key) = (file("etcd-ca.pem"), file("etcd-client.pem"), file("etcd-client-key.pem"));
    let tls = vec!["--cacert", ca.as_str(), "--cert", cert.as_str(), "--key", key.as_str()];
    for (i, ip) in etcd_ips(lab).iter().enumerate() {
        // Exactly these sockets belong to etcd: nothing else (no metrics or plaintext port).
        let mut socks: Vec<String> = lab
            .sh(i, "ss -Hltnp | grep '\"etcd\"' | awk '{print $4}'")
            .lines()
            .map(String::from)
            .collect();
        socks.sort();
        let mut want = vec![format!("127.0.0.1:2379"), format!("{ip}:2379"), format!("{ip}:2380")];
        want.sort();
        assert_eq!(socks, want, "etcd listening sockets on {ip}");
        for (port, path) in [(2379, "/health"), (2380, "/version")] {
            let out = curl(&[&format!("http://{ip}:{port}{path}")]);
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                !out.status.success() && !body.contains("health") && !body.contains("etcd"),
                "plaintext http://{ip}:{port}{path} answered: {}",
                text(&out)
            );
            let mut args = tls.clone();
            let url = format!("https://{ip}:{port}{path}");
            args.extend(["--http1.1", url.as_str()]);
            let out = curl(&args);
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "TLS {url} failed: {}", text(&out));
            assert!(body.contains(if port == 2379 { "\"health\":\"true\"" } else { "etcdserver" }), "{url}: {body}");
            // Without a client certificate the member refuses (client-cert-auth on both ports).
            let out = curl(&["--cacert", ca.as_str(), "--http1.1", url.as_str()]);
            assert!(!String::from_utf8_lossy(&out.stdout).contains("true") && !String::from_utf8_lossy(&out.stdout).contains("etcdserver"), "{url} answered without a client cert");
        }
        // The loopback client listener is TLS too.
        let out = lab.ssh(i, "curl -sS -m 5 http://127.0.0.1:2379/health");
        assert!(
            !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("health"),
            "plaintext http://127.0.0.1:2379 on {ip} answered: {}",
            text(&out)
        );
    }
}

/// `systemd-analyze verify` on the host accepts the etcd unit (and prints nothing).
fn etcd_unit_passes_systemd_verify(lab: &Lab) {
    for i in 0..3 {
        let out = lab.sh(i, "systemd-analyze verify --man=no /etc/systemd/system/etcd.service 2>&1");
        assert_eq!(out, "", "systemd-analyze verify etcd.service on {}", lab.hosts[i].name);
    }
}

fn second_run_changes_nothing_and_plans_nothing(lab: &Lab) {
    let ips = etcd_ips(lab);
    for step in ["01", "02"] {
        let r = setup_ok(lab, step, &[]);
        println!("  timing: {step} re-run {:.1}s", r.secs);
        assert_nothing_changed(&r, &ips);
        let p = setup_ok(lab, step, &["--plan"]);
        assert_eq!(p.recap["plan_only"], true);
        for ip in &ips {
            assert_eq!(p.plan(ip), Vec::<String>::new(), "--plan {step} after a run on {ip}");
            assert_eq!(p.count(ip, "changed"), 0);
        }
    }
}

fn plan_after_var_change_is_exact_and_applies_nothing(lab: &Lab) {
    let ips = etcd_ips(lab);
    let before: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                lab.sh(i, "sha256sum /etc/systemd/system/etcd.service"),
                lab.sh(i, "systemctl show -p MainPID --value etcd"),
            )
        })
        .collect();
    let p = setup_ok(lab, "02", &["--plan", "-e", "ETCD_SNAPSHOT_COUNT=40000"]);
    for (i, ip) in ips.iter().enumerate() {
        let lines = p.plan(ip);
        let diff: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("[etcd]     -") || l.starts_with("[etcd]     +"))
            .collect();
        assert_eq!(diff, ["[etcd]     -  --snapshot-count=50000 \\", "[etcd]     +  --snapshot-count=40000 \\"], "{lines:#?}");
        let actions: Vec<&str> = lines.iter().map(String::as_str).filter(|l| !l.starts_with("[etcd]     ")).collect();
        assert_eq!(
            actions,
            ["[etcd] changed /etc/systemd/system/etcd.service", "[etcd] systemctl daemon-reload", "[etcd] restart etcd (etcd unit file)"],
            "{lines:#?}"
        );
        let now = (
            lab.sh(i, "sha256sum /etc/systemd/system/etcd.service"),
            lab.sh(i, "systemctl show -p MainPID --value etcd"),
        );
        assert_eq!(now, before[i], "--plan changed the unit file or restarted etcd on {ip}");
        assert!(etcd_cmdline(lab, i).contains("--snapshot-count=50000 "));
    }
    // The same -e for 01 touches nothing there (etcd variables only reach the etcd role).
    let p = setup_ok(lab, "01", &["--plan", "-e", "ETCD_SNAPSHOT_COUNT=40000"]);
    for ip in &ips {
        assert_eq!(p.plan(ip), Vec::<String>::new());
    }
}

/// Puts a host's bridge-side link back up even when the test panics.
struct LinkDown(String);
impl LinkDown {
    fn new(link: String) -> LinkDown {
        let ok = Command::new("ip").args(["link", "set", &link, "down"]).status().expect("ip runs");
        assert!(ok.success(), "ip link set {link} down");
        LinkDown(link)
    }
}
impl Drop for LinkDown {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "set", &self.0, "up"]).status();
    }
}

/// Host 3 is cut off the network while 02 applies a change: the other two apply it, stay a
/// healthy quorum; back online, a re-run changes host 3 only and the cluster is whole again.
fn unreachable_host_then_rerun_converges(lab: &Lab) {
    let ips = etcd_ips(lab);
    let change = ["-e", "ETCD_SNAPSHOT_COUNT=40000"];
    let cut = LinkDown::new(format!("vb-ez{}-3", lab.index));
    let mut args = change.to_vec();
    args.extend(["--connect-timeout", "2"]);
    let r = setup(lab, "02", &args);
    assert_ne!(r.code, 0, "a run with an unreachable host reported success:\n{}", r.output);
    // Bounded: a stopping leader that cannot hand over to the cut-off member must not stall
    // the others' restarts for systemd's default 90 s stop timeout.
    assert!(r.secs < 45.0, "the run took {:.0}s with one member cut off:\n{}", r.secs, r.output);
    assert_eq!(r.count(&ips[2], "unreachable"), 1, "{}", r.output);
    for (i, ip) in ips.iter().enumerate().take(2) {
        assert_eq!(r.count(ip, "failed"), 0, "{}", r.output);
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
        assert!(etcd_cmdline(lab, i).contains("--snapshot-count=40000 "), "{ip} not restarted with the change");
    }
    assert_put_get(lab, &ips[0], &ips[1], "quorum-without-member-3");
    drop(cut);
    let r = setup_ok(lab, "02", &change);
    assert_nothing_changed(&r, &ips[..2]);
    assert!(r.count(&ips[2], "changed") > 0, "the re-run did not change host 3:\n{}", r.output);
    assert!(etcd_cmdline(lab, 2).contains("--snapshot-count=40000 "));
    assert_cluster_healthy(lab, &ips[0], &ips, 15);
    assert_put_get(lab, &ips[0], &ips[2], "member-3-caught-up");
}

/// On host 2, etcd refuses to start (a fault drop-in standing in for a broken disk or binary):
/// 02 applies a change, host 2 fails at the restart after its new unit file landed, hosts 1
/// and 3 finish and keep a quorum. Once the fault is gone, a re-run changes host 2 only and the
/// member comes back with the new configuration.
fn failed_restart_mid_step_then_rerun_converges(lab: &Lab) {
    let ips = etcd_ips(lab);
    let change = ["-e", "ETCD_SNAPSHOT_COUNT=30000"];
    let fault = "/etc/systemd/system/etcd.service.d/zz-ezk-test-fault.conf";
    lab.sh(
        1,
        &format!(
            "mkdir -p /etc/systemd/system/etcd.service.d && printf '[Service]\\nExecStartPre=/bin/false\\nRestart=no\\n' > {fault} && systemctl daemon-reload"
        ),
    );
    struct Fault<'a>(&'a Lab, &'static str);
    impl Drop for Fault<'_> {
        fn drop(&mut self) {
            let _ = self.0.ssh(1, &format!("rm -f {} && systemctl daemon-reload", self.1));
        }
    }
    let fault_guard = Fault(lab, fault);
    let r = setup(lab, "02", &change);
    assert_ne!(r.code, 0, "{}", r.output);
    assert_eq!(r.count(&ips[1], "failed"), 1, "{}", r.output);
    assert!(r.output.contains("systemctl restart etcd failed"), "failure not named:\n{}", r.output);
    assert!(lab.sh(1, "cat /etc/systemd/system/etcd.service").contains("--snapshot-count=30000"));
    assert_ne!(lab.sh(1, "systemctl is-active etcd || true"), "active");
    for i in [0, 2] {
        assert_eq!(r.count(&ips[i], "failed"), 0, "{}", r.output);
        assert!(etcd_cmdline(lab, i).contains("--snapshot-count=30000 "));
    }
    assert_put_get(lab, &ips[0], &ips[2], "quorum-without-member-2");
    drop(fault_guard);
    let r = setup_ok(lab, "02", &change);
    assert_nothing_changed(&r, &[ips[0].clone(), ips[2].clone()]);
    assert!(r.count(&ips[1], "changed") > 0, "{}", r.output);
    assert!(etcd_cmdline(lab, 1).contains("--snapshot-count=30000 "));
    assert_cluster_healthy(lab, &ips[1], &ips, 15);
    assert_put_get(lab, &ips[2], &ips[1], "member-2-caught-up");
    // Back to the inventory's values: every member restarts once, then nothing to do.
    let r = setup_ok(lab, "02", &[]);
    for ip in &ips {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
    }
    assert_cluster_healthy(lab, &ips[0], &ips, 15);
    assert_nothing_changed(&setup_ok(lab, "02", &[]), &ips);
}
