//! Every flag of every Kubernetes unit ezk renders is one the pinned version accepts: the roles
//! are planned for each minor version the manifest installs (the lab's 1.20.2 and upstream
//! 1.28-1.36: the newest pinned release of each minor, and every `versions.yml` set), and each
//! `ExecStart=` flag is looked up in that version's real list: for 1.20, the built binaries'
//! own `--help` (from this machine's build cache, which `tests/deps.sh` fills); for 1.28-1.36,
//! the lists checked in under `tests/fixtures/k8s-flags/` (from each release's published
//! reference pages; provenance in SOURCES.md there). The version-dependent choices are made per
//! minor (`src/plan/kube.rs`), so one release a minor covers its patches.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ezk::artifacts::{Manifest, manifest, source_build};
use ezk::home::Home;
use ezk::plan::action::{Action, Content};
use ezk::session::Session;

use common::files::FilesDouble;

/// The steps whose units run Kubernetes components.
const STEPS: &[&str] = &["04", "05"];

/// Version sets to check: (K8S_VER, where its flag lists come from).
fn versions() -> Vec<(String, FlagSource)> {
    let m = Manifest::shipped().unwrap();
    // versions.yml's sets, and the newest pinned release of each minor of the catalog.
    let mut picked: Vec<String> = Manifest::parse(manifest::SHIPPED, manifest::SHIPPED_PATH).unwrap().sets.keys().cloned().collect();
    for line in m.by_minor() {
        if let Some(newest) = line.pinned.last()
            && !picked.contains(newest)
        {
            picked.push(newest.clone());
        }
    }
    let mut out = Vec::new();
    for name in picked {
        let set = &m.sets[&name];
        let Some(api) = set.artifact_for("kube-apiserver") else { continue };
        let minor = api.version.split('.').take(2).collect::<Vec<_>>().join(".");
        let src = if api.build.is_some() {
            FlagSource::Help(source_build::entry(&source_build::cache_root(), api).out())
        } else {
            FlagSource::Lists(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-flags").join(minor))
        };
        out.push((name, src));
    }
    out
}

enum FlagSource {
    /// A build's output dir: ask each binary for `--help`.
    Help(PathBuf),
    /// `<dir>/<component>.txt`, one flag name per line.
    Lists(PathBuf),
}

impl FlagSource {
    fn flags(&self, component: &str) -> BTreeSet<String> {
        match self {
            FlagSource::Lists(dir) => {
                let p = dir.join(format!("{component}.txt"));
                std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                    .lines()
                    .map(str::to_string)
                    .collect()
            }
            FlagSource::Help(dir) => {
                let bin = dir.join(component);
                assert!(bin.exists(), "{} is missing: build the lab's Kubernetes first (bash tests/deps.sh)", bin.display());
                let out = std::process::Command::new(&bin).arg("--help").output().unwrap();
                let help = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
                help.split_whitespace()
                    .filter_map(|w| w.strip_prefix("--"))
                    .map(|w| w.split(['=', ',']).next().unwrap_or(w))
                    .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .map(str::to_string)
                    .collect()
            }
        }
    }
}

/// A lab-like home whose cluster `k` installs `k8s_ver`.
fn home_for(k8s_ver: &str) -> (tempfile::TempDir, Session) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = dir.path().join("clusters/k");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::copy(repo.join("tests/fixtures/lab-inventory/5-hosts/hosts"), c.join("hosts")).unwrap();
    std::fs::copy(repo.join("inventory-examples/config.yml"), c.join("config.yml")).unwrap();
    let home = Home::at(dir.path());
    let extra = vec![("K8S_VER".to_string(), k8s_ver.to_string())];
    let s = Session::open(&home, "k", &extra).unwrap_or_else(|e| panic!("{e}"));
    (dir, s)
}

/// `(binary, flags)` of every rendered unit that runs a Kubernetes component, per host.
fn rendered_flags(s: &Session) -> Vec<(String, String, Vec<String>)> {
    let files = FilesDouble;
    let mut out = Vec::new();
    for step in STEPS {
        for plan in s.planner(&files).unwrap().plan_steps(step).unwrap() {
            for w in &plan.waves {
                for hr in &w.hosts {
                    for t in &hr.tasks {
                        let Action::File(f) = &t.action else { continue };
                        let Content::Inline(bytes) = &f.content else { continue };
                        if !f.path.ends_with(".service") {
                            continue;
                        }
                        let text = String::from_utf8_lossy(bytes).replace("\\\n", " ");
                        let Some(exec) = text.lines().find_map(|l| l.strip_prefix("ExecStart=")) else { continue };
                        let mut words = exec.split_whitespace();
                        let bin = words.next().unwrap().rsplit('/').next().unwrap().to_string();
                        if !bin.starts_with("kube") {
                            continue;
                        }
                        let flags = words
                            .filter_map(|w| w.strip_prefix("--"))
                            .map(|w| w.split('=').next().unwrap().to_string())
                            .collect();
                        out.push((hr.host.clone(), bin, flags));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_rendered_flag_is_accepted_by_the_pinned_version() {
    let mut problems = Vec::new();
    let mut checked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (ver, source) in versions() {
        let (_dir, s) = home_for(&ver);
        let units = rendered_flags(&s);
        assert!(!units.is_empty(), "{ver}: no Kubernetes unit rendered");
        let mut lists: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (host, bin, flags) in units {
            let known = lists.entry(bin.clone()).or_insert_with(|| source.flags(&bin));
            assert!(known.len() > 20, "{ver} {bin}: only {} flags known", known.len());
            for f in flags {
                if !known.contains(&f) {
                    problems.push(format!("{ver}: {bin} on {host}: --{f} is not a flag of this version"));
                }
            }
            checked.entry(ver.clone()).or_default().insert(bin);
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every version got its control plane checked.
    for (ver, bins) in &checked {
        for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"] {
            assert!(bins.contains(b), "{ver}: {b} not rendered ({bins:?})");
        }
    }
    // The lab's 1.20, versions.yml's three and one release of each minor 1.28 .. 1.36.
    assert!(checked.len() >= 13, "{checked:?}");
    for minor in 28..=36 {
        assert!(checked.keys().any(|v| v.starts_with(&format!("1.{minor}."))), "1.{minor} not checked: {checked:?}");
    }
}

/// The check itself: a flag a version does not have is caught (the 1.20 controller-manager has
/// --port, 1.36's does not; the 1.20 apiserver has no --authorization-config).
#[test]
fn the_lists_tell_versions_apart() {
    let vs = versions();
    let of = |prefix: &str, bin: &str| vs.iter().find(|(v, _)| v.starts_with(prefix)).map(|(_, s)| s.flags(bin)).unwrap();
    let (old, new) = (of("lab", "kube-controller-manager"), of("1.36", "kube-controller-manager"));
    assert!(old.contains("port") && !new.contains("port"));
    let (old, new) = (of("lab", "kube-apiserver"), of("1.36", "kube-apiserver"));
    assert!(new.contains("authorization-config") && !old.contains("authorization-config"));
    assert!(old.contains("encryption-provider-config") && new.contains("encryption-provider-config"));
}
