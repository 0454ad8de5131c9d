//! `ezk check` on the fixture clusters under tests/fixtures/inventory/<case>/, run as the real
//! binary. A case holds the inputs (`hosts` or `hosts.yml`, `config.yml`) and either
//! `expected-errors` (exit 1; each line must appear in the report, one line per reported
//! problem; a line `  fix: ...` under one must appear as the fix of that problem) or
//! `expected-ok` (exit 0; each line must appear in the summary). Paths in the output are made
//! relative to the cluster dir so expectations read `hosts:12: ...`. ezk runs in the cluster
//! dir (a relative path, e.g. a key file, names a file of the case; git keeps files 0644), and
//! with an `ssh` on PATH that records any call: no case may contact a host. Adding a case adds
//! no code.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

mod common;

use common::ezk::{Run, command, ezk};

/// `ezk check <name>` with a recording `ssh` first on PATH; also says whether it was called.
fn check_without_ssh(home: &Path, name: &str) -> (Run, bool) {
    let bin = home.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ssh = bin.join("ssh");
    std::fs::write(&ssh, "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/contacted\"\nexit 255\n").unwrap();
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let dir = home.join("clusters").join(name);
    let out = command(home).current_dir(dir).env("PATH", path).args(["check", name]).output().expect("run ezk");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, bin.join("contacted").exists())
}

fn is_fix(expectation: &str) -> bool {
    expectation.trim_start().starts_with("fix:")
}

fn expectations(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn fixture_cases() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 20, "fixture cases found: {}", all.len());
    for case in all {
        let name = case.file_name().unwrap().to_str().unwrap().to_string();
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("clusters").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&case).unwrap() {
            let f = f.unwrap().path();
            let fname = f.file_name().unwrap();
            if fname != "expected-errors" && fname != "expected-ok" {
                std::fs::copy(&f, dir.join(fname)).unwrap();
            }
        }
        let (Run { code, stdout, stderr }, contacted) = check_without_ssh(home.path(), &name);
        let prefix = format!("{}/", dir.display());
        let out = format!("{stdout}{stderr}").replace(&prefix, "");
        let (want_code, file) = if case.join("expected-errors").exists() {
            (1, case.join("expected-errors"))
        } else {
            (0, case.join("expected-ok"))
        };
        let want = expectations(&file);
        let mut problems = Vec::new();
        if code != want_code {
            problems.push(format!("exit code {code}, want {want_code}"));
        }
        if contacted {
            problems.push("ssh was run: `ezk check` contacted a host".into());
        }
        let lines: Vec<&str> = out.lines().collect();
        for (i, w) in want.iter().enumerate() {
            if is_fix(w) {
                // The fix of the problem expected on the line above.
                let problem = want[..i].iter().rev().find(|p| !is_fix(p)).map(String::as_str);
                let found = lines.windows(2).any(|pair| {
                    problem.is_some_and(|p| pair[0].contains(p)) && pair[1].contains(w.trim_start())
                });
                if !found {
                    problems.push(format!("missing: {w} (as the fix of {problem:?})"));
                }
            } else if !out.contains(w.as_str()) {
                problems.push(format!("missing: {w}"));
            }
        }
        if want_code == 1 {
            let reported = out.lines().filter(|l| l.starts_with("- ")).count();
            let expected = want.iter().filter(|w| !is_fix(w)).count();
            if reported != expected {
                problems.push(format!("{reported} problems reported, {expected} expected"));
            }
            if !out.contains("fix:") && !out.contains("no inventory") {
                problems.push("no fix given".into());
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {name}:\n  {}\n--- output ---\n{out}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `ezk check` must not touch any host, even one that is listening: the inventory points at a
/// real listener on loopback and the listener sees no connection.
#[test]
fn check_contacts_no_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("clusters/c1");
    std::fs::create_dir_all(&dir).unwrap();
    // kubeasz clusters always carry a config.yml; the roles' templates need its variables.
    std::fs::write(
        dir.join("config.yml"),
        include_str!("../inventory-examples/config.yml"),
    )
    .unwrap();
    // Broken (even etcd) and valid variants: neither may connect.
    for etcd in ["127.0.0.1\n127.0.0.2\n", "127.0.0.1\n"] {
        std::fs::write(
            dir.join("hosts"),
            format!(
                "[etcd]\n{etcd}[kube_master]\n127.0.0.1 ansible_port={port}\n[kube_node]\n[all:vars]\n\
                 CONTAINER_RUNTIME=containerd\nCLUSTER_NETWORK=flannel\nSERVICE_CIDR=10.68.0.0/16\n\
                 CLUSTER_CIDR=172.20.0.0/16\nk8s_nodename=''\n"
            ),
        )
        .unwrap();
        let Run { code, stdout, stderr } = ezk(home.path(), &["check", "c1"]);
        let expect = if etcd.lines().count() == 2 { 1 } else { 0 };
        assert_eq!(code, expect, "{stdout}{stderr}");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("ezk check connected to the host: {other:?}"),
        }
    }
}

#[test]
fn new_list_checkout_and_examples_pass_check() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let Run { code, stdout: out, .. } = ezk(h, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no clusters"), "{out}");

    let Run { code, stderr: err, .. } = ezk(h, &["new", "k8s-01"]);
    assert_eq!(code, 0, "{err}");
    let hosts = std::fs::read_to_string(h.join("clusters/k8s-01/hosts")).unwrap();
    assert!(
        hosts.contains("cluster_dir=\"{{ base_dir }}/clusters/k8s-01\""),
        "cluster name substituted"
    );
    assert!(!hosts.contains("_cluster_name_") && !hosts.contains("_ezk_home_"));
    let config = std::fs::read_to_string(h.join("clusters/k8s-01/config.yml")).unwrap();
    assert!(config.contains("CLUSTER_NAME: \"k8s-01\""));

    // Refuses to overwrite, and leaves the files alone.
    std::fs::write(h.join("clusters/k8s-01/hosts"), "# edited\n").unwrap();
    let Run { code, stderr: err, .. } = ezk(h, &["new", "k8s-01"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(h.join("clusters/k8s-01/hosts")).unwrap(),
        "# edited\n"
    );
    std::fs::write(h.join("clusters/k8s-01/hosts"), hosts).unwrap();

    let Run { code, stderr: err, .. } = ezk(h, &["new", "aio", "--layout", "allinone"]);
    assert_eq!(code, 0, "{err}");
    let Run { stdout: out, .. } = ezk(h, &["list"]);
    assert_eq!(out, "* aio (current)\n  k8s-01\n");

    // The examples as created pass check; the current cluster is the default.
    let Run { code, stdout: out, stderr: err } = ezk(h, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: cluster aio passes all checks (1 host)"),
        "{out}"
    );
    let Run { code, stdout: out, stderr: err } = ezk(h, &["check", "k8s-01"]);
    assert_eq!(code, 0, "{out}{err}");
    for want in ["master-01", "worker-02", "CONTEXT_NAME", "calico"]
        .iter()
        .filter(|w| **w != "CONTEXT_NAME")
    {
        assert!(out.contains(want), "{want} in {out}");
    }

    let Run { code, .. } = ezk(h, &["checkout", "k8s-01"]);
    assert_eq!(code, 0);
    let Run { stdout: out, .. } = ezk(h, &["list"]);
    assert_eq!(out, "  aio\n* k8s-01 (current)\n");
    let Run { code, stderr: err, .. } = ezk(h, &["checkout", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no cluster nope"), "{err}");

    // -e wins over everything.
    let Run { code, stderr: err, .. } = ezk(h, &["check", "k8s-01", "-e", "CLUSTER_NETWORK=weave"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("CLUSTER_NETWORK \"weave\" is not supported"),
        "{err}"
    );
}

/// Sizes: a config.yml of 10,000 variables (the most one file may define) is read and checked
/// in seconds, one more variable is refused naming the line, and a hosts file over 4 MiB is
/// refused before it is parsed. Generated here rather than kept as fixtures of megabytes.
#[test]
fn big_inputs_are_checked_in_time_or_refused_with_the_limit() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/ok-allinone");
    let hosts = std::fs::read_to_string(case.join("hosts")).unwrap();
    let config = std::fs::read_to_string(case.join("config.yml")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("clusters/big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), &hosts).unwrap();
    let base_vars = config.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_lowercase())).count();
    let mut big = config.clone();
    for i in 0..(10_000 - base_vars) {
        big.push_str(&format!("EXTRA_{i}: \"value {i} of a config far larger than any real one\"\n"));
    }
    std::fs::write(dir.join("config.yml"), &big).unwrap();
    let start = std::time::Instant::now();
    let r = ezk(home.path(), &["check", "big"]);
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(start.elapsed().as_secs() < 60, "10,000 variables took {:?}", start.elapsed());

    big.push_str("ONE_TOO_MANY: 1\n");
    let line = big.lines().count();
    std::fs::write(dir.join("config.yml"), &big).unwrap();
    let r = ezk(home.path(), &["check", "big"]);
    assert_eq!(r.code, 1, "{}", r.text());
    let want = format!("config.yml:{line}: config.yml defines 10001 variables; ezk reads at most 10000 from one file, group or host");
    assert!(r.text().contains(&want), "{want}\n{}", r.text());

    std::fs::write(dir.join("config.yml"), &config).unwrap();
    let mut huge = hosts.clone();
    while huge.len() <= 4 << 20 {
        huge.push_str(&"# padding\n".repeat(10_000));
    }
    std::fs::write(dir.join("hosts"), &huge).unwrap();
    let r = ezk(home.path(), &["check", "big"]);
    assert_eq!(r.code, 1, "{}", r.text());
    let want = format!("hosts: the file is {} bytes; ezk reads inventory files of at most 4 MiB", huge.len());
    assert!(r.text().contains(&want), "{want}\n{}", r.text());
}

/// A role's defaults are checked like inventory values where they are what a host gets: a role
/// overridden in the home with a system directory as ETCD_DATA_DIR is refused by `ezk check`
/// and `ezk render` (file:line of the default, and the fix), and not when the inventory sets
/// its own ETCD_DATA_DIR.
#[test]
fn bad_role_defaults_are_refused_like_inventory_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let case = root.join("tests/fixtures/inventory/ok-allinone");
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("clusters/c");
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = std::fs::read_to_string(case.join("hosts")).unwrap();
    std::fs::write(dir.join("hosts"), &hosts).unwrap();
    std::fs::copy(case.join("config.yml"), dir.join("config.yml")).unwrap();
    let role = home.path().join("roles/etcd");
    for f in ["tasks.yml", "meta.yml", "templates/etcd.service.j2"] {
        std::fs::create_dir_all(role.join(f).parent().unwrap()).unwrap();
        std::fs::copy(root.join("roles/etcd").join(f), role.join(f)).unwrap();
    }
    let defaults = std::fs::read_to_string(root.join("roles/etcd/defaults.yml")).unwrap();
    let bad = defaults.replace("ETCD_DATA_DIR: \"/var/lib/etcd\"", "ETCD_DATA_DIR: \"/var/lib\"");
    assert_ne!(bad, defaults, "roles/etcd/defaults.yml sets ETCD_DATA_DIR");
    std::fs::write(role.join("defaults.yml"), &bad).unwrap();
    let line = bad.lines().position(|l| l.starts_with("ETCD_DATA_DIR:")).unwrap() + 1;
    let want = format!(
        "{}:{line}: ETCD_DATA_DIR \"/var/lib\" is deleted by `ezk destroy`, and /var/lib is a directory of the system\n  fix: give ETCD_DATA_DIR a directory of its own",
        role.join("defaults.yml").display()
    );
    let r = ezk(home.path(), &["check", "c"]);
    assert_eq!(r.code, 1, "{}", r.text());
    assert!(r.text().contains(&want), "{want}\n{}", r.text());
    let out = home.path().join("out");
    let r = ezk(home.path(), &["render", "c", "02", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.text());
    assert!(r.text().contains(&want), "{want}\n{}", r.text());
    // The inventory's own value wins: the default is not what any host gets.
    std::fs::write(dir.join("hosts"), format!("{hosts}ETCD_DATA_DIR=\"/data/etcd\"\n")).unwrap();
    let r = ezk(home.path(), &["check", "c"]);
    assert_eq!(r.code, 0, "{}", r.text());
}
