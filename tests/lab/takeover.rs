//! Taking over an etcd cluster that kubeasz built, on a 3-host lab of its own (issue 21).
//!
//! kubeasz itself cannot run here, so the hosts are laid out as kubeasz 3.x leaves them, by
//! this file's own code from what kubeasz's etcd role does: binaries in /opt/kube/bin, one CA
//! for everything (`common::kubeasz`: ca.pem, etcd.pem with every member's address and
//! 127.0.0.1, the apiserver's kubernetes.pem) in /etc/kubernetes/ssl with the keys left 0644,
//! /var/lib/etcd 0700, and /etc/systemd/system/etcd.service with kubeasz's flags: member names
//! `etcd-<ip>`, `--trusted-ca-file=…/ca.pem`, no `--client-cert-auth`, and the plaintext
//! `http://127.0.0.1:2379` listener. Then `ezk setup <c> 02` must keep every client that holds
//! a kubeasz certificate served — probed every 0.2 s, writes and reads, through the whole run,
//! never refused, never two probes in a row missed (`assert_no_outage`) —
//! restart the members one at a time, keep the data and the members, and a re-run changes
//! nothing. Then `ezk rotate-ca <c> etcd` moves etcd to a CA of its own under a probing
//! client, phase by phase, killed once and run again (`etcd_ca_is_rotated_without_an_outage`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::kubeasz;
use crate::steps_support::{assert_nothing_changed, fill_store, setup_ok, text};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "takeover::kubeasz_etcd_is_taken_over_without_an_outage",
    run: kubeasz_etcd_is_taken_over_without_an_outage,
}];

pub const SSL: &str = "/etc/kubernetes/ssl";
const UNIT: &str = "/etc/systemd/system/etcd.service";

/// kubeasz 3.x's etcd unit for member `ip` (its flags; `--wal-dir` empty as its default
/// ETCD_WAL_DIR "" renders it).
fn kubeasz_unit(ip: &str, members: &[String]) -> String {
    let initial: Vec<String> = members.iter().map(|m| format!("etcd-{m}=https://{m}:2380")).collect();
    let flags = [
        format!("--name=etcd-{ip}"),
        format!("--cert-file={SSL}/etcd.pem"),
        format!("--key-file={SSL}/etcd-key.pem"),
        format!("--peer-cert-file={SSL}/etcd.pem"),
        format!("--peer-key-file={SSL}/etcd-key.pem"),
        format!("--trusted-ca-file={SSL}/ca.pem"),
        format!("--peer-trusted-ca-file={SSL}/ca.pem"),
        format!("--initial-advertise-peer-urls=https://{ip}:2380"),
        format!("--listen-peer-urls=https://{ip}:2380"),
        format!("--listen-client-urls=https://{ip}:2379,http://127.0.0.1:2379"),
        format!("--advertise-client-urls=https://{ip}:2379"),
        "--initial-cluster-token=etcd-cluster-0".into(),
        format!("--initial-cluster={}", initial.join(",")),
        "--initial-cluster-state=new".into(),
        "--data-dir=/var/lib/etcd".into(),
        "--wal-dir=".into(),
        "--snapshot-count=50000".into(),
        "--auto-compaction-retention=1".into(),
        "--auto-compaction-mode=periodic".into(),
        "--max-request-bytes=10485760".into(),
        "--quota-backend-bytes=8589934592".into(),
    ];
    format!(
        "[Unit]\nDescription=Etcd Server\nAfter=network.target\nAfter=network-online.target\nWants=network-online.target\nDocumentation=https://github.com/coreos\n\n[Service]\nType=notify\nWorkingDirectory=/var/lib/etcd\nExecStart=/opt/kube/bin/etcd \\\n  {}\nRestart=always\nRestartSec=15\nLimitNOFILE=65536\nOOMScoreAdjust=-999\n\n[Install]\nWantedBy=multi-user.target\n",
        flags.join(" \\\n  ")
    )
}

/// Write `bytes` to `path` on host `i` with `mode` (as Ansible's copy/template leave them).
pub fn put(lab: &Lab, i: usize, path: &str, bytes: &[u8], mode: &str) {
    let mut child = lab
        .ssh_cmd(i)
        .arg(format!("mkdir -p \"$(dirname {path})\" && cat > {path}.new && chmod {mode} {path}.new && mv {path}.new {path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "writing {path} on host {i}: {}", text(&out));
}

/// A binary of the lab's artifact set in the store (`<home>/down`).
pub fn stored(lab: &Lab, name: &str) -> PathBuf {
    let out = Command::new("find").arg(lab.home.join("down")).args(["-type", "f", "-name", name]).output().unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(found.lines().next().unwrap_or_else(|| panic!("no {name} in the store")))
}

/// etcdctl on this machine with a client certificate kubeasz issued (what its kube-apiservers
/// hold), against every member, as the apiserver's `--etcd-servers` lists them.
fn old_client(certs: &Path, ips: &[String], args: &[&str]) -> std::process::Output {
    let endpoints: Vec<String> = ips.iter().map(|ip| format!("https://{ip}:2379")).collect();
    Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", certs.join("ca.pem").display()))
        .arg(format!("--cert={}", certs.join("kubernetes.pem").display()))
        .arg(format!("--key={}", certs.join("kubernetes-key.pem").display()))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// (left active, entered active) of etcd on host `i`, microseconds of the machine's monotonic
/// clock (one kernel for every lab host, so comparable across hosts).
fn etcd_times(lab: &Lab, i: usize) -> (u64, u64) {
    unit_times(lab, i, "etcd")
}

/// As `etcd_times`, for any unit.
pub fn unit_times(lab: &Lab, i: usize, unit: &str) -> (u64, u64) {
    let out = lab.sh(i, &format!("systemctl show -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic {unit}"));
    let get = |k: &str| -> u64 {
        out.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (get("ActiveExitTimestampMonotonic"), get("ActiveEnterTimestampMonotonic"))
}

fn member_ids(certs: &Path, ips: &[String]) -> Vec<String> {
    let out = old_client(certs, ips, &["member", "list"]);
    assert!(out.status.success(), "member list: {}", text(&out));
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split(',').take(3).collect::<Vec<_>>().join(",")).collect();
    ids.sort();
    ids
}

/// kubeasz's etcd on every host of `lab` (binaries, the one CA's certificates from `ssl`, its
/// unit), started; returns once a client with the certificates in `certs` finds it healthy, with
/// 20 keys `/kubeasz/k<n>` written.
pub fn kubeasz_etcd(lab: &Lab, ssl: &Path, certs: &Path, ips: &[String]) {
    let file = |name: &str| std::fs::read(ssl.join(name)).unwrap();
    // kubeasz's hosts.
    let (etcd, etcdctl) = (std::fs::read(stored(lab, "etcd")).unwrap(), std::fs::read(stored(lab, "etcdctl")).unwrap());
    for i in 0..3 {
        put(lab, i, "/opt/kube/bin/etcd", &etcd, "0755");
        put(lab, i, "/opt/kube/bin/etcdctl", &etcdctl, "0755");
        for (f, mode) in [("ca.pem", "0644"), ("etcd.pem", "0644"), ("etcd-key.pem", "0644"), ("kubernetes.pem", "0644"), ("kubernetes-key.pem", "0644")] {
            put(lab, i, &format!("{SSL}/{f}"), &file(f), mode);
        }
        put(lab, i, UNIT, kubeasz_unit(&ips[i], ips).as_bytes(), "0644");
        lab.sh(i, "mkdir -p /var/lib/etcd && chmod 0700 /var/lib/etcd && systemctl daemon-reload && systemctl enable -q etcd && systemctl start --no-block etcd");
    }
    let start = Instant::now();
    while !old_client(certs, ips, &["endpoint", "health", "--cluster"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(90), "kubeasz's etcd did not come up");
        std::thread::sleep(Duration::from_millis(300));
    }
    for n in 0..20 {
        let out = old_client(certs, &ips, &["put", &format!("/kubeasz/k{n}"), &format!("v{n}")]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

fn kubeasz_etcd_is_taken_over_without_an_outage(_shared: &Lab) {
    let lab = Lab::up(&format!("kz{}", std::process::id()), 3).expect("3-host lab");
    fill_store(&lab);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();

    // kubeasz's deploy machine: clusters/<name>/ssl/ as its cfssl left it.
    let ssl = lab.cluster_dir().join("ssl");
    kubeasz::ssl(&ssl, &ip_refs, &ip_refs);
    // The old client keeps its own copy, as a kube-apiserver does on its host.
    let certs = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "kubernetes.pem", "kubernetes-key.pem"] {
        std::fs::copy(ssl.join(f), certs.path().join(f)).unwrap();
    }
    let file = |name: &str| std::fs::read(ssl.join(name)).unwrap();

    kubeasz_etcd(&lab, &ssl, certs.path(), &ips);
    let members = member_ids(certs.path(), &ips);
    let unit_sha = |i: usize| lab.sh(i, &format!("sha256sum {UNIT}"));
    let units_before: Vec<String> = (0..3).map(|i| unit_sha(i)).collect();
    let times_before: Vec<(u64, u64)> = (0..3).map(|i| etcd_times(&lab, i)).collect();

    // --plan says in words who loses access, and what else changes.
    let out = lab.ezk(&["setup", &lab.name, "02", "--plan"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    for want in [
        "etcd's plaintext listener http://127.0.0.1:2379 goes away",
        "etcd requires a client certificate from its clients (--client-cert-auth=true",
        "etcd-key.pem",
    ] {
        assert!(plan.contains(want), "the plan does not say {want:?}:\n{plan}");
    }
    assert!(!plan.contains("stops trusting"), "kubeasz's CA is kept, yet:\n{plan}");

    // Without --allow-client-cutoff: refused before any host changes.
    let out = lab.ezk(&["setup", &lab.name, "02"]);
    let refused = text(&out);
    assert!(!out.status.success(), "a client cut-off was applied without the flag:\n{refused}");
    assert!(refused.contains("--allow-client-cutoff") && refused.contains("nothing was changed"), "{refused}");
    for i in 0..3 {
        assert_eq!(unit_sha(i), units_before[i], "host {i} changed by a refused run");
        assert_eq!(etcd_times(&lab, i), times_before[i], "etcd on host {i} restarted by a refused run");
    }

    // The run, under a client probing with kubeasz's certificates every 0.2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, ips, dir) = (stop.clone(), ips.clone(), certs.path().to_path_buf());
        std::thread::spawn(move || {
            let (mut probes, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let v = format!("p{probes}");
                let put = old_client(&dir, &ips, &["put", "/kubeasz/probe", &v]);
                let get = old_client(&dir, &ips, &["get", "/kubeasz/probe", "--print-value-only"]);
                if !put.status.success() || String::from_utf8_lossy(&get.stdout).trim() != v {
                    failures.push(format!("probe {probes}: put: {} get: {}", text(&put), text(&get)));
                }
                probes += 1;
                std::thread::sleep(Duration::from_millis(200).saturating_sub(t.elapsed()));
            }
            (probes, failures)
        })
    };
    let run = setup_ok(&lab, "02", &["--allow-client-cutoff"]);
    stop.store(true, Ordering::Relaxed);
    let (probes, failures) = prober.join().unwrap();
    println!("  {probes} probes during setup 02, {} timed out", failures.len());
    println!("  timing: setup 02 on an adopted cluster {:.2}s, {} changed", run.secs, ips.iter().map(|ip| run.count(ip, "changed")).sum::<u64>());
    assert!(probes >= 5, "too few probes ({probes}) to say anything");
    assert_no_outage(&failures, probes, 3);

    // One member at a time: each left active only after the previous one was back.
    let mut times: Vec<(u64, u64)> = (0..3).map(|i| etcd_times(&lab, i)).collect();
    for (i, (t, b)) in times.iter().zip(&times_before).enumerate() {
        assert!(t.1 > b.1, "etcd on host {i} was not restarted: {t:?}");
    }
    times.sort();
    for w in times.windows(2) {
        assert!(w[1].0 > w[0].1, "two members down at once (left active, back active): {times:?}");
    }

    // Data and members kept; the kubeasz certificates and CA kept on the hosts.
    for n in [0, 7, 19] {
        let out = old_client(certs.path(), &ips, &["get", &format!("/kubeasz/k{n}"), "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("v{n}"), "{}", text(&out));
    }
    assert_eq!(member_ids(certs.path(), &ips), members);
    let sha = |b: &[u8]| ezk::pki::sha256_hex(b);
    for i in 0..3 {
        let on_host = |f: &str| lab.sh(i, &format!("sha256sum {SSL}/{f} | cut -d' ' -f1"));
        assert_eq!(on_host("etcd.pem"), sha(&file("etcd.pem")), "etcd.pem reissued on host {i}");
        assert_eq!(on_host("etcd-ca.pem"), sha(&file("ca.pem")), "etcd on host {i} trusts another CA");
        assert_eq!(lab.sh(i, &format!("stat -c %a {SSL}/etcd-key.pem")), "600");
        let unit = lab.sh(i, &format!("cat {UNIT}"));
        assert!(!unit.contains("http://") && unit.contains("--client-cert-auth=true"), "{unit}");
    }
    assert!(!ssl.join("etcd-ca.pem").exists(), "a second CA next to kubeasz's");

    // A re-run changes nothing, and needs no flag.
    let again = setup_ok(&lab, "02", &[]);
    assert_nothing_changed(&again, &ips);
    println!("  timing: setup 02 re-run on the adopted cluster {:.2}s", again.secs);

    etcd_ca_is_rotated_without_an_outage(&lab, &ips, certs.path(), &ssl);
}

/// No outage for an etcd client probing every 0.2 s (`failures` as "probe N…"). etcdctl keeps
/// one member's connection; a write in flight there when that member goes down fails (a
/// timeout, or gRPC's "missing content-type field" as its listener closes), and one that meets
/// the leadership moving (a follower forwards it to a leader that is handing over, which drops
/// it) waits until its deadline. etcd clients must expect and retry both. Allowed: at most one
/// such failure per member restart, never two probes in a row (0.2 s apart: a gap a client
/// would feel), and never a refusal — a certificate or handshake refused, the outage a CA
/// rotation risks, fails every probe after it.
pub fn assert_no_outage(failures: &[String], probes: u32, restarts: usize) {
    let said = || format!("{} of {probes} etcd probes failed:\n{}", failures.len(), failures.join("\n"));
    let refused = |f: &&String| ["certificate", "tls:", "handshake", "authentication", "permission denied"].iter().any(|m| f.contains(m));
    assert!(!failures.iter().any(|f| refused(&f)), "refused: {}", said());
    assert!(failures.len() <= restarts, "more than one per member restart ({restarts}): {}", said());
    let n: Vec<u32> = failures.iter().map(|f| f.split(' ').nth(1).and_then(|n| n.trim_end_matches(':').parse().ok()).expect("probe N with ...")).collect();
    assert!(n.windows(2).all(|w| w[1] > w[0] + 1), "two probes in a row failed: {}", said());
}

/// The files a probing etcd client uses: (CA bundle, certificate, key).
pub type ClientFiles = Arc<Mutex<(PathBuf, PathBuf, PathBuf)>>;

/// etcdctl on this machine with `files`, against every member, with etcdctl's default timeouts
/// (2 s to dial, 5 s per command): a write that meets the one planned leader hand-over of a
/// rolling restart waits for the new leader; under a loaded lab that took longer than 3 s once
/// ("etcdserver: request timed out" at a 3 s deadline).
pub fn client(files: &(PathBuf, PathBuf, PathBuf), ips: &[String], args: &[&str]) -> std::process::Output {
    let endpoints: Vec<String> = ips.iter().map(|ip| format!("https://{ip}:2379")).collect();
    Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", files.0.display()))
        .arg(format!("--cert={}", files.1.display()))
        .arg(format!("--key={}", files.2.display()))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// A client writing and reading every 0.2 s with whatever files `files` names at that moment;
/// joined: (probes, failures).
pub fn prober(files: ClientFiles, ips: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u32, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut probes, mut failures) = (0u32, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let f = files.lock().unwrap().clone();
            let v = format!("r{probes}");
            let put = client(&f, &ips, &["put", "/kubeasz/rotation-probe", &v]);
            let get = client(&f, &ips, &["get", "/kubeasz/rotation-probe", "--print-value-only"]);
            if !put.status.success() || String::from_utf8_lossy(&get.stdout).trim() != v {
                failures.push(format!("probe {probes} with {}: put: {} get: {}", f.1.display(), text(&put), text(&get)));
            }
            probes += 1;
            std::thread::sleep(Duration::from_millis(200).saturating_sub(t.elapsed()));
        }
        (probes, failures)
    })
}

/// Each member left active only after the previous one was back, and every one restarted
/// since `before`.
fn restarted_one_at_a_time(lab: &Lab, before: &[(u64, u64)], what: &str) -> Vec<(u64, u64)> {
    let hosts: Vec<usize> = (0..before.len()).collect();
    unit_restarted_one_at_a_time(lab, &hosts, "etcd", before, what)
}

/// `unit` on each of `hosts` restarted since `before` (times as `unit_times` gives them), and
/// none left active before the previous one was back.
pub fn unit_restarted_one_at_a_time(lab: &Lab, hosts: &[usize], unit: &str, before: &[(u64, u64)], what: &str) -> Vec<(u64, u64)> {
    let now: Vec<(u64, u64)> = hosts.iter().map(|&i| unit_times(lab, i, unit)).collect();
    for (i, (t, b)) in now.iter().zip(before).enumerate() {
        assert!(t.1 > b.1, "{what}: {unit} on host {} was not restarted: {t:?}", hosts[i]);
    }
    let mut sorted = now.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(w[1].0 > w[0].1, "{what}: {unit} down on two hosts at once (left active, back active): {sorted:?}");
    }
    now
}

pub fn certs_in(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

/// Issue 21: `ezk rotate-ca <c> etcd` on the cluster just taken over (kubeasz's one CA): etcd
/// gets a CA of its own in three phases while a client probes every 0.2 s — with kubeasz's
/// certificates through phase 1, with the trust bundle an apiserver gets after it, with the
/// new client certificate once phase 2 handed it out — and no outage (`assert_no_outage`); each phase restarts
/// the members one at a time; phase 2 is killed once it began on a host and a re-run finishes
/// it; a re-run after the end changes nothing; kubeasz's old client certificates are refused.
fn etcd_ca_is_rotated_without_an_outage(lab: &Lab, ips: &[String], old: &Path, ssl: &Path) {
    let manifest = || std::fs::read_to_string(ssl.join("manifest.json")).unwrap();
    // --plan: the phases, per host; nothing written.
    let before = manifest();
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--plan"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    for want in ["phase 1/3 (next)", "phase 2/3 (to do)", "phase 3/3 (to do)", "gives etcd a CA of its own", "who loses access"] {
        assert!(plan.contains(want), "the plan does not say {want:?}:\n{plan}");
    }
    for ip in ips {
        assert!(plan.contains(&format!("    {ip}: etcd-ca.pem: the old CA → the old + the new CA; etcd restarts")), "{plan}");
    }
    assert_eq!(manifest(), before, "--plan wrote the manifest");
    assert!(!ssl.join("etcd-ca-new.pem").exists(), "--plan made a CA");
    // Off a terminal without --yes: refused, nothing written.
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd"]);
    assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
    assert_eq!(manifest(), before);

    let files: ClientFiles = Arc::new(Mutex::new((old.join("ca.pem"), old.join("kubernetes.pem"), old.join("kubernetes-key.pem"))));
    let stop = Arc::new(AtomicBool::new(false));
    let probing = prober(files.clone(), ips.to_vec(), stop.clone());
    let started = Instant::now();

    // Phase 1: every member trusts both CAs; certificates unchanged.
    let t0: Vec<(u64, u64)> = (0..3).map(|i| etcd_times(lab, i)).collect();
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes", "--until", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped after phase 1"), "{}", text(&out));
    let t1 = restarted_one_at_a_time(lab, &t0, "phase 1");
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("etcd-ca-bundle.pem");
    for i in 0..3 {
        let ca = lab.sh(i, &format!("cat {SSL}/etcd-ca.pem"));
        assert_eq!(certs_in(&ca), 2, "host {i} does not trust both CAs:\n{ca}");
        if i == 0 {
            std::fs::write(&bundle, format!("{ca}\n")).unwrap();
        }
    }
    // The client now trusts what an apiserver is given (both CAs), still with kubeasz's certificate.
    files.lock().unwrap().0 = bundle.clone();

    // Phase 2, killed once it began applying on a host, then run again.
    let mut watcher = lab
        .ssh_cmd(0)
        .arg("for n in $(seq 1 9000); do [ -n \"$(ls -A /var/lib/ezk/pending-restart 2>/dev/null)\" ] && exit 0; sleep 0.01; done; exit 1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = crate::common::ezk::command(&lab.home)
        .args(["rotate-ca", &lab.name, "etcd", "--yes", "--until", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = watcher.wait().unwrap().success();
    let _ = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status();
    let killed = child.wait().unwrap();
    assert!(seen, "phase 2 never began applying on host 0");
    assert_eq!(killed.code(), None, "rotate-ca ended before the kill");
    assert!(manifest().contains("\"phase\": 2"), "{}", manifest());
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes", "--until", "2"]);
    assert!(out.status.success(), "the re-run after the kill: {}", text(&out));
    assert!(text(&out).contains("stopped after phase 2"), "{}", text(&out));
    let etcd_pem = std::fs::read(ssl.join("etcd.pem")).unwrap();
    let new_ca = std::fs::read_to_string(ssl.join("etcd-ca.pem")).unwrap();
    assert_eq!(certs_in(&new_ca), 1);
    assert!(!bundle_has_only_old(&new_ca, old), "etcd-ca.pem is kubeasz's CA");
    for i in 0..3 {
        assert_eq!(lab.sh(i, &format!("sha256sum {SSL}/etcd.pem | cut -d' ' -f1")), ezk::pki::sha256_hex(&etcd_pem), "host {i}: etcd.pem not re-issued");
        assert_eq!(certs_in(&lab.sh(i, &format!("cat {SSL}/etcd-ca.pem"))), 2, "host {i}");
        let (_, entered) = etcd_times(lab, i);
        assert!(entered > t1[i].1, "host {i}: etcd not restarted in phase 2");
    }
    // The client moves to the certificate this machine's etcdctl was given from the new CA.
    {
        let mut f = files.lock().unwrap();
        f.1 = ssl.join("etcd-client.pem");
        f.2 = ssl.join("etcd-client-key.pem");
    }
    std::thread::sleep(Duration::from_millis(600));

    // Phase 3: the old CA dropped.
    let t2: Vec<(u64, u64)> = (0..3).map(|i| etcd_times(lab, i)).collect();
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is rotated"), "{}", text(&out));
    restarted_one_at_a_time(lab, &t2, "phase 3");
    files.lock().unwrap().0 = ssl.join("etcd-ca.pem");
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let (probes, failures) = probing.join().unwrap();
    println!("  {probes} probes during the etcd CA rotation ({:.0}s), {} timed out", started.elapsed().as_secs_f64(), failures.len());
    assert!(probes >= 20, "too few probes ({probes})");
    // Three phases, each restarting every member.
    assert_no_outage(&failures, probes, 9);
    for i in 0..3 {
        let ca = lab.sh(i, &format!("cat {SSL}/etcd-ca.pem"));
        assert_eq!(ca.trim(), new_ca.trim(), "host {i} still trusts the old CA");
    }
    // kubeasz's old client certificate is refused now; the data is there for the new one.
    let out = old_client(old, ips, &["get", "/kubeasz/k7", "--print-value-only"]);
    assert!(!out.status.success(), "a certificate of the old CA is still accepted: {}", text(&out));
    let f = files.lock().unwrap().clone();
    let out = client(&f, ips, &["get", "/kubeasz/k7", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v7", "{}", text(&out));
    assert!(!ssl.join("etcd-ca-old.pem").exists() && !ssl.join("etcd-ca-new.pem").exists());

    // A re-run changes nothing: no restart, no file; setup 02 neither.
    let t3: Vec<(u64, u64)> = (0..3).map(|i| etcd_times(lab, i)).collect();
    let out = lab.ezk(&["rotate-ca", &lab.name, "etcd", "--yes"]);
    assert!(out.status.success() && text(&out).contains("nothing to do"), "{}", text(&out));
    let again = setup_ok(lab, "02", &[]);
    assert_nothing_changed(&again, ips);
    assert_eq!((0..3).map(|i| etcd_times(lab, i)).collect::<Vec<_>>(), t3, "a re-run restarted etcd");
}

/// Whether `pem` is kubeasz's CA (the `ca.pem` in `old`).
fn bundle_has_only_old(pem: &str, old: &Path) -> bool {
    pem.trim() == std::fs::read_to_string(old.join("ca.pem")).unwrap().trim()
}
