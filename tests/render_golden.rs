//! Every step of the shipped roles rendered for a real 3-host inventory (`hosts` + the example
//! `config.yml`, read by `Inventory` itself, not a double) must stay byte-identical to
//! `tests/fixtures/render-golden/3-hosts/expected/`: what each host would receive and each
//! host's PLAN.txt, per step. The expected tree was written before variables were resolved once
//! per run (issue 16), so a speed-up cannot hide a change in what hosts get.
//! `EZK_UPDATE_FIXTURES=1` rewrites `expected/` (review the diff!).

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::files::FilesDouble;
use ezk::inventory::Inventory;
use ezk::plan::{Body, Catalog, Library, Planner, check_catalog, write_render};
use minijinja::Value;

fn case() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render-golden/3-hosts")
}

/// What step 06 reads from the API once the nodes registered: every node with a pod subnet.
fn node_facts() -> Value {
    let mut m = BTreeMap::new();
    for (name, cidr, addr) in [
        ("gold-1", "198.19.128.0/24", "198.18.7.11"),
        ("gold-2", "198.19.129.0/24", "198.18.7.12"),
        ("k8s-198-18-7-13", "198.19.130.0/24", "198.18.7.13"),
    ] {
        let mut n = BTreeMap::new();
        n.insert("pod_cidr", Value::from(cidr));
        n.insert("address", Value::from(addr));
        m.insert(name.to_string(), Value::from(n));
    }
    Value::from(m)
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = p.symlink_metadata().unwrap();
            if meta.is_dir() {
                walk(root, &p, out);
            } else if meta.file_type().is_symlink() {
                out.insert(rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

#[test]
fn every_step_renders_byte_identical_for_3_hosts() {
    let dir = case();
    let inv = Inventory::from_dir(&dir, "gold", &[]).unwrap();
    let catalog = Catalog::load(&Library::embedded()).unwrap();
    assert!(check_catalog(&catalog, &inv, &ezk::session::CheckFiles).is_empty(), "ezk check of the case fails");
    let out = tempfile::tempdir().unwrap();
    let mut steps = 0;
    // Every step as `ezk setup`/`destroy`/`restore` plans it, 06 with the nodes' facts (as
    // re-planned right before it runs) and without (its first planning, before 05 registered them).
    for (facts, label) in [(Some(node_facts()), ""), (None, "-no-facts")] {
        let planner = Planner { catalog: &catalog, vars: &inv, files: &FilesDouble, nodes: facts.clone() };
        for book in catalog.playbooks.iter().filter(|b| matches!(b.body, Body::Plays(_))) {
            if facts.is_none() && book.step != "06" {
                continue;
            }
            let plan = planner.plan_step(&book.step).unwrap_or_else(|e| panic!("step {}: {e}", book.step));
            let to = out.path().join(format!("{}{label}", book.step));
            // PLAN.txt names role files as `roles/<role>/…` (embedded): no checkout path in it.
            write_render(&[plan], &to).unwrap();
            steps += 1;
        }
    }
    assert!(steps >= 9, "steps rendered: {steps}");
    let expected = dir.join("expected");
    if std::env::var_os("EZK_UPDATE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(&expected);
        let status = std::process::Command::new("cp").arg("-a").arg(out.path()).arg(&expected).status().unwrap();
        assert!(status.success());
        for step in std::fs::read_dir(&expected).unwrap() {
            let _ = std::fs::remove_file(step.unwrap().path().join(".ezk-render"));
        }
    }
    let (got, want) = (read_tree(out.path()), read_tree(&expected));
    assert!(!want.is_empty(), "no expected tree: run with EZK_UPDATE_FIXTURES=1 once");
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| {
            let show = |v: Option<&Vec<u8>>| v.map(|b| String::from_utf8_lossy(b).into_owned());
            format!("{k}:\n  got:  {:?}\n  want: {:?}", show(got.get(k)), show(want.get(k)))
        })
        .collect();
    assert!(diff.is_empty(), "rendered output differs from expected/:\n{}", diff.join("\n"));
}
