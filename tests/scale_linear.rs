//! Planning is linear in hosts (issue 16), shown without a clock: `ezk check`'s work — the
//! inventory validated, every step of the shipped roles planned for every host — on the
//! kubeasz example inventory with 10 and then 40 workers. Per host, the variable values
//! rendered do not grow with the host count (each host's values are rendered once per run, not
//! once per host × role with every other host's copied in), and the Jinja texts of the roles'
//! tasks are compiled the same number of times whatever the host count (once per step, not
//! once per host), and `hostvars[host]` lookups per host do not grow either (a role text that
//! walks every host, prepare's node names for /etc/hosts, is rendered once per step: per host
//! it would be hosts² lookups). And the plans' memory is linear too: the command texts and
//! file contents a plan holds take, per host, no more bytes with more hosts (a text that lists
//! every node is one allocation every host's plan shares, not a copy per host: hosts × nodes
//! bytes, 2 GB at 5000 hosts). Wall-clock and RSS figures are in bench/README.md
//! (`bench/scale.sh`).

use std::collections::HashSet;
use std::path::Path;

use ezk::inventory::{Inventory, hostvars_lookups, render_count, validate};
use ezk::plan::action::{Action, Content};
use ezk::plan::{Body, Catalog, Library, Planner, check_catalog, compile_count};

/// `clusters/w<workers>/` under `home`: the example hosts (3 masters = etcd, 2 ex_lb, chrony)
/// with `workers` workers instead of two, and the example config.yml.
fn cluster(home: &Path, workers: usize) -> Inventory {
    let dir = home.join(format!("w{workers}"));
    std::fs::create_dir_all(&dir).unwrap();
    let example = include_str!("../inventory-examples/hosts.multi-node");
    let two = "198.51.100.21 k8s_nodename='worker-01'\n198.51.100.22 k8s_nodename='worker-02'\n";
    assert!(example.contains(two), "the example's workers changed: adapt this test");
    let many: String = (0..workers)
        .map(|i| format!("100.64.{}.{} k8s_nodename='worker-{i}'\n", i / 250, i % 250 + 1))
        .collect();
    std::fs::write(dir.join("hosts"), example.replace(two, &many)).unwrap();
    std::fs::write(dir.join("config.yml"), include_str!("../inventory-examples/config.yml")).unwrap();
    Inventory::from_dir(&dir, &format!("w{workers}"), &[]).unwrap()
}

/// (variable renders, task-text compilations, hostvars lookups) of `ezk check`'s work on `inv`.
fn work(catalog: &Catalog, inv: &Inventory) -> (u64, u64, u64) {
    let (r0, c0, l0) = (render_count(), compile_count(), hostvars_lookups());
    assert!(validate::validate(inv).is_empty(), "the example inventory validates");
    let problems = check_catalog(catalog, inv, &ezk::session::CheckFiles);
    assert!(problems.is_empty(), "{problems:?}");
    (render_count() - r0, compile_count() - c0, hostvars_lookups() - l0)
}

#[test]
fn variable_renders_per_host_and_task_compilations_do_not_grow_with_hosts() {
    let home = tempfile::tempdir().unwrap();
    let catalog = Catalog::load(&Library::embedded()).unwrap();
    let (small, big) = (cluster(home.path(), 10), cluster(home.path(), 40));
    let ((r_small, c_small, l_small), (r_big, c_big, l_big)) = (work(&catalog, &small), work(&catalog, &big));
    let per_host = |r: u64, inv: &Inventory| r as f64 / inv.hosts.len() as f64;
    let (ps, pb) = (per_host(r_small, &small), per_host(r_big, &big));
    assert!(r_small > 0 && c_small > 0, "nothing counted: renders {r_small}, compilations {c_small}");
    assert!(
        pb <= ps,
        "variable renders per host grew with the host count: {ps:.1} for {} hosts, {pb:.1} for {}",
        small.hosts.len(),
        big.hosts.len()
    );
    assert_eq!(c_big, c_small, "task texts compiled per host instead of once per step");
    let (ls, lb) = (per_host(l_small, &small), per_host(l_big, &big));
    assert!(l_small > 0, "no hostvars lookup counted: prepare's node names read hostvars");
    // Walks of fixed groups (etcd members, masters) are a constant per host; one walk of every
    // host per step adds under one per host. Rendered per host, it would add a host count (3×
    // the hosts here: 3× the lookups per host).
    assert!(
        lb < ls * 1.5,
        "hostvars lookups per host grew with the host count: {ls:.1} for {} hosts, {lb:.1} for {}",
        small.hosts.len(),
        big.hosts.len()
    );
}

/// Bytes of command texts and in-memory file contents the plans of every step hold for `inv`,
/// each allocation counted once however many tasks share it, and (for comparison) the bytes
/// they would take with a copy per task.
fn text_bytes(catalog: &Catalog, inv: &Inventory) -> (usize, usize) {
    let planner = Planner { catalog, vars: inv, files: &ezk::session::CheckFiles, nodes: None };
    let (mut held, mut copied) = (0, 0);
    for book in catalog.playbooks.iter().filter(|b| matches!(b.body, Body::Plays(_))) {
        let plan = planner.plan_step(&book.step).unwrap();
        // Per step: the plan of one step is what a run holds at once, and what `check` holds.
        let mut seen: HashSet<*const u8> = HashSet::new();
        let mut count = |p: *const u8, len: usize| {
            copied += len;
            if seen.insert(p) {
                held += len;
            }
        };
        for t in plan.waves.iter().flat_map(|w| &w.hosts).flat_map(|h| &h.tasks) {
            match &t.action {
                Action::Command { cmd, unless, .. } => {
                    count(cmd.as_ptr(), cmd.len());
                    if let Some(u) = unless {
                        count(u.as_ptr(), u.len());
                    }
                }
                Action::File(f) => {
                    if let Content::Inline(b) = &f.content {
                        count(b.as_ptr(), b.len());
                    }
                }
                _ => {}
            }
        }
    }
    (held, copied)
}

#[test]
fn plan_texts_per_host_do_not_grow_with_hosts() {
    let home = tempfile::tempdir().unwrap();
    let catalog = Catalog::load(&Library::embedded()).unwrap();
    let invs = [10, 40, 70].map(|w| cluster(home.path(), w));
    let bytes = invs.each_ref().map(|inv| text_bytes(&catalog, inv));
    let hosts = invs.each_ref().map(|inv| inv.hosts.len());
    assert_eq!(hosts[1] - hosts[0], hosts[2] - hosts[1], "equal steps of hosts");
    // What 30 more hosts add, at 15 and at 45 hosts: the same when every host's texts are its
    // own plus one allocation per shared text; more with more hosts when a text that lists
    // every node is copied into each host's plan (every host's copy grows by the new nodes).
    let added = |f: fn(&(usize, usize)) -> usize| (f(&bytes[1]) - f(&bytes[0]), f(&bytes[2]) - f(&bytes[1]));
    let (held_first, held_then) = added(|b| b.0);
    let (copied_first, copied_then) = added(|b| b.1);
    // The check can fail: counted with a copy per task, the bytes do grow faster (on the
    // shipped roles: 504 kB then 633 kB; shared: 95.7 kB both times).
    assert!(
        copied_then as f64 > copied_first as f64 * 1.1,
        "copied per task, 30 more hosts should add more bytes at {} hosts than at {}: {copied_first} then {copied_then}",
        hosts[1],
        hosts[0]
    );
    assert!(
        held_then as f64 <= held_first as f64 * 1.02,
        "plan texts grew faster than the hosts: 30 more hosts added {held_first} bytes at {} hosts, {held_then} at {} \
         (a text every host renders the same must be one shared allocation, not a copy per host)",
        hosts[0],
        hosts[1]
    );
}

/// host-gw's routes file lists every node's pod subnet: rendered per node with the node itself
/// left out, 1000 nodes would hold 1000 different texts of 1000 lines (hosts × nodes bytes).
/// It is one text for the whole cluster (the applier on each node skips its own subnet), so
/// the plan of step 06 holds it once, whatever the node count.
#[test]
fn host_gw_routes_are_one_text_for_every_node() {
    let home = tempfile::tempdir().unwrap();
    let catalog = Catalog::load(&Library::embedded()).unwrap();
    let mut held = Vec::new();
    for workers in [10, 40] {
        let dir = home.path().join(format!("hg{workers}"));
        let base = cluster(home.path(), workers);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["hosts", "config.yml"] {
            std::fs::copy(base.dir.join(f), dir.join(f)).unwrap();
        }
        let inv = Inventory::from_dir(&dir, "hg", &[("CLUSTER_NETWORK".into(), "host-gw".into())]).unwrap();
        let nodes: std::collections::BTreeMap<String, std::collections::BTreeMap<&str, String>> = inv
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = inv.var_str(h, "K8S_NODENAME").unwrap_or_else(|| h.clone());
                (name, [("pod_cidr", format!("172.20.{i}.0/24")), ("address", h.clone())].into_iter().collect())
            })
            .collect();
        let planner = Planner { catalog: &catalog, vars: &inv, files: &ezk::session::CheckFiles, nodes: Some(minijinja::Value::from_serialize(&nodes)) };
        let plan = planner.plan_step("06").unwrap();
        let mut texts: HashSet<*const u8> = HashSet::new();
        let mut hosts = 0;
        let mut bytes = 0;
        for h in plan.waves.iter().flat_map(|w| &w.hosts) {
            for t in &h.tasks {
                if let Action::File(f) = &t.action
                    && f.path.ends_with("/host-gw.routes")
                    && let Content::Inline(b) = &f.content
                {
                    hosts += 1;
                    bytes = b.len();
                    assert_eq!(String::from_utf8_lossy(b).lines().filter(|l| !l.starts_with('#') && l.contains(" via ")).count(), nodes.len(), "every node's subnet is listed");
                    texts.insert(b.as_ptr());
                }
            }
        }
        assert!(hosts >= workers, "{hosts} hosts got the routes file");
        assert_eq!(texts.len(), 1, "{hosts} hosts' routes files are {} allocations, not one", texts.len());
        held.push(bytes);
    }
    assert!(held[1] > held[0]);
}
