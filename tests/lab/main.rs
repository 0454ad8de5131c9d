//! The lab integration suite: ONE test binary (`cargo test --test lab`, harness = false) that
//! boots one shared lab of real systemd hosts, runs every registered test against it, and
//! always tears it down — after failures, panics, and on Ctrl-C/SIGTERM too.
//!
//! Adding tests: create `tests/lab/<topic>.rs` with
//! `pub const TESTS: &[Test] = &[Test { name: "topic::what", run: what }, ...];` where each
//! `fn what(lab: &Lab)` panics on failure, then add `mod <topic>;` and `<topic>::TESTS` to
//! `SUITES` below. Tests needing a lab of another size call `Lab::up(..)` themselves (it is torn
//! down when dropped, and on interrupt).
//!
//! What a test gets (`support::Lab`): `hosts[i].{name,ip}`, `index` (198.18.N), `home`,
//! `cluster_dir()`, `key()`, `known_hosts()`, `inventory()`, `vip()`; `ssh(i, cmd)` / `sh(i, cmd)`
//! (strict host-key checking), `ssh_cmd(i)`, `ezk(&[args])` (the real binary with `--home`),
//! `stop_host(i)`, `down_and_check()` (→ leftovers).
//!
//! Usage: `cargo test --test lab [-- FILTER...]` runs the tests whose name contains any FILTER.
//! Not root: prints why and exits 0 (skipped). Ends with the line `N passed, N failed`.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod backup;
mod basics;
mod certs;
mod day2;
mod day2_etcd;
mod day2_master;
mod destroy;
mod exec;
mod faults;
mod faults_kube;
mod kube_dns;
mod kube_images;
mod kube_master;
mod kube_network;
mod kube_node;
mod lifecycle;
mod mux;
mod rotate_ca;
mod packages;
mod steps;
mod steps_fail;
mod steps_lb;
mod steps_runtime;
mod steps_support;
mod support;
mod takeover;
mod takeover_master;
mod upgrade;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

pub use support::{Lab, Test};

/// Every registered test list. Other topics add theirs here.
const SUITES: &[&[Test]] = &[
    basics::TESTS,
    lifecycle::TESTS,
    exec::TESTS,
    // steps asserts what a first run of 01/02 changes, so it runs before the suites that
    // converge the shared lab for their own checks (certs, audit).
    steps::TESTS,
    steps_runtime::TESTS,
    steps_fail::TESTS,
    // SSH masters kept between runs, and not trusted once known_hosts changed.
    mux::TESTS,
    steps_lb::TESTS,
    packages::TESTS,
    certs::TESTS,
    audit::TESTS,
    backup::TESTS,
    // Faults injected into runs on the shared lab (a killed session, a reboot, a full disk, ezk
    // killed, two runs at once, a skewed clock); each leaves the lab converged as it found it.
    faults::TESTS,
    // A kubeasz-built etcd taken over, on a 3-host lab of its own.
    takeover::TESTS,
    // A kubeasz-built control plane (etcd and three masters) taken over, on a 3-host lab of its own.
    takeover_master::TESTS,
    // Kubernetes, on a 5-host lab of its own (booted by the first of these tests).
    kube_master::TESTS,
    // An apiserver killed and an etcd member lost during runs; the control plane converged after.
    faults_kube::TESTS,
    kube_node::TESTS,
    // The image-based network plugins: their manifests against the real API server (dry run),
    // network-apply for real (pods that cannot pull), the clean roles on a shared-lab host.
    kube_network::TESTS,
    kube_dns::TESTS,
    kube_images::TESTS,
    // adds the spare host as a node and removes it again
    day2::TESTS,
    // adds the spare host as a master and removes it again (day2 left it as it found it)
    day2_master::TESTS,
    // adds the spare host as a 4th etcd member and removes it again (day2_master left it as
    // it found it)
    day2_etcd::TESTS,
    // the etcd CA rotated under the API and an etcd client, three rolling restarts, the leader
    // last in each; then the cluster (Kubernetes) CA under the API and an in-cluster client
    rotate_ca::TESTS,
    // upgrades to the lab's second build (v1.20.2+lab.1) and back (the cluster ends at
    // lab-debian, the inventory as it began)
    upgrade::TESTS,
    // destroy takes the shared lab down to bare hosts (and builds it back): last.
    destroy::TESTS,
];

/// Hosts in the shared lab.
const SHARED_HOSTS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list_only = args.iter().any(|a| a == "--list");
    let exact = args.iter().any(|a| a == "--exact");
    // Positional args are name filters; libtest-style flags (--nocapture, --format terse, ...)
    // are accepted and ignored, with their values, so cargo test and nextest can drive this.
    const TAKES_VALUE: &[&str] = &[
        "--format",
        "--test-threads",
        "--skip",
        "--color",
        "--logfile",
        "-Z",
        "--shuffle-seed",
    ];
    let mut filters: Vec<&String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if TAKES_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    let matches = |name: &str, f: &str| if exact { name == f } else { name.contains(f) };
    let selected: Vec<&Test> = SUITES
        .iter()
        .flat_map(|s| s.iter())
        .filter(|t| filters.is_empty() || filters.iter().any(|f| matches(t.name, f)))
        .collect();
    if list_only {
        for t in &selected {
            println!("{}: test", t.name);
        }
        return;
    }
    if !support::is_root() {
        println!(
            "lab tests skipped: they boot systemd-nspawn hosts and need root (run as root: cargo test --test lab)"
        );
        println!("0 passed, 0 failed");
        return;
    }
    if selected.is_empty() {
        println!("no lab test matches {filters:?}");
        println!("0 passed, 0 failed");
        return;
    }
    support::install_interrupt_handler();
    let name = format!("t{}", std::process::id());
    println!("booting shared lab {name} ({SHARED_HOSTS} hosts)");
    let lab = match Lab::up(&name, SHARED_HOSTS) {
        Ok(lab) => lab,
        Err(e) => {
            println!("shared lab did not come up: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let (mut passed, mut failed) = (0usize, Vec::new());
    for t in &selected {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (t.run)(&lab)));
        let secs = start.elapsed().as_secs_f32();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok ({secs:.1}s)", t.name);
            }
            Err(payload) => {
                let msg = support::panic_message(&payload);
                println!("test {} ... FAILED ({secs:.1}s): {msg}", t.name);
                failed.push(t.name);
            }
        }
    }
    // Tearing the shared lab down is itself checked: nothing may be left behind.
    let leftovers = lab.down_and_check();
    if leftovers.is_empty() {
        passed += 1;
        println!("test shared-lab-teardown ... ok");
    } else {
        println!(
            "test shared-lab-teardown ... FAILED: left behind: {}",
            leftovers.join("; ")
        );
        failed.push("shared-lab-teardown");
    }
    // The lab's temporary home (store copy, clusters/, logs: ~260 MB) goes with it; exit()
    // below would skip the drop and leave it in /tmp.
    drop(lab);
    match support::cluster_lab_teardown() {
        None => {}
        Some(left) if left.is_empty() => {
            passed += 1;
            println!("test kubernetes-lab-teardown ... ok");
        }
        Some(left) => {
            println!("test kubernetes-lab-teardown ... FAILED: left behind: {}", left.join("; "));
            failed.push("kubernetes-lab-teardown");
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!("{passed} passed, {} failed", failed.len());
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
