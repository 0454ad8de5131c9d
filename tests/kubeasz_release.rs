//! A kubeasz 3.6 cluster as its users have it (`tests/fixtures/inventory/kubeasz-3.6-k8s-1.31.2/`:
//! kubeasz's own config.yml keys, `K8S_VER: "1.31.2"` as `ezctl new` writes it) is a cluster ezk
//! takes unchanged: `ezk check` passes with no warning (also with `v1.31.2`), and every step ezk
//! offers renders for every host, with the choices of a 1.31 release. (`ezk check` on the case
//! itself runs with the other inventory fixtures; here the render, which needs the artifact
//! store, goes through `ops::render::render_with` with the deploy-files test double.)

mod common;

use std::path::{Path, PathBuf};

use ezk::home::Home;
use ezk::plan::{Catalog, Library};
use ezk::session::Session;

use common::ezk::{Run, ezk};
use common::files::FilesDouble;

const CASE: &str = "kubeasz-3.6-k8s-1.31.2";

/// A home holding the fixture cluster.
fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory").join(CASE);
    let dest = dir.path().join("clusters").join(CASE);
    std::fs::create_dir_all(&dest).unwrap();
    for f in ["hosts", "config.yml"] {
        std::fs::copy(src.join(f), dest.join(f)).unwrap();
    }
    dir
}

#[test]
fn k8s_ver_with_or_without_v_passes_check() {
    let dir = home();
    for extra in [None, Some("K8S_VER=v1.31.2")] {
        let mut args = vec!["check", CASE];
        if let Some(e) = extra {
            args.extend(["-e", e]);
        }
        let Run { code, stdout, stderr } = ezk(dir.path(), &args);
        assert_eq!(code, 0, "{extra:?}: {stdout}{stderr}");
        assert!(!stderr.contains("warning"), "{extra:?}: {stderr}");
        assert!(stdout.contains("passes all checks (7 hosts)\n"), "{stdout}");
    }
}

/// Every file of every step, per host: `(host, path) -> bytes`, as `ezk render` writes them.
fn render_all(home: &Path, extra: &[(String, String)]) -> (Vec<String>, Vec<(PathBuf, Vec<u8>)>) {
    let home = Home::at(home);
    let session = Session::open(&home, CASE, extra).unwrap_or_else(|e| panic!("{e}"));
    let lib = Library::with_overrides(home.root()).unwrap();
    let steps: Vec<String> = Catalog::load(&lib).unwrap().steps().iter().map(|s| s.to_string()).collect();
    let out = tempfile::tempdir().unwrap();
    let mut rendered = Vec::new();
    for step in &steps {
        // `all` imports the others; restore and clean are operations of their own.
        if ["90", "95", "99"].iter().any(|n| step.starts_with(n)) {
            continue;
        }
        let dir = out.path().join(step);
        let code = ezk::ops::render::render_with(&home, step, &dir, &session.inventory, &FilesDouble)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert_eq!(code, 0, "step {step}");
        rendered.push(step.clone());
    }
    let mut files = Vec::new();
    walk(out.path(), out.path(), &mut files);
    files.sort();
    (rendered, files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let (p, kind) = (e.path(), e.file_type().unwrap());
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if kind.is_dir() {
            walk(root, &p, out);
        } else if kind.is_symlink() {
            out.push((rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()));
        } else {
            out.push((rel, std::fs::read(&p).unwrap()));
        }
    }
}

fn file<'a>(files: &'a [(PathBuf, Vec<u8>)], step: &str, host: &str, suffix: &str) -> &'a str {
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| p.starts_with(Path::new(step).join(host)) && p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("{step} {host}: no file ending in {suffix}"));
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn every_step_renders_for_a_kubeasz_1_31_cluster() {
    let dir = home();
    let (steps, files) = render_all(dir.path(), &[]);
    for want in ["01", "02", "03", "04", "05", "06", "10"] {
        assert!(steps.iter().any(|s| s.starts_with(want)), "step {want} not offered: {steps:?}");
    }
    // Hosts got plans in every step that has work for this cluster (06 has none for calico,
    // whose role ezk does not have yet: it renders, empty).
    for step in steps.iter().filter(|s| !s.starts_with("06")) {
        let plans = files.iter().filter(|(p, _)| p.starts_with(step) && p.ends_with("PLAN.txt")).count();
        assert!(plans > 0, "step {step}: no PLAN.txt");
    }
    let master = "198.51.100.1";
    let step = |n: &str| steps.iter().find(|s| s.starts_with(n)).unwrap().clone();
    // The 1.31 choices of src/plan/kube.rs: the runtime endpoint in kubelet's config file,
    // seccomp by default, no flag 1.31 lacks or no longer needs.
    let kubelet_unit = file(&files, &step("05"), "198.51.100.4", "kubelet.service");
    assert!(!kubelet_unit.contains("--container-runtime=") && !kubelet_unit.contains("--pod-infra-container-image"), "{kubelet_unit}");
    let kubelet_config = file(&files, &step("05"), "198.51.100.4", "lib/kubelet/config.yaml");
    assert!(kubelet_config.contains("containerRuntimeEndpoint: unix://") && kubelet_config.contains("seccompDefault: true"), "{kubelet_config}");
    let sched = file(&files, &step("04"), master, "kube-scheduler-config.yaml");
    assert!(sched.contains("apiVersion: kubescheduler.config.k8s.io/v1\n"), "{sched}");
    let plan = file(&files, &step("04"), master, "PLAN.txt");
    assert!(plan.contains("kube-apiserver"), "{plan}");

    // `v1.31.2` is the same release: the same files, byte for byte.
    let (_, with_v) = render_all(dir.path(), &[("K8S_VER".into(), "v1.31.2".into())]);
    assert_eq!(with_v.len(), files.len());
    for ((p, a), (q, b)) in files.iter().zip(&with_v) {
        assert_eq!(p, q);
        assert!(a == b, "{} differs with K8S_VER v1.31.2", p.display());
    }
}
