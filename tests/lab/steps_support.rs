//! Helpers for the steps suites (`steps`, `steps_fail`, `steps_lb`): fill the artifact store,
//! run `ezk setup --json` and read its recap, talk to the etcd cluster from this machine.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Lab;

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
        let ok = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&dst)
            .status()
            .expect("cp runs");
        assert!(ok.success(), "copying the store {} failed", src.display());
        return;
    }
    let start = Instant::now();
    let out = lab.ezk(&["download", &lab.name, "--from-apt"]);
    assert!(
        out.status.success(),
        "ezk download --from-apt failed:\n{}",
        text(&out)
    );
    println!(
        "  timing: ezk download --from-apt {:.1}s",
        start.elapsed().as_secs_f32()
    );
    *store = Some(dst);
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
    /// One host's `--plan` lines of `role`, split: the diff lines (`-`/`+`, context dropped)
    /// and the actions.
    pub fn plan_split(&self, ip: &str, role: &str) -> (Vec<String>, Vec<String>) {
        let diff_tag = format!("[{role}]     ");
        let (diff, actions): (Vec<String>, Vec<String>) =
            self.plan(ip).into_iter().partition(|l| l.starts_with(&diff_tag));
        let changed = diff
            .into_iter()
            .filter(|l| l[diff_tag.len()..].starts_with(['-', '+']))
            .collect();
        (changed, actions)
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
    let mut args = vec!["setup", lab.name.as_str(), step];
    args.extend_from_slice(extra);
    ezk_json(lab, &args)
}

/// `ezk <args> --json`, whose stdout is one JSON recap.
pub fn ezk_json(lab: &Lab, args: &[&str]) -> Run {
    let mut args = args.to_vec();
    args.push("--json");
    let start = Instant::now();
    let out = lab.ezk(&args);
    let secs = start.elapsed().as_secs_f32();
    println!("  ezk {} ({secs:.1}s)", args[..].join(" "));
    let output = text(&out);
    let recap = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`ezk {}` printed no JSON recap ({e}):\n{output}",
            args.join(" ")
        )
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        recap,
        output,
        secs,
    }
}

/// Run a step and require success on every listed host.
pub fn setup_ok(lab: &Lab, step: &str, extra: &[&str]) -> Run {
    let r = setup(lab, step, extra);
    assert_eq!(
        r.code, 0,
        "ezk setup {step} {extra:?} failed:\n{}",
        r.output
    );
    r
}

/// Every host in the recap changed nothing and failed nothing.
pub fn assert_nothing_changed(r: &Run, ips: &[String]) {
    for ip in ips {
        assert_eq!(
            r.count(ip, "changed"),
            0,
            "a second run changed {ip}:\n{}",
            r.output
        );
        assert_eq!(r.count(ip, "failed"), 0, "{}", r.output);
    }
}

/// The etcd hosts of the shared lab (the 3-host layout: every host).
pub fn etcd_ips(lab: &Lab) -> Vec<String> {
    lab.hosts.iter().take(3).map(|h| h.ip.clone()).collect()
}

/// etcdctl on this machine against one member, over TLS with the cluster's client cert.
pub fn etcdctl(lab: &Lab, ip: &str, args: &[&str]) -> Output {
    let ssl = lab.cluster_dir().join("ssl");
    Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{ip}:2379"))
        .arg(format!("--cacert={}", ssl.join("etcd-ca.pem").display()))
        .arg(format!("--cert={}", ssl.join("etcd-client.pem").display()))
        .arg(format!(
            "--key={}",
            ssl.join("etcd-client-key.pem").display()
        ))
        .args(["--dial-timeout=3s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// etcd's raft term as the member on `ip` sees it. Every leader change (an election, a
/// planned hand-over) raises it by at least one, so the difference over an operation bounds the
/// leader changes it caused.
pub fn raft_term(lab: &Lab, ip: &str) -> u64 {
    raft_term_in(&etcdctl(lab, ip, &["endpoint", "status", "-w", "json"]))
}

/// The address among `ips` whose member leads etcd (each asked about itself).
pub fn etcd_leader(lab: &Lab, ips: &[String]) -> String {
    ips.iter()
        .find(|ip| leader_endpoint(&etcdctl(lab, ip, &["endpoint", "status", "-w", "json"])).is_some())
        .cloned()
        .expect("one member leads")
}

/// The endpoint, in the output of `etcdctl endpoint status -w json`, whose member leads.
pub fn leader_endpoint(out: &Output) -> Option<String> {
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.iter()
        .find(|e| e["Status"]["leader"].as_u64().is_some() && e["Status"]["leader"] == e["Status"]["header"]["member_id"])
        .and_then(|e| e["Endpoint"].as_str().map(String::from))
}

/// The highest raft term in the output of `etcdctl endpoint status -w json`.
pub fn raft_term_in(out: &Output) -> u64 {
    assert!(out.status.success(), "endpoint status: {}", text(out));
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).expect("endpoint status JSON");
    v.iter()
        .filter_map(|e| e["Status"]["raftTerm"].as_u64().or_else(|| e["Status"]["header"]["raft_term"].as_u64()))
        .max()
        .expect("a raft term")
}

/// `endpoint health --cluster` through `via`: every member listed and healthy. Retried for up
/// to `secs` (members just restarted by a step may still be electing).
pub fn assert_cluster_healthy(lab: &Lab, via: &str, members: &[String], secs: u64) {
    let start = Instant::now();
    loop {
        let out = etcdctl(lab, via, &["endpoint", "health", "--cluster", "-w", "json"]);
        let health: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let healthy: Vec<String> = health
            .iter()
            .filter(|e| e["health"] == true)
            .filter_map(|e| e["endpoint"].as_str().map(String::from))
            .collect();
        let mut want: Vec<String> = members
            .iter()
            .map(|m| format!("https://{m}:2379"))
            .collect();
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
pub fn assert_put_get(lab: &Lab, put_ip: &str, get_ip: &str, value: &str) {
    let out = etcdctl(lab, put_ip, &["put", "/ezk-test/key", value]);
    assert!(out.status.success(), "put via {put_ip}: {}", text(&out));
    let out = etcdctl(lab, get_ip, &["get", "/ezk-test/key", "--print-value-only"]);
    assert!(out.status.success(), "get via {get_ip}: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        value,
        "read via {get_ip}"
    );
}

/// The command line of the running etcd on host `i`.
pub fn etcd_cmdline(lab: &Lab, i: usize) -> String {
    lab.sh(
        i,
        "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value etcd)/cmdline",
    )
}

/// The shared lab's etcd cluster exists: store filled, 01 and 02 run (once; later calls only
/// check that etcd is active on the first host).
pub fn ensure_etcd_cluster(lab: &Lab) {
    ensure_step(lab, "etcd", "02");
}

/// The shared lab's runtime exists: steps 01 and 03 have run (03 needs nothing of 02).
pub fn ensure_runtime(lab: &Lab) {
    ensure_step(lab, "containerd", "03");
}

/// Store filled, then 01 and `step`, unless `unit` (which `step` starts) already runs on the
/// first host.
fn ensure_step(lab: &Lab, unit: &str, step: &str) {
    fill_store(lab);
    if lab.ssh(0, &format!("systemctl is-active --quiet {unit}")).status.success() {
        return;
    }
    setup_ok(lab, "01", &[]);
    setup_ok(lab, step, &[]);
}
