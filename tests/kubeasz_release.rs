//! A kubeasz 3.6 cluster as its users have it (`tests/fixtures/inventory/kubeasz-3.6-k8s-1.31.2/`:
//! kubeasz's own config.yml keys, `K8S_VER: "1.31.2"` as `ezctl new` writes it) is a cluster ezk
//! takes unchanged: `ezk check` passes with no warning (also with `v1.31.2`), and every step ezk
//! offers renders for every host, with the choices of a 1.31 release, before anything is
//! downloaded: `ezk render` on a fresh home names each binary it will install instead of
//! failing on the empty store.

mod common;

use std::path::{Path, PathBuf};

use ezk::home::Home;
use ezk::plan::{Catalog, Library};

use common::ezk::{Run, ezk};

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

/// `home()` with the hosts moved to loopback: for commands that would connect, so that a
/// regression could not send traffic anywhere else.
fn home_on_loopback() -> tempfile::TempDir {
    let dir = home();
    let hosts = dir.path().join("clusters").join(CASE).join("hosts");
    std::fs::write(&hosts, std::fs::read_to_string(&hosts).unwrap().replace("198.51.100.", "127.0.0.")).unwrap();
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

/// Every file of every step, per host: `(<step>/<host>/<path>, bytes)` as `ezk render` writes
/// them (`extra`: `-e` values); the steps rendered; what each render said on stdout.
fn render_all(home: &Path, extra: &[&str]) -> (Vec<String>, Vec<(PathBuf, Vec<u8>)>, String) {
    let lib = Library::with_overrides(Home::at(home).root()).unwrap();
    let steps: Vec<String> = Catalog::load(&lib).unwrap().steps().iter().map(|s| s.to_string()).collect();
    let out = tempfile::tempdir().unwrap();
    let (mut rendered, mut said) = (Vec::new(), String::new());
    for step in &steps {
        // `all` imports the others; restore and clean are operations of their own.
        if ["90", "95", "99"].iter().any(|n| step.starts_with(n)) {
            continue;
        }
        let dir = out.path().join(step);
        let mut args = vec!["render", CASE, step, "--out", dir.to_str().unwrap()];
        for e in extra {
            args.extend(["-e", e]);
        }
        let Run { code, stdout, stderr } = ezk(home, &args);
        assert_eq!(code, 0, "step {step}: {stdout}{stderr}");
        said.push_str(&stdout);
        rendered.push(step.clone());
    }
    let mut files = Vec::new();
    walk(out.path(), out.path(), &mut files);
    files.sort();
    (rendered, files, said)
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
    assert!(!dir.path().join("down").exists(), "a fresh home: nothing downloaded");
    let (steps, files, said) = render_all(dir.path(), &[]);
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
    assert!(kubelet_config.contains("containerRuntimeEndpoint: \"unix://") && kubelet_config.contains("seccompDefault: true"), "{kubelet_config}");
    let sched = file(&files, &step("04"), master, "kube-scheduler-config.yaml");
    assert!(sched.contains("apiVersion: kubescheduler.config.k8s.io/v1\n"), "{sched}");
    // Each binary is named with its 1.31.2 set's version, not written; the render says which.
    let plan = file(&files, &step("04"), master, "PLAN.txt");
    let line = "file /opt/kube/bin/kube-apiserver 0755 root:root - will install kube-apiserver 1.31.2 (not downloaded yet)";
    assert!(plan.contains(line), "{plan}");
    let runtime = file(&files, &step("03"), "198.51.100.4", "PLAN.txt");
    for b in ["containerd 1.7.27", "runc 1.2.6", "crictl 1.31.1"] {
        assert!(runtime.contains(&format!("will install {b} (not downloaded yet)")), "{b}: {runtime}");
    }
    assert!(!files.iter().any(|(p, _)| p.ends_with("bin/kube-apiserver")), "a binary file was rendered");
    let note = said.lines().find(|l| l.contains("kube-apiserver 1.31.2")).unwrap_or_else(|| panic!("{said}"));
    assert!(note.starts_with("not downloaded yet (named in PLAN.txt, needed by `ezk setup`): "), "{said}");

    // `v1.31.2` is the same release: the same files, byte for byte.
    let (_, with_v, _) = render_all(dir.path(), &["K8S_VER=v1.31.2"]);
    assert_eq!(with_v.len(), files.len());
    for ((p, a), (q, b)) in files.iter().zip(&with_v) {
        assert_eq!(p, q);
        assert!(a == b, "{} differs with K8S_VER v1.31.2", p.display());
    }
}

#[test]
fn only_a_run_needs_the_binaries_and_it_names_how_to_fetch_them() {
    // `ezk setup` (not `--plan`) stops once planned, before any connection.
    let dir = home_on_loopback();
    let Run { code, stdout, stderr } = ezk(dir.path(), &["setup", CASE, "04"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("not downloaded yet, so nothing was run"), "{stderr}");
    for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        assert!(stderr.contains(&format!("  {b} 1.31.2: ezk download --k8s-ver 1.31.2 --only {b}\n")), "{b}: {stderr}");
    }
    assert!(!dir.path().join("clusters").join(CASE).join("logs").exists(), "a run was started");
}

#[test]
fn an_unpinned_release_renders_and_its_run_names_the_checksum_file() {
    // 1.35.8 exists but has no published digests: it renders like any release, and `setup`
    // says that its download needs the release's own checksum file.
    let dir = home_on_loopback();
    let out = dir.path().join("out");
    let Run { code, stdout, stderr } = ezk(dir.path(), &["render", CASE, "04", "--out", out.to_str().unwrap(), "-e", "K8S_VER=1.35.8"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let plan = std::fs::read_to_string(out.join("127.0.0.1/PLAN.txt")).unwrap();
    assert!(plan.contains("will install kube-apiserver 1.35.8 (not downloaded yet)"), "{plan}");
    let Run { code, stderr, .. } = ezk(dir.path(), &["setup", CASE, "02", "-e", "K8S_VER=1.35.8"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("  etcdctl 3.6.14: ezk download --k8s-ver 1.35.8 --sha256sums https://dl.k8s.io/release/v1.35.8/SHA256SUMS"),
        "{stderr}"
    );
}
