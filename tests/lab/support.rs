//! Shared helpers for lab tests: bring a lab up/down through the real `ezk` binary, run
//! commands on its hosts over SSH with strict host-key checking, and find leftovers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A registered lab test: `run` panics on failure.
pub struct Test {
    pub name: &'static str,
    pub run: fn(&Lab),
}

/// One booted host, as `ezk lab up` reported it.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ip: String,
}

/// A running lab in its own temporary ezk home. Dropping it tears it down.
pub struct Lab {
    pub name: String,
    /// The ezk home: `clusters/<name>/` lives here.
    pub home: PathBuf,
    pub hosts: Vec<Host>,
    /// Hosts booted beyond `hosts` and left out of the inventory (`ezk lab up --spare`).
    pub spare: Vec<Host>,
    /// N of 198.18.N.0/24.
    pub index: u8,
    /// ifindex of the bridge and of each host veth at `up` time: leftovers are these very
    /// links, not a later lab that reused the subnet number.
    links: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
    downed: std::cell::Cell<bool>,
}

/// The Kubernetes lab: 5 hosts (etcd + masters on 1-3, workers 4-5, ex_lb + VIP on 4-5) and one
/// spare host outside the inventory (for `ezk add-node`), booted
/// by the first test that asks for it and torn down (and checked) at the end of the suite.
static CLUSTER_LAB: Mutex<Option<Lab>> = Mutex::new(None);

/// Run `f` on the Kubernetes lab, booting it first if no test has yet. One test at a time.
pub fn with_cluster_lab(f: impl FnOnce(&Lab)) {
    let mut guard = CLUSTER_LAB.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let name = format!("k{}", std::process::id());
        println!("  booting the Kubernetes lab {name} (5 hosts + 1 spare)");
        *guard = Some(Lab::up_with_spare(&name, 5, 1).expect("the 5-host Kubernetes lab comes up"));
    }
    f(guard.as_ref().expect("set above"));
}

/// Tear the Kubernetes lab down if a test booted it: what is left behind (empty = clean), or
/// None when it was never booted.
pub fn cluster_lab_teardown() -> Option<Vec<String>> {
    let lab = CLUSTER_LAB.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let left = lab.down_and_check();
    drop(lab);
    Some(left)
}

/// Labs to remove on interrupt: (home, name).
static LIVE: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

/// The `ezk` binary under test (see `common::ezk`).
pub use crate::common::ezk::bin as ezk_bin;

/// Lab state root, as ezk resolves it.
pub fn lab_root() -> PathBuf {
    std::env::var_os("EZK_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/ezk"))
}

pub use ezk::lab::sys::is_root;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Lab {
    /// `ezk lab up <name> --hosts <n>` in a fresh temporary home.
    pub fn up(name: &str, n: usize) -> Result<Lab, String> {
        Lab::up_with_spare(name, n, 0)
    }

    /// `ezk lab up <name> --hosts <n> --spare <spare>`: `spare` more hosts, not in the inventory.
    pub fn up_with_spare(name: &str, n: usize, spare: usize) -> Result<Lab, String> {
        let tmp = tempfile::Builder::new()
            .prefix("ezk-lab-test")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let home = tmp.path().to_path_buf();
        LIVE.lock().unwrap().push((home.clone(), name.to_string()));
        let out = crate::common::ezk::command(&home)
            .args(["lab", "up", name, "--hosts", &n.to_string(), "--spare", &spare.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            down(&home, name);
            return Err(format!("ezk lab up {name} failed:\n{}", text(&out)));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut hosts: Vec<Host> = stdout
            .lines()
            .skip_while(|l| !l.starts_with("HOST"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Host {
                    name: f[0].to_string(),
                    ip: f[1].to_string(),
                }
            })
            .collect();
        if hosts.len() != n + spare {
            down(&home, name);
            return Err(format!("expected {} hosts in the table, got:\n{stdout}", n + spare));
        }
        let spare_hosts = hosts.split_off(n);
        let index: u8 = hosts[0]
            .ip
            .split('.')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .ok_or("bad ip")?;
        let mut links = vec![format!("ezkbr{index}")];
        links.extend((1..=n + spare).map(|i| format!("vb-ez{index}-{i}")));
        let links = links
            .into_iter()
            .map(|l| {
                let idx = std::fs::read_to_string(format!("/sys/class/net/{l}/ifindex"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                (l, idx)
            })
            .collect();
        Ok(Lab {
            name: name.to_string(),
            home,
            hosts,
            spare: spare_hosts,
            index,
            links,
            _tmp: tmp,
            downed: Default::default(),
        })
    }

    /// `clusters/<name>/`.
    pub fn cluster_dir(&self) -> PathBuf {
        self.home.join("clusters").join(&self.name)
    }
    /// The lab's private key.
    pub fn key(&self) -> PathBuf {
        self.cluster_dir().join("ssh/id_ed25519")
    }
    /// The lab's known_hosts (the hosts' real keys).
    pub fn known_hosts(&self) -> PathBuf {
        self.cluster_dir().join("known_hosts")
    }
    /// The generated kubeasz inventory text.
    pub fn inventory(&self) -> String {
        std::fs::read_to_string(self.cluster_dir().join("hosts")).expect("inventory written")
    }
    /// The ex_lb VIP (labs of 5+ hosts).
    pub fn vip(&self) -> String {
        format!("198.18.{}.250", self.index)
    }

    /// ssh to host `i` with the lab key, only the lab's known_hosts, strict host-key checking.
    pub fn ssh_cmd(&self, i: usize) -> Command {
        ssh_with(&self.key(), &self.known_hosts(), &self.hosts[i].ip)
    }

    /// Run `cmd` on host `i` (via `sh -c` remotely); the raw output.
    pub fn ssh(&self, i: usize, cmd: &str) -> Output {
        self.ssh_cmd(i)
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    /// Run `cmd` on host `i`, panic (with its output) unless it succeeds; trimmed stdout.
    pub fn sh(&self, i: usize, cmd: &str) -> String {
        let out = self.ssh(i, cmd);
        assert!(
            out.status.success(),
            "on {} `{cmd}` failed ({}): {}",
            self.hosts[i].name,
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Power host `i` off (SIGTERM to its systemd-nspawn, as `down` does; SIGKILL after 20 s)
    /// and wait until it is gone: for tests of unreachable hosts. `down` still cleans it up.
    pub fn stop_host(&self, i: usize) {
        self.stop_host_named(&self.hosts[i].name);
    }

    /// `stop_host` by the host's name (a spare host too).
    pub fn stop_host_named(&self, name: &str) {
        let dir = lab_root()
            .join("labs")
            .join(&self.name)
            .join("hosts")
            .join(name);
        let pids = nspawn_pids_under(&dir);
        assert!(!pids.is_empty(), "host {name} is not running");
        let kill = |sig: &str, pid: u32| {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        };
        pids.iter().for_each(|&p| kill("TERM", p));
        let start = std::time::Instant::now();
        while !nspawn_pids_under(&dir).is_empty() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                nspawn_pids_under(&dir)
                    .into_iter()
                    .for_each(|p| kill("KILL", p));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Run `ezk --home <home> <args>`.
    pub fn ezk(&self, args: &[&str]) -> Output {
        crate::common::ezk::command(&self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ezk runs")
    }

    /// `ezk lab down`, then list whatever of this lab is still there (empty = clean).
    pub fn down_and_check(&self) -> Vec<String> {
        let out = self.ezk(&["lab", "down", &self.name]);
        self.downed.set(true);
        LIVE.lock()
            .unwrap()
            .retain(|(h, n)| !(h == &self.home && n == &self.name));
        let mut left = Vec::new();
        if !out.status.success() {
            left.push(format!("`ezk lab down` failed: {}", text(&out)));
        }
        left.extend(self.leftovers());
        left
    }

    /// Pieces of this lab that exist now: live nspawn processes, mounts, links, state, files.
    pub fn leftovers(&self) -> Vec<String> {
        let lab_dir = lab_root().join("labs").join(&self.name);
        let mut left = Vec::new();
        for pid in nspawn_pids_under(&lab_dir) {
            left.push(format!("systemd-nspawn pid {pid}"));
        }
        let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        for (pid, host) in container_pids(&names) {
            left.push(format!("pid {pid} inside host {host}"));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&lab_dir))
        {
            left.push(format!("mount {m}"));
        }
        for (link, idx) in &self.links {
            let now = std::fs::read_to_string(format!("/sys/class/net/{link}/ifindex"))
                .unwrap_or_default();
            if !idx.is_empty() && now.trim() == idx {
                left.push(format!("link {link}"));
            }
        }
        // Each host's cgroups, and any process in them: a container's processes have a root
        // of their own, so only their cgroup tells which host made them.
        let own: Vec<String> = (1..=self.hosts.len())
            .map(|i| format!("ezk-lab-ez{}-{i}", self.index))
            .collect();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            // A zombie keeps naming its last cgroup but holds nothing (not even the cgroup).
            if is_zombie(&e.path()) {
                continue;
            }
            let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if let Some(host) = own.iter().find(|h| {
                cg.contains(&format!("/{h}/")) || cg.lines().any(|l| l.ends_with(&format!("/{h}")))
            }) {
                left.push(format!(
                    "pid {} in the cgroups of {host}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
        for d in cgroup_dirs_named(Path::new("/sys/fs/cgroup"), &own, 6) {
            left.push(format!("cgroup {}", d.display()));
        }
        if lab_dir.exists() {
            left.push(format!("state dir {}", lab_dir.display()));
        }
        for f in ["hosts", "config.yml", "known_hosts", "ssh"] {
            let p = self.cluster_dir().join(f);
            if p.exists() {
                left.push(format!("file {}", p.display()));
            }
        }
        left
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.downed.get() {
            let _ = self.down_and_check();
        }
    }
}

/// ssh with the given key and known_hosts only, strict, no agent or user config.
pub fn ssh_with(key: &Path, known_hosts: &Path, ip: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{ip}"));
    c
}

/// Whether `/proc/<pid>` (given as that dir) is a zombie or gone: it has exited.
fn is_zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// Directories below `dir` (at most `depth` levels) whose name is one of `names`.
pub fn cgroup_dirs_named(dir: &Path, names: &[String], depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if names.contains(&name) {
            out.push(e.path());
        } else {
            out.extend(cgroup_dirs_named(&e.path(), names, depth - 1));
        }
    }
    out
}

/// Live (non-zombie) systemd-nspawn processes whose root directory is under `dir`.
pub fn nspawn_pids_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with("systemd-nspawn") && cmd.contains(&needle) && !is_zombie(&e.path()) {
            pids.push(pid);
        }
    }
    pids
}

/// Live processes running inside a lab host (their root has the image marker and one of these
/// host names), whoever started them.
pub fn container_pids(names: &[&str]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        if !root.join("etc/ezk-image").exists() {
            continue;
        }
        let host = std::fs::read_to_string(root.join("etc/hostname"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if names.contains(&host.as_str()) && !is_zombie(&e.path()) {
            found.push((pid, host));
        }
    }
    found
}

fn down(home: &Path, name: &str) {
    let _ = crate::common::ezk::command(home)
        .args(["lab", "down", name])
        .stdin(Stdio::null())
        .output();
    LIVE.lock()
        .unwrap()
        .retain(|(h, n)| !(h == home && n == name));
}

/// On Ctrl-C or SIGTERM: tear down every live lab, then exit 130.
pub fn install_interrupt_handler() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("sigterm");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("interrupted: tearing down labs");
        let live: Vec<(PathBuf, String)> = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
        for (home, name) in live {
            down(&home, &name);
        }
        std::process::exit(130);
    });
}

/// The message of a caught panic.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// Parse an Ansible INI hosts file into (section, lines) in order, comments and blanks dropped.
pub fn ini_sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((sec.to_string(), Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(line.to_string());
        }
    }
    out
}

/// The lines of one INI section (empty if absent).
pub fn section<'a>(ini: &'a [(String, Vec<String>)], name: &str) -> &'a [String] {
    ini.iter()
        .find(|(s, _)| s == name)
        .map(|(_, l)| l.as_slice())
        .unwrap_or(&[])
}

/// First whitespace-separated field of each line (the host address).
pub fn hosts_of(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

// --- The Kubernetes lab's API, from this machine (shared by the kube_*, day2* and upgrade tests).

/// The lab's kubectl (v1.20.2, from the store) with the deploy machine's admin kubeconfig
/// (`clusters/<name>/kubectl.kubeconfig`, server: the VIP).
pub fn kubectl(lab: &Lab) -> Command {
    let mut c = Command::new(lab.home.join("down/bin/kubernetes-server/1.20.2/kubectl"));
    c.arg("--kubeconfig")
        .arg(lab.cluster_dir().join("kubectl.kubeconfig"))
        .arg("--request-timeout=5s")
        .stdin(Stdio::null());
    c
}

/// `kubectl <args>`, which must succeed; its stdout.
pub fn kubectl_ok(lab: &Lab, args: &[&str]) -> String {
    let out = kubectl(lab).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kubectl apply -f -` of `manifest`; fails the test when kubectl does.
pub fn kubectl_apply(lab: &Lab, manifest: &str) {
    use std::io::Write;
    let mut apply = kubectl(lab);
    apply.args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = apply.spawn().unwrap();
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// What the API reads through the VIP saw: how many, and each failure's output.
pub struct VipReads {
    pub n: usize,
    pub fails: Vec<String>,
}

impl VipReads {
    /// Every read was served, but for what kube-apiserver passes on of etcd's own behaviour
    /// instead of retrying, one failed request at most per event:
    /// - etcd's "leader changed" for a request in flight when the leadership moves, however
    ///   planned the move (kubernetes/kubernetes#112152): at most `leader_changes`;
    /// - gRPC's "missing content-type field" for a request in flight on a member as it stops:
    ///   on a TLS client listener etcd serves gRPC through its HTTP server, and on SIGTERM it
    ///   sends HTTP/2 GOAWAY and about 0.1 s later stops the gRPC server outright (etcd 3.4 and
    ///   3.5/3.6 alike unless `--listen-client-http-urls` splits gRPC onto its own listener,
    ///   which etcd 3.4.23, the lab's, does not have); a request still being served then gets an
    ///   empty HTTP 200, which no client retries (kubernetes/kubernetes#65062). At most
    ///   `member_stops`, the etcd stops (restarts) of the run.
    ///
    /// Any other failure, or more of either than its events, fails.
    pub fn assert_served(&self, what: &str, leader_changes: u64, member_stops: u64) {
        let n = self.n;
        let last = self.fails.last().map(String::as_str).unwrap_or("");
        let (leader, stopping, other) = self.kinds();
        assert!(
            other == 0 && leader <= leader_changes && stopping <= member_stops,
            "{} of {n} requests through the VIP failed during {what}: {leader} with etcd's \"leader changed\" ({leader_changes} leader change(s) in etcd), {stopping} in flight on an etcd member that stopped ({member_stops} member stop(s)), {other} other; last: {last}",
            self.fails.len()
        );
    }

    /// (leader changed, in flight on a stopping member, any other) among the failures.
    fn kinds(&self) -> (u64, u64, u64) {
        let (mut leader, mut stopping, mut other) = (0, 0, 0);
        for f in &self.fails {
            if f.contains("etcdserver: leader changed") {
                leader += 1;
            } else if f.contains("transport: missing content-type field") {
                stopping += 1;
            } else {
                other += 1;
            }
        }
        (leader, stopping, other)
    }

    /// For the log: "none failed" or what failed and why it is allowed.
    pub fn summary(&self) -> String {
        let (leader, stopping, other) = self.kinds();
        if self.fails.is_empty() {
            return "none failed".into();
        }
        let mut parts = Vec::new();
        if leader > 0 {
            parts.push(format!("{leader} failed with etcd's \"leader changed\" while its leadership moved"));
        }
        if stopping > 0 {
            parts.push(format!("{stopping} failed in flight on an etcd member as it stopped"));
        }
        if other > 0 {
            parts.push(format!("{other} failed otherwise"));
        }
        parts.join(", ")
    }
}

/// Real API reads through the VIP (the kube-system namespace, as admin) until `stop`. Not
/// /readyz: a draining apiserver answers that with an error on purpose (so load balancers take
/// it out) while it still serves requests.
pub fn poll_vip(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<VipReads> {
    let kubectl_path = lab.home.join("down/bin/kubernetes-server/1.20.2/kubectl");
    let kc = lab.cluster_dir().join("kubectl.kubeconfig");
    std::thread::spawn(move || {
        let mut r = VipReads { n: 0, fails: Vec::new() };
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new(&kubectl_path)
                .arg("--kubeconfig")
                .arg(&kc)
                .args(["--request-timeout=5s", "get", "--raw", "/api/v1/namespaces/kube-system"])
                .output()
                .unwrap();
            r.n += 1;
            if !out.status.success() || !out.stdout.starts_with(b"{\"kind\":\"Namespace\"") {
                r.fails.push(text(&out));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    })
}

pub fn node_registered(lab: &Lab, name: &str) -> bool {
    kubectl_ok(lab, &["get", "nodes", "-o", "name"]).lines().any(|l| l == format!("node/{name}"))
}

/// Until `f` gives Some (at most `secs`).
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every JSON document printed (del-node: the host's clean, then the others' steps).
pub fn json_docs(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout).into_iter::<Value>().map(|d| d.expect("JSON")).collect()
}
