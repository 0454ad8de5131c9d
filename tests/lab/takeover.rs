//! Taking over an etcd cluster that kubeasz built, on a 3-host lab of its own (issue 21).
//!
//! kubeasz itself cannot run here, so the hosts are laid out as kubeasz 3.x leaves them, by
//! this file's own code from what kubeasz's etcd role does: binaries in /opt/kube/bin, one CA
//! for everything (`common::kubeasz`: ca.pem, etcd.pem with every member's address and
//! 127.0.0.1, the apiserver's kubernetes.pem) in /etc/kubernetes/ssl with the keys left 0644,
//! /var/lib/etcd 0700, and /etc/systemd/system/etcd.service with kubeasz's flags: member names
//! `etcd-<ip>`, `--trusted-ca-file=…/ca.pem`, no `--client-cert-auth`, and the plaintext
//! `http://127.0.0.1:2379` listener. Then `ezk setup <c> 02` must keep every client that holds
//! a kubeasz certificate served — probed every 0.2 s, writes and reads, through the whole run —
//! restart the members one at a time, keep the data and the members, and a re-run changes
//! nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::kubeasz;
use crate::steps_support::{assert_nothing_changed, fill_store, setup_ok, text};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "takeover::kubeasz_etcd_is_taken_over_without_an_outage",
    run: kubeasz_etcd_is_taken_over_without_an_outage,
}];

const SSL: &str = "/etc/kubernetes/ssl";
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
fn put(lab: &Lab, i: usize, path: &str, bytes: &[u8], mode: &str) {
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
fn stored(lab: &Lab, name: &str) -> PathBuf {
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
        .args(["--dial-timeout=2s", "--command-timeout=3s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// (left active, entered active) of etcd on host `i`, microseconds of the machine's monotonic
/// clock (one kernel for every lab host, so comparable across hosts).
fn etcd_times(lab: &Lab, i: usize) -> (u64, u64) {
    let out = lab.sh(i, "systemctl show -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic etcd");
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

    // kubeasz's hosts.
    let (etcd, etcdctl) = (std::fs::read(stored(&lab, "etcd")).unwrap(), std::fs::read(stored(&lab, "etcdctl")).unwrap());
    for i in 0..3 {
        put(&lab, i, "/opt/kube/bin/etcd", &etcd, "0755");
        put(&lab, i, "/opt/kube/bin/etcdctl", &etcdctl, "0755");
        for (f, mode) in [("ca.pem", "0644"), ("etcd.pem", "0644"), ("etcd-key.pem", "0644"), ("kubernetes.pem", "0644"), ("kubernetes-key.pem", "0644")] {
            put(&lab, i, &format!("{SSL}/{f}"), &file(f), mode);
        }
        put(&lab, i, UNIT, kubeasz_unit(&ips[i], &ips).as_bytes(), "0644");
        lab.sh(i, "mkdir -p /var/lib/etcd && chmod 0700 /var/lib/etcd && systemctl daemon-reload && systemctl enable -q etcd && systemctl start --no-block etcd");
    }
    let start = Instant::now();
    while !old_client(certs.path(), &ips, &["endpoint", "health", "--cluster"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(90), "kubeasz's etcd did not come up");
        std::thread::sleep(Duration::from_millis(300));
    }
    for n in 0..20 {
        let out = old_client(certs.path(), &ips, &["put", &format!("/kubeasz/k{n}"), &format!("v{n}")]);
        assert!(out.status.success(), "{}", text(&out));
    }
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
    println!("  {probes} probes during setup 02, none failed");
    println!("  timing: setup 02 on an adopted cluster {:.2}s, {} changed", run.secs, ips.iter().map(|ip| run.count(ip, "changed")).sum::<u64>());
    assert!(probes >= 5, "too few probes ({probes}) to say anything");
    assert!(failures.is_empty(), "{} of {probes} probes failed:\n{}", failures.len(), failures.join("\n"));

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
}
