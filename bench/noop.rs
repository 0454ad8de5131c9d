//! Bench: wall time and round trips of a no-op re-run on 3/10/30 lab hosts (real systemd hosts
//! over SSH), after one converging run of the 14-task demo role (files, a secret, a unit,
//! sysctl, modprobe, daemon-reload, service, waits, guarded commands).
//!
//! Run: `bench/noop.sh [SIZES...]` (root; boots and removes one lab per size). A size `loN`
//! runs N loopback sshd processes instead (see `loopback.rs`), for counts the nspawn lab cannot
//! boot here. Prints one line per size and key exchange. A no-op re-run is, per host: one SSH
//! master handshake + one gather round trip.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/lab/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../tests/lab/exec.rs"]
mod exec;

#[path = "../tests/sshd/mod.rs"]
mod sshd;
mod loopback;

use std::time::Instant;

use ezk::exec::{Options, run_step};
use ezk::plan::action::{StepPlan, Wave};
use indexmap::IndexMap;

/// Sizes prefixed with `lo` (e.g. `lo30`) run on loopback sshd processes instead of the lab.
fn loopback_bench(n: usize) {
    let servers: Vec<sshd::Sshd> = {
        let first = sshd::Sshd::start(None);
        let key = first.client_key.clone();
        let mut v = vec![first];
        for _ in 1..n {
            v.push(sshd::Sshd::start(Some(&key)));
        }
        v
    };
    let work = tempfile::tempdir().unwrap();
    let cluster = work.path().join("clusters/bench");
    std::fs::create_dir_all(&cluster).unwrap();
    let kh: String = servers.iter().map(|s| s.known_hosts_line()).collect();
    std::fs::write(cluster.join("known_hosts"), kh).unwrap();
    let base = work.path().join("hosts");
    let conns: IndexMap<String, ezk::exec::Connection> = servers.iter().enumerate().map(|(i, s)| (format!("lo-{i}"), s.connection())).collect();
    let plan = StepPlan {
        needs_nodes: false,
        step: "files".into(),
        waves: vec![Wave { roles: vec!["files".into()], hosts: servers.iter().enumerate().map(|(i, s)| loopback::role(&base, &format!("lo-{i}"), s.port)).collect(), serial: Default::default() }],
    };
    measure(&format!("{n} lo"), &cluster, &plan, &conns);
}

/// One converging run, then three no-op runs, per key exchange; one printed line each.
fn measure(label: &str, cluster: &std::path::Path, plan: &StepPlan, conns: &IndexMap<String, ezk::exec::Connection>) {
    for kex in [None, Some("curve25519-sha256")] {
        let opts = Options { progress: Some(false), json: true, kex_algorithms: kex.map(String::from), ..Options::default() };
        let t = Instant::now();
        let first = run_step(cluster, plan, conns, &opts).expect("first run");
        let first_s = t.elapsed().as_secs_f64();
        assert_eq!(first.exit_code(), 0, "{}", first.to_json());
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let t = Instant::now();
            let r = run_step(cluster, plan, conns, &opts).expect("no-op run");
            times.push(t.elapsed().as_secs_f64());
            last = Some(r);
        }
        let r = last.unwrap();
        let max_trips = r.hosts.values().map(|h| h.round_trips).max().unwrap_or(0);
        let connect = r.hosts.values().map(|h| h.connect_seconds).sum::<f64>() / r.hosts.len() as f64;
        let max_host = r.hosts.values().map(|h| h.seconds).fold(0.0, f64::max);
        // EZK_BENCH_DEBUG=1: per-host times, to find where a slow run spends them.
        if std::env::var_os("EZK_BENCH_DEBUG").is_some() {
            for (h, hr) in &r.hosts {
                eprintln!("debug {h}: {:.2}s connect {:.2}s trips {}", hr.seconds, hr.connect_seconds, hr.round_trips);
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{label:>6}  {:<18}  {:>11}  {:>8.2}  {:>8.2}  {connect:>14.3}  {max_host:>10.2}  {max_trips:>10}  {:>7}",
            kex.unwrap_or("default (sntrup)"),
            // Only the first pass converges; the second starts converged.
            if kex.is_none() { format!("{first_s:.2}") } else { "-".to_string() },
            times[times.len() / 2],
            times[0],
            r.total_changed()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let args = if args.is_empty() { vec!["3".into(), "10".into(), "30".into()] } else { args };
    if !support::is_root() {
        eprintln!("bench needs root (it boots systemd-nspawn lab hosts)");
        std::process::exit(1);
    }
    support::install_interrupt_handler();
    println!(
        "{:>6}  {:<18}  {:>11}  {:>8}  {:>8}  {:>14}  {:>10}  {:>10}  {:>7}",
        "hosts", "kex", "first run s", "no-op s", "best s", "connect s/host", "max host s", "trips/host", "changed"
    );
    for a in args {
        if let Some(n) = a.strip_prefix("lo").and_then(|n| n.parse().ok()) {
            loopback_bench(n);
            continue;
        }
        let Ok(n) = a.parse::<usize>() else {
            eprintln!("size {a:?}: expected a number, or lo<number> for loopback sshd hosts");
            continue;
        };
        let name = format!("b{n}x{}", std::process::id() % 10000);
        let lab = match support::Lab::up(&name, n) {
            Ok(l) => l,
            Err(e) => {
                println!("{n:>5}  lab did not come up: {e}");
                continue;
            }
        };
        let conns = exec::conns(&lab);
        let plan = exec::step(&lab, "bench");
        measure(&format!("{n}"), &lab.cluster_dir(), &plan, &conns);
        let left = lab.down_and_check();
        if !left.is_empty() {
            eprintln!("lab {name} left behind: {}", left.join("; "));
        }
    }
}
