//! The brief's security standards, checked with the real binary on the shared lab:
//! - no private key or kubeconfig client key in anything `ezk setup` prints (`-v`, `--plan`,
//!   `--json`) or logs, nor in `ezk certs`; keys 0600 (root) on the deploy machine and on hosts;
//! - bad input (even etcd group, broken `-e` template) and missing artifacts stop `setup` with
//!   file:line before any host is contacted (loopback listeners stand in as the hosts), as do an
//!   unconfirmed `destroy` and `setup 99`;
//! - a host whose SSH host key changed refuses the whole run, naming host, known_hosts and fix,
//!   and no host is changed;
//! - a remote write that fails leaves no temp file and the old content; the other hosts finish.
//!
//! Each test converges the lab itself (cheap when already converged) so it runs alone too.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ezk::exec::{Options, run_step};
use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, StepPlan, Task, Wave};

use crate::certs::converge;
use crate::support::{Lab, Test, ezk_bin, ssh_with};

pub const TESTS: &[Test] = &[
    Test { name: "audit::no_secret_printed_or_logged_and_keys_0600", run: no_secret_printed_or_logged_and_keys_0600 },
    Test { name: "audit::bad_input_and_missing_artifacts_contact_no_host", run: bad_input_and_missing_artifacts_contact_no_host },
    Test { name: "audit::changed_host_key_refuses_the_whole_run", run: changed_host_key_refuses_the_whole_run },
    Test { name: "audit::failed_write_leaves_no_temp_file_and_others_finish", run: failed_write_leaves_no_temp_file_and_others_finish },
];

const KEY: &str = "/etc/kubernetes/ssl/etcd-key.pem";
const KUBECONFIG: &str = "/root/.kube/config";
/// Written by step 01 on every host; the host-key test marks it to see whether a run touched it.
const PROFILE: &str = "/etc/profile.d/ezk-path.sh";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Run ezk, require success; stdout and stderr together (both must be free of secrets).
fn ezk_ok(lab: &Lab, args: &[&str]) -> String {
    let o = lab.ezk(args);
    assert!(o.status.success(), "ezk {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Pieces of secret material that must never be shown: the markers, and the actual base64 of
/// the etcd key and of the admin kubeconfig's client key (so a re-encoded leak is caught too).
fn secrets(lab: &Lab) -> Vec<String> {
    let mut s = vec!["PRIVATE KEY".to_string(), "client-key-data".to_string()];
    let key = std::fs::read_to_string(lab.cluster_dir().join("ssl/etcd-key.pem")).unwrap();
    s.extend(key.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).map(String::from));
    let kc = std::fs::read_to_string(lab.cluster_dir().join("kubectl.kubeconfig")).unwrap();
    let ckd = kc.lines().find_map(|l| l.trim().strip_prefix("client-key-data:")).expect("admin kubeconfig has client-key-data");
    s.push(ckd.trim().chars().take(40).collect());
    assert!(s.len() >= 4, "{s:?}");
    s
}

fn assert_no_secret(what: &str, out: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!out.contains(s.as_str()), "{what} shows secret material ({s:.30}…):\n{out}");
    }
}

fn no_secret_printed_or_logged_and_keys_0600(lab: &Lab) {
    converge(lab);
    let secrets = secrets(lab);
    let name = lab.name.as_str();
    // Key-bearing files changed on hosts, so plan/apply have a key file to rewrite.
    lab.sh(0, &format!("echo tampered >> {KEY}"));
    lab.sh(1, &format!("echo '# tampered' >> {KUBECONFIG}"));
    let h0 = &lab.hosts[0].ip;
    let h1 = &lab.hosts[1].ip;

    let mut outputs = Vec::new();
    let plan01 = ezk_ok(lab, &["setup", name, "01", "--plan", "-v"]);
    assert!(plan01.contains(&format!("{h1} [prepare] would change:")) && plan01.contains(&format!("changed {KUBECONFIG}: secret content changed")), "{plan01}");
    let plan02 = ezk_ok(lab, &["setup", name, "02", "--plan", "-v"]);
    assert!(plan02.contains(&format!("{h0} [etcd] would change:\n  changed {KEY}: secret content changed")), "{plan02}");
    let json = ezk_ok(lab, &["setup", name, "02", "--plan", "--json"]);
    assert!(json.contains("secret content changed"), "{json}");
    outputs.extend([("setup 01 --plan -v", plan01), ("setup 02 --plan -v", plan02), ("setup 02 --plan --json", json)]);
    // The real runs rewrite both files (their -v shows every remote script).
    outputs.push(("setup 01 -v", ezk_ok(lab, &["setup", name, "01", "-v"])));
    outputs.push(("setup 02 -v --json", ezk_ok(lab, &["setup", name, "02", "-v", "--json"])));
    let local = std::fs::read(lab.cluster_dir().join("ssl/etcd-key.pem")).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    assert_eq!(lab.sh(0, &format!("sha256sum < {KEY} | cut -d' ' -f1")), sha(&local), "key not restored");
    let certs = lab.ezk(&["certs", name, "-v"]);
    assert_eq!(certs.status.code(), Some(0), "{}", text(&certs));
    outputs.push(("certs -v", text(&certs)));
    for (what, out) in &outputs {
        assert_no_secret(what, out, &secrets);
    }
    let logs: Vec<_> = std::fs::read_dir(lab.cluster_dir().join("logs")).unwrap().flatten().collect();
    assert!(logs.len() >= 5, "run logs: {}", logs.len());
    for l in logs {
        let body = String::from_utf8_lossy(&std::fs::read(l.path()).unwrap()).into_owned();
        assert_no_secret(&l.path().display().to_string(), &body, &secrets);
    }

    // Private keys 0600, owned by root, on every host...
    for i in 0..lab.hosts.len() {
        for f in [KEY, KUBECONFIG] {
            assert_eq!(lab.sh(i, &format!("stat -c '%a %U:%G' {f}")), "600 root:root", "{f} on {}", lab.hosts[i].name);
        }
    }
    // ...and on the deploy machine: every key in ssl/ (a 0700 dir), the lab's SSH key, the
    // admin kubeconfig.
    let ssl = lab.cluster_dir().join("ssl");
    assert_eq!(mode(&ssl), 0o700);
    let mut keys = 0;
    for e in std::fs::read_dir(&ssl).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with("-key.pem") || n == "sa.key" {
            assert_eq!(mode(&e.path()), 0o600, "{n}");
            keys += 1;
        }
    }
    assert!(keys >= 10, "keys in ssl/: {keys}");
    assert_eq!(mode(&lab.key()), 0o600, "lab ssh key");
    assert_eq!(mode(&lab.cluster_dir().join("kubectl.kubeconfig")), 0o600);
}

/// Loopback listeners on 127.0.0.11.. (one port) that count the connections they get.
struct Listeners {
    port: u16,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Listeners {
    fn start(n: usize) -> Listeners {
        for _ in 0..20 {
            let first = TcpListener::bind("127.0.0.11:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let mut all = vec![first];
            for i in 1..n {
                match TcpListener::bind(format!("127.0.0.{}:{port}", 11 + i)) {
                    Ok(l) => all.push(l),
                    Err(_) => break,
                }
            }
            if all.len() < n {
                continue;
            }
            let (seen, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
            for l in all {
                l.set_nonblocking(true).unwrap();
                let (seen, stop) = (seen.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            // Dropped at once: ssh fails fast, the test only counts.
                            Ok(_) => {
                                seen.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                });
            }
            return Listeners { port, seen, stop };
        }
        panic!("no port free on 127.0.0.11..");
    }
    fn seen(&self) -> usize {
        // Let a late connection land before reading.
        std::thread::sleep(Duration::from_millis(50));
        self.seen.load(Ordering::Relaxed)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Removes a directory when dropped (also when the test fails).
struct RmDir(std::path::PathBuf);
impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bad_input_and_missing_artifacts_contact_no_host(lab: &Lab) {
    ezk_ok(lab, &["download", &lab.name, "--from-apt"]);
    let l = Listeners::start(lab.hosts.len());
    // The lab's own inventory, its hosts moved onto the loopback listeners.
    let name = format!("{}-lo", lab.name);
    let dir = lab.cluster_dir().with_file_name(&name);
    let _rm = RmDir(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(lab.cluster_dir().join("config.yml"), dir.join("config.yml")).unwrap();
    let mut hosts = lab.inventory();
    for (i, h) in lab.hosts.iter().enumerate() {
        hosts = hosts.replace(&format!("{} ", h.ip), &format!("127.0.0.{} ", 11 + i)).replace(&format!("{}\n", h.ip), &format!("127.0.0.{}\n", 11 + i));
    }
    hosts = hosts.replace("[all:vars]\n", &format!("[all:vars]\nansible_port={}\n", l.port));
    let good = hosts.clone();
    let write = |h: &str| std::fs::write(dir.join("hosts"), h).unwrap();
    let setup = |home: &Path, extra: &[&str]| {
        let mut c = Command::new(ezk_bin());
        c.arg("--home").arg(home).args(["setup", &name]).args(extra).args(["--connect-timeout", "2"]).stdin(Stdio::null());
        let o = c.output().unwrap();
        (o.status.code(), text(&o))
    };

    // Even etcd group: the error names hosts:<line> and the fix.
    let etcd_line = format!("127.0.0.{}\n", 10 + lab.hosts.len());
    let (head, tail) = good.split_once("[etcd]\n").unwrap();
    write(&format!("{head}[etcd]\n{}", tail.replacen(&etcd_line, "", 1)));
    let (code, out) = setup(&lab.home, &["01"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{}/hosts:", dir.display())) && out.contains("etcd group has 2 members") && out.contains("fix:"), "{out}");
    assert_eq!(l.seen(), 0, "a host was contacted despite the even etcd group");

    // A broken template given with -e.
    write(&good);
    let (code, out) = setup(&lab.home, &["02", "-e", "CONTEXT_NAME={{ no_such_var }}"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("-e (command line): variable CONTEXT_NAME") && out.contains("no_such_var") && out.contains("fix:"), "{out}");
    let (code, out) = setup(&lab.home, &["02", "-e", "bin_dir={{ unclosed"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("-e (command line): variable bin_dir") && out.contains("syntax error"), "{out}");
    assert_eq!(l.seen(), 0, "a host was contacted despite a broken -e");

    // Missing artifacts: an empty store in another home stops setup, listing each binary and
    // the command that fetches it.
    let empty = tempfile::tempdir().unwrap();
    let edir = empty.path().join("clusters").join(&name);
    std::fs::create_dir_all(&edir).unwrap();
    for f in ["hosts", "config.yml"] {
        std::fs::copy(dir.join(f), edir.join(f)).unwrap();
    }
    let (code, out) = setup(empty.path(), &["02"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not downloaded yet, so nothing was run"), "{out}");
    for (bin, pkg) in [("etcd", "etcd-server"), ("etcdctl", "etcd-client")] {
        let line = out.lines().find(|l| l.trim_start().starts_with(&format!("{bin} "))).unwrap_or_else(|| panic!("no line for {bin}: {out}"));
        assert!(line.ends_with(&format!("ezk download --k8s-ver lab-debian --from-apt --only {pkg}")), "{line}");
    }
    assert_eq!(l.seen(), 0, "a host was contacted with artifacts missing");

    // destroy asks first: with stdin not a terminal and no --yes it stops before connecting;
    // setup refuses the destroy playbook by any of its names.
    let o = Command::new(ezk_bin())
        .arg("--home")
        .arg(&lab.home)
        .args(["destroy", &name, "--connect-timeout", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("stdin is not a terminal: pass --yes"), "{}", text(&o));
    for step in ["99", "clean", "99.clean"] {
        let (code, out) = setup(&lab.home, &[step]);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&format!("`ezk destroy {name}` runs it")), "{out}");
    }
    // At a terminal (a real pty from util-linux `script`) destroy asks for the cluster's name:
    // a wrong answer cancels before any connection; the right one goes on (the listeners below
    // then see it connect).
    let at_terminal = |answer: &str| {
        let cmd = format!(
            "'{}' --home '{}' destroy {name} --connect-timeout 2",
            ezk_bin().display(),
            lab.home.display()
        );
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{answer}\n").as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        (o.status.code(), text(&o))
    };
    let (code, out) = at_terminal("not-the-name");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("Type the cluster name ({name}) to go on")) && out.contains("destroy cancelled"), "{out}");
    assert_eq!(l.seen(), 0, "a host was contacted by an unconfirmed destroy");
    let (code, out) = at_terminal(&name);
    assert_eq!(code, Some(2), "confirmed: it connects (the listeners are not sshd): {out}");
    assert!(l.seen() >= lab.hosts.len(), "confirmed destroy reached {} listener(s):\n{out}", l.seen());
    let seen_before_control = l.seen();

    // Control: the same inventory, valid, with the store full: ezk does connect (so the zeros
    // above mean something). The listeners are not sshd, so the hosts are unreachable.
    let (code, out) = setup(&lab.home, &["01"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        l.seen() >= seen_before_control + lab.hosts.len(),
        "control run reached {} listener(s):\n{out}",
        l.seen() - seen_before_control
    );
}

/// Puts host `i`'s original SSH host keys back and restarts sshd, via the regenerated key.
struct RestoreHostKey<'a> {
    lab: &'a Lab,
    i: usize,
    known_new: std::path::PathBuf,
}
impl Drop for RestoreHostKey<'_> {
    fn drop(&mut self) {
        let _ = ssh_with(&self.lab.key(), &self.known_new, &self.lab.hosts[self.i].ip)
            .arg("rm -f /etc/ssh/ssh_host_*; cp -a /root/audit-hostkeys/. /etc/ssh/ && rm -rf /root/audit-hostkeys && systemctl restart ssh")
            .stdin(Stdio::null())
            .output();
        let _ = self.lab.ezk(&["setup", &self.lab.name, "01"]);
    }
}

fn changed_host_key_refuses_the_whole_run(lab: &Lab) {
    converge(lab);
    let n = lab.hosts.len();
    let last = n - 1;
    // Every host gets a change that step 01 would undo.
    for i in 0..n {
        lab.sh(i, &format!("echo '# audit marker' >> {PROFILE}"));
    }
    // The last host's host key is regenerated (as a reinstall or an impostor would present).
    let newkey = lab.sh(
        last,
        "mkdir -p /root/audit-hostkeys && cp -a /etc/ssh/ssh_host_* /root/audit-hostkeys/ && rm -f /etc/ssh/ssh_host_* && \
         ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && cat /etc/ssh/ssh_host_ed25519_key.pub && \
         (systemctl restart ssh >/dev/null 2>&1 &)",
    );
    let tmp = tempfile::tempdir().unwrap();
    let known_new = tmp.path().join("known_hosts");
    let ip = lab.hosts[last].ip.clone();
    let mut f = newkey.split_whitespace();
    std::fs::write(&known_new, format!("{ip} {} {}\n", f.next().unwrap(), f.next().unwrap())).unwrap();
    let _restore = RestoreHostKey { lab, i: last, known_new: known_new.clone() };
    // Wait until sshd answers with the new key.
    let reach = || ssh_with(&lab.key(), &known_new, &ip).arg("true").stdin(Stdio::null()).output().unwrap().status.success();
    let t0 = std::time::Instant::now();
    while !reach() {
        assert!(t0.elapsed() < Duration::from_secs(20), "sshd did not come back with the new key");
        std::thread::sleep(Duration::from_millis(200));
    }

    let o = lab.ezk(&["setup", &lab.name, "01"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let kh = lab.known_hosts().display().to_string();
    for want in [
        format!("{ip}: UNREACHABLE host key CHANGED: {ip} presented a key (SHA256:"),
        format!("recorded in {kh}:"),
        format!("ssh-keygen -f \"{kh}\" -R \"{ip}\""),
        "--accept-new-host-keys".to_string(),
        format!("run refused: the host key of {ip} was not accepted (see above); nothing was changed on any host"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("@@@@"), "ssh's banner is not the message:\n{out}");
    // No host was changed, the refused one included.
    for i in 0..last {
        assert_eq!(lab.sh(i, &format!("grep -c 'audit marker' {PROFILE}")), "1", "{} was changed", lab.hosts[i].name);
    }
    let on_last = ssh_with(&lab.key(), &known_new, &ip).arg(format!("grep -c 'audit marker' {PROFILE}")).stdin(Stdio::null()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&on_last.stdout).trim(), "1");
    // The JSON recap says the same: refused, the host unreachable, the others skipped.
    let o = lab.ezk(&["setup", &lab.name, "01", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert!(j["refused"].as_str().unwrap_or("").contains(&ip), "{j}");
    assert_eq!(j["hosts"][&ip]["unreachable"], 1, "{j}");
    for h in &lab.hosts[..last] {
        assert_eq!(j["hosts"][&h.ip]["changed"], 0, "{j}");
        assert!(j["hosts"][&h.ip]["skipped"].as_u64().unwrap() > 0, "{j}");
    }
    drop(_restore);
    // With the original key back, the run goes through and undoes the markers.
    ezk_ok(lab, &["setup", &lab.name, "01"]);
    for i in 0..n {
        assert_eq!(lab.sh(i, &format!("grep -c 'audit marker' {PROFILE} || true")), "0");
    }
}

fn file_task(name: &str, path: &str, content: &str, owner: &str) -> Task {
    Task {
        name: name.into(),
        origin: format!("roles/audit/tasks.yml ({name})"),
        action: Action::File(FileSpec { path: path.into(), content: Content::Inline(content.as_bytes().into()), mode: 0o644, owner: owner.into(), group: "root".into(), secret: false }),
        notify: vec![],
    }
}

fn failed_write_leaves_no_temp_file_and_others_finish(lab: &Lab) {
    const DIR: &str = "/opt/ezk-audit";
    for i in 0..lab.hosts.len() {
        lab.sh(i, &format!("rm -rf {DIR} && mkdir -p {DIR} && echo old > {DIR}/b.conf"));
    }
    // On host 0 the second file's owner does not exist: its upload lands in a temp file, then
    // chown fails, after the bytes are there — the worst moment to stop.
    let role = |i: usize, h: &str| HostRolePlan {
        host: h.into(),
        role: "audit".into(),
        tasks: vec![
            file_task("a", &format!("{DIR}/a.conf"), "a\n", "root"),
            file_task("b", &format!("{DIR}/b.conf"), "new\n", if i == 0 { "no-such-user" } else { "root" }),
            file_task("c", &format!("{DIR}/c.conf"), "c\n", "root"),
        ],
    };
    let plan = StepPlan {
        needs_nodes: false,
        step: "audit".into(),
        waves: vec![Wave { roles: vec!["audit".into()], hosts: lab.hosts.iter().enumerate().map(|(i, h)| role(i, &h.name)).collect(), serial: Default::default() }],
    };
    // Work dirs of earlier runs killed on purpose (other suites) may exist; none may be added.
    let runs_before = lab.sh(0, "ls -d /tmp/.ezk-run.* 2>/dev/null || true");
    let opts = Options { progress: Some(false), json: true, ..Options::default() };
    let r = run_step(&lab.cluster_dir(), &plan, &crate::exec::conns(lab), &opts).unwrap();
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    let h0 = &r.hosts[&lab.hosts[0].name];
    assert_eq!(h0.failed, 1, "{}", r.to_json());
    assert!(h0.errors.iter().any(|e| e.contains(&format!("cannot set owner/mode on {DIR}/b.conf"))), "{:?}", h0.errors);
    // Host 0: the three files are one set (consecutive puts, renamed together once the last has
    // arrived), so none landed: no temp file, no work dir, b.conf still the old one, a and c
    // never written.
    assert_eq!(lab.sh(0, &format!("ls -A {DIR}")), "b.conf");
    assert_eq!(lab.sh(0, &format!("cat {DIR}/b.conf")), "old");
    assert_eq!(lab.sh(0, "ls -d /tmp/.ezk-run.* 2>/dev/null || true"), runs_before, "work dir left in /tmp");
    // The others finished the whole role.
    for (i, h) in lab.hosts.iter().enumerate().skip(1) {
        assert_eq!((r.hosts[&h.name].changed, r.hosts[&h.name].failed), (3, 0), "{}", r.to_json());
        assert_eq!(lab.sh(i, &format!("cat {DIR}/a.conf {DIR}/b.conf {DIR}/c.conf")), "a\nnew\nc");
    }
    for i in 0..lab.hosts.len() {
        lab.sh(i, &format!("rm -rf {DIR}"));
    }
}
