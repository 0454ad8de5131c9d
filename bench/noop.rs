//! Bench: wall time and round trips of a no-op re-run on 3/10/30 lab hosts (real systemd hosts
//! over SSH), after one converging run of the 14-task demo role (files, a secret, a unit,
//! sysctl, modprobe, daemon-reload, service, waits, guarded commands).
//!
//! Run: `bench/noop.sh [SIZES...]` (root; boots and removes one lab per size). Prints one line
//! per size and key exchange. A no-op re-run is, per host: one SSH master handshake + one gather round trip.

#[allow(dead_code)]
#[path = "../tests/lab/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../tests/lab/exec.rs"]
mod exec;

use std::time::Instant;

use ezk::exec::{Options, run_step};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![3, 10, 30] } else { sizes };
    if !support::is_root() {
        eprintln!("bench needs root (it boots systemd-nspawn lab hosts)");
        std::process::exit(1);
    }
    support::install_interrupt_handler();
    println!(
        "{:>5}  {:<18}  {:>11}  {:>8}  {:>8}  {:>14}  {:>12}  {:>7}",
        "hosts", "kex", "first run s", "no-op s", "best s", "connect s/host", "trips/host", "changed"
    );
    for n in sizes {
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
        for kex in [None, Some("curve25519-sha256")] {
            let opts = Options { progress: Some(false), json: true, kex_algorithms: kex.map(String::from), ..Options::default() };
            let t = Instant::now();
            let first = run_step(&lab.cluster_dir(), &plan, &conns, &opts).expect("first run");
            let first_s = t.elapsed().as_secs_f64();
            assert_eq!(first.exit_code(), 0, "{}", first.to_json());
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..3 {
                let t = Instant::now();
                let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts).expect("no-op run");
                times.push(t.elapsed().as_secs_f64());
                last = Some(r);
            }
            let r = last.unwrap();
            let max_trips = r.hosts.values().map(|h| h.round_trips).max().unwrap_or(0);
            let connect = r.hosts.values().map(|h| h.connect_seconds).sum::<f64>() / r.hosts.len() as f64;
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{n:>5}  {:<18}  {:>11}  {:>8.2}  {:>8.2}  {connect:>14.3}  {max_trips:>12}  {:>7}",
                kex.unwrap_or("default (sntrup)"),
                // Only the first pass converges the fresh lab; the second starts converged.
                if kex.is_none() { format!("{first_s:.2}") } else { "-".to_string() },
                times[times.len() / 2],
                times[0],
                r.total_changed()
            );
        }
        let left = lab.down_and_check();
        if !left.is_empty() {
            eprintln!("lab {name} left behind: {}", left.join("; "));
        }
    }
}
