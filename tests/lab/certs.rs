//! `ezk certs <cluster>` against real hosts: after `ezk setup 01` and `02` every host's copies
//! match ssl/; a replaced certificate, a deleted key and a key no host may hold are each
//! flagged naming host and path (exit 1); a host that cannot be reached is reported as such
//! while the local table still prints (exit 2). Each test converges the lab itself (cheap when
//! already converged), so it runs alone or after any other suite.

use std::process::{Command, Output};

use crate::support::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "certs::every_host_copy_matches_after_setup", run: every_host_copy_matches_after_setup },
    Test { name: "certs::replaced_missing_and_forbidden_files_are_flagged", run: replaced_missing_and_forbidden_files_are_flagged },
    Test { name: "certs::unreachable_host_is_reported_and_local_table_still_prints", run: unreachable_host_is_reported_and_local_table_still_prints },
];

const SSL: &str = "/etc/kubernetes/ssl";
/// What steps 01 (prepare) and 02 (etcd) install on every lab host (all are etcd members and
/// masters).
const FILES: &[(&str, &str)] = &[
    ("/etc/kubernetes/ssl/ca.pem", "ca"),
    ("/root/.kube/config", "admin kubeconfig"),
    ("/etc/kubernetes/ssl/etcd.pem", "etcd"),
    ("/etc/kubernetes/ssl/etcd-key.pem", "etcd key"),
    ("/etc/kubernetes/ssl/etcd-ca.pem", "etcd-ca"),
];

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ezk_ok(lab: &Lab, args: &[&str]) -> String {
    let o = lab.ezk(args);
    assert!(o.status.success(), "ezk {args:?} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The store filled from Debian packages, then steps 01 and 02 applied (other suites use it).
pub fn converge(lab: &Lab) {
    ezk_ok(lab, &["download", &lab.name, "--from-apt"]);
    ezk_ok(lab, &["setup", &lab.name, "01"]);
    ezk_ok(lab, &["setup", &lab.name, "02"]);
}

/// `ezk certs <lab>`: (exit code, stdout).
fn certs(lab: &Lab, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["certs", lab.name.as_str()];
    args.extend_from_slice(extra);
    let o = lab.ezk(&args);
    (o.status.code().unwrap_or(-1), text(&o))
}

/// The remote table's row for `host` and `path`.
fn row<'a>(out: &'a str, host: &str, path: &str) -> &'a str {
    out.lines()
        .skip_while(|l| !l.starts_with("installed on the hosts"))
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[0] == host && f[1] == path
        })
        .unwrap_or_else(|| panic!("no row for {host} {path} in:\n{out}"))
}

fn every_host_copy_matches_after_setup(lab: &Lab) {
    converge(lab);
    let (code, out) = certs(lab, &[]);
    assert_eq!(code, 0, "{out}");
    // The local table comes first, then one row per host and file.
    assert!(out.starts_with("FILE ") && out.contains("\netcd.pem "), "{out}");
    for h in &lab.hosts {
        for (path, what) in FILES {
            let r = row(&out, &h.ip, path);
            assert!(r.contains(what) && r.contains("ok, same as local"), "{r}");
        }
    }
    assert!(out.contains(&format!("{} host(s) checked, 0 unreachable, 0 problem(s)", lab.hosts.len())), "{out}");
    // Steps 04 on have not run on this lab: their files are listed as such, not as problems.
    let r = row(&out, &lab.hosts[0].ip, "/etc/kubernetes/ssl/kubernetes.pem");
    assert!(r.contains("not yet: step 04"), "{r}");
    assert!(out.contains("not yet run on some hosts: step(s) 04"), "{out}");
    // What the table says is what the hosts hold: same bytes as ssl/ (checked here with the
    // test's own ssh and sha256sum, not ezk's).
    let local = std::fs::read(lab.cluster_dir().join("ssl/etcd.pem")).unwrap();
    let want = sha256_hex(&local);
    for i in 0..lab.hosts.len() {
        let got = lab.sh(i, &format!("sha256sum < {SSL}/etcd.pem | cut -d' ' -f1"));
        assert_eq!(got, want, "etcd.pem on {}", lab.hosts[i].name);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

/// Puts the lab back as setup leaves it even when the test fails half-way.
struct Restore<'a>(&'a Lab);
impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = self.0.ssh(0, &format!("rm -f {SSL}/etcd-ca-key.pem"));
        let _ = self.0.ezk(&["setup", &self.0.name, "02"]);
    }
}

fn replaced_missing_and_forbidden_files_are_flagged(lab: &Lab) {
    converge(lab);
    let restore = Restore(lab);
    let (h0, h1, h2) = (&lab.hosts[0].ip, &lab.hosts[1].ip, &lab.hosts[2].ip);
    // Host 1: etcd.pem replaced by a certificate from elsewhere (openssl, self-signed).
    lab.sh(
        1,
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
             -subj /CN=impostor -days 3 -out {SSL}/etcd.pem 2>/dev/null"
        ),
    );
    // Host 2: its etcd key deleted.
    lab.sh(2, &format!("rm {SSL}/etcd-key.pem"));
    // Host 0: holds an etcd CA key, which no host may have (only ssl/ on the deploy machine).
    lab.sh(0, &format!("openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out {SSL}/etcd-ca-key.pem"));

    let (code, out) = certs(lab, &[]);
    assert_eq!(code, 1, "{out}");
    let r = row(&out, h1, &format!("{SSL}/etcd.pem"));
    assert!(r.contains("MISMATCH") && r.contains("CN=impostor"), "{r}");
    let r = row(&out, h2, &format!("{SSL}/etcd-key.pem"));
    assert!(r.contains("MISSING") && r.contains("02"), "{r}");
    let r = row(&out, h0, &format!("{SSL}/etcd-ca-key.pem"));
    assert!(r.contains("FORBIDDEN") && r.contains("etcd CA key"), "{r}");
    // Everything else still matches, and the summary counts exactly these three.
    assert!(row(&out, h1, &format!("{SSL}/etcd-key.pem")).contains("ok"), "{out}");
    assert!(row(&out, h2, &format!("{SSL}/etcd.pem")).contains("ok"), "{out}");
    assert!(out.contains("3 host(s) checked, 0 unreachable, 3 problem(s)"), "{out}");
    // The local table alone is fine: the problems are on the hosts.
    let (code, local) = certs(lab, &["--local"]);
    assert_eq!(code, 0, "{local}");
    assert!(!local.contains("installed on the hosts"), "{local}");

    // Setup reinstalls what the plan says; the forbidden key is the operator's to remove.
    drop(restore);
    let (code, out) = certs(lab, &[]);
    assert_eq!(code, 0, "after setup 02 and removing the key:\n{out}");
}

/// Takes a host's bridge-side link down; puts it back up when dropped (even on panic).
struct LinkDown(String);
impl LinkDown {
    fn new(lab: &Lab, i: usize) -> LinkDown {
        let link = format!("vb-ez{}-{}", lab.index, i + 1);
        let ok = Command::new("ip").args(["link", "set", &link, "down"]).status().unwrap().success();
        assert!(ok, "ip link set {link} down");
        LinkDown(link)
    }
}
impl Drop for LinkDown {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "set", &self.0, "up"]).status();
    }
}

fn unreachable_host_is_reported_and_local_table_still_prints(lab: &Lab) {
    converge(lab);
    let last = lab.hosts.len() - 1;
    let down = LinkDown::new(lab, last);
    let started = std::time::Instant::now();
    let (code, out) = certs(lab, &["--connect-timeout", "3"]);
    // Every host at once: one timeout, not one per host.
    assert!(started.elapsed().as_secs() < 10, "took {:?}", started.elapsed());
    assert_eq!(code, 2, "only unreachable, nothing wrong: exit 2\n{out}");
    assert!(out.starts_with("FILE ") && out.contains("\nkubernetes.pem "), "local table missing:\n{out}");
    let h = &lab.hosts[last].ip;
    let r = out
        .lines()
        .find(|l| l.starts_with(h.as_str()) && l.contains("UNREACHABLE"))
        .unwrap_or_else(|| panic!("no unreachable row for {h}:\n{out}"));
    assert!(!r.contains(&format!("{h}: {h}")), "host named twice: {r}");
    for other in &lab.hosts[..last] {
        assert!(row(&out, &other.ip, &format!("{SSL}/etcd.pem")).contains("ok"), "{out}");
    }
    assert!(out.contains(&format!("{last} host(s) checked, 1 unreachable, 0 problem(s)")), "{out}");
    // --local contacts no host: fast and clean even now.
    let started = std::time::Instant::now();
    let (code, local) = certs(lab, &["--local"]);
    assert_eq!(code, 0, "{local}");
    assert!(started.elapsed().as_secs() < 3 && !local.contains("UNREACHABLE"), "{local}");
    drop(down);
    // Back on the bridge: checked again (sshd may take a moment to answer after link-up).
    let mut last_out = String::new();
    for _ in 0..10 {
        let (code, out) = certs(lab, &[]);
        if code == 0 {
            return;
        }
        last_out = out;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("host still not checked after its link came back:\n{last_out}");
}
