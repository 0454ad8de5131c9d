//! Data-driven tests of the plan engine: each `tests/fixtures/plan/<case>/` holds roles,
//! playbooks and a `case.yml` (groups, vars, step) and either `expected/` (the tree `ezk render`
//! writes: files per host and PLAN.txt) or `expected_error.txt` (lines the error must contain;
//! `$CASE` stands for the case folder). Adding a case adds no code.
//! `EZK_UPDATE_FIXTURES=1` rewrites `expected/` from the actual output (review the diff!).

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ezk::inventory::Vars;
use ezk::plan::action::{Action, StepPlan};
use ezk::plan::{
    Catalog, Library, PlanError, Planner, Variables, check_all, write_render,
};
use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Deserialize, Clone)]
struct Case {
    step: Option<String>,
    #[serde(default)]
    check: bool,
    groups: IndexMap<String, Vec<String>>,
    #[serde(default)]
    all_vars: Vars,
    #[serde(default)]
    host_vars: IndexMap<String, Vars>,
}

/// Test double of the inventory: role defaults < all_vars < host_vars, no templated values.
struct InventoryDouble {
    groups: IndexMap<String, Vec<String>>,
    case: Case,
}

impl InventoryDouble {
    fn new(case: Case) -> InventoryDouble {
        let mut groups = case.groups.clone();
        let mut all: Vec<String> = Vec::new();
        for h in groups.values().flatten() {
            if !all.contains(h) {
                all.push(h.clone());
            }
        }
        groups.insert("all".into(), all);
        InventoryDouble { groups, case }
    }

    fn plain(&self, host: &str) -> Vars {
        let mut v = self.case.all_vars.clone();
        if let Some(h) = self.case.host_vars.get(host) {
            v.extend(h.clone());
        }
        v
    }
}

impl Variables for InventoryDouble {
    fn groups(&self) -> &IndexMap<String, Vec<String>> {
        &self.groups
    }
    fn vars_for(&self, host: &str, defaults: &Vars) -> Result<Vars, String> {
        let mut v = defaults.clone();
        v.extend(self.plain(host));
        Ok(v)
    }
    fn hostvars(&self) -> Option<Vars> {
        let hv = self.groups["all"]
            .iter()
            .map(|h| (h.clone(), serde_yaml::to_value(self.plain(h)).unwrap()));
        Some(hv.collect())
    }
}

use common::files::FilesDouble;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan")
}

fn load_case(dir: &Path) -> Case {
    serde_yaml::from_str(&std::fs::read_to_string(dir.join("case.yml")).unwrap()).unwrap()
}

fn plan(dir: &Path, case: &Case) -> Result<Vec<StepPlan>, PlanError> {
    let lib = Library::from_dir(dir)?;
    let catalog = Catalog::load(&lib)?;
    let vars = InventoryDouble::new(case.clone());
    Planner {
        nodes: None,
        catalog: &catalog,
        vars: &vars,
        files: &FilesDouble,
    }
    .plan_steps(case.step.as_deref().unwrap_or("all"))
}

#[derive(Debug, PartialEq)]
enum Node {
    File(String),
    Link(PathBuf),
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = p.symlink_metadata().unwrap();
            if rel.starts_with('.') {
                continue;
            } else if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(std::fs::read_link(&p).unwrap()));
            } else if meta.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, Node::File(std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn run_case(dir: &Path) -> Result<(), String> {
    let case = load_case(dir);
    let shown = |e: String| e.replace(&dir.display().to_string(), "$CASE");
    let expected_error = std::fs::read_to_string(dir.join("expected_error.txt")).ok();
    let outcome: Result<Vec<StepPlan>, String> = if case.check {
        let errors = check_all(
            &Library::from_dir(dir).unwrap(),
            &InventoryDouble::new(case.clone()),
            &ezk::session::CheckFiles,
        );
        if errors.is_empty() {
            Ok(Vec::new())
        } else {
            Err(shown(
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ))
        }
    } else {
        plan(dir, &case).map_err(|e| shown(e.to_string()))
    };
    match (outcome, expected_error) {
        (Err(actual), Some(want)) => {
            for line in want.lines().filter(|l| !l.trim().is_empty()) {
                if !actual.contains(line.trim()) {
                    return Err(format!("error lacks {line:?}; got:\n{actual}"));
                }
            }
            Ok(())
        }
        (Err(actual), None) => Err(format!("unexpected error:\n{actual}")),
        (Ok(_), Some(want)) => Err(format!("expected an error containing:\n{want}")),
        (Ok(plans), None) => {
            // A case that renders must also pass `ezk check`'s full render of every step.
            let problems = check_all(
                &Library::from_dir(dir).unwrap(),
                &InventoryDouble::new(case.clone()),
                &ezk::session::CheckFiles,
            );
            if !problems.is_empty() {
                return Err(format!(
                    "check_all found: {}",
                    problems
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            let out = tempfile::tempdir().unwrap();
            write_render(&plans, out.path()).map_err(|e| e.to_string())?;
            // PLAN.txt names role files by absolute path; make expected/ independent of checkout.
            for host in std::fs::read_dir(out.path()).unwrap() {
                let p = host.unwrap().path().join("PLAN.txt");
                if let Ok(text) = std::fs::read_to_string(&p) {
                    std::fs::write(&p, shown(text)).unwrap();
                }
            }
            let expected = dir.join("expected");
            if std::env::var_os("EZK_UPDATE_FIXTURES").is_some() {
                let _ = std::fs::remove_dir_all(&expected);
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg(out.path())
                    .arg(&expected)
                    .status()
                    .unwrap();
                let _ = std::fs::remove_file(expected.join(".ezk-render"));
            }
            let (got, want) = (tree(out.path()), tree(&expected));
            if got != want {
                let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
                let diff: Vec<String> = keys
                    .into_iter()
                    .filter(|k| got.get(*k) != want.get(*k))
                    .map(|k| format!("{k}:\n  got:  {:?}\n  want: {:?}", got.get(k), want.get(k)))
                    .collect();
                return Err(format!(
                    "rendered tree differs from expected/:\n{}",
                    diff.join("\n")
                ));
            }
            Ok(())
        }
    }
}

#[test]
fn every_fixture_case() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.yml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "fixture cases present");
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            run_case(d)
                .err()
                .map(|e| format!("case {}: {e}", d.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn cluster() -> (PathBuf, Case) {
    let dir = fixtures().join("cluster-3m3e2n");
    let case = load_case(&dir);
    (dir, case)
}

#[test]
fn secrets_are_written_0600_and_other_files_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, case) = cluster();
    let out = tempfile::tempdir().unwrap();
    write_render(&plan(&dir, &case).unwrap(), out.path()).unwrap();
    let mode = |p: &str| {
        std::fs::metadata(out.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("198.18.0.21/etc/etcd/ssl/etcd-key.pem"), 0o600);
    assert_eq!(mode("198.18.0.11/root/.kube/config"), 0o600);
    assert_eq!(mode("198.18.0.21/etc/systemd/system/etcd.service"), 0o644);
    // A second render into the same folder replaces it; a foreign folder is refused.
    write_render(&plan(&dir, &case).unwrap(), out.path()).unwrap();
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("keep.txt"), "mine").unwrap();
    let err = write_render(&plan(&dir, &case).unwrap(), foreign.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("was not written by `ezk render`"), "{err}");
    assert!(foreign.path().join("keep.txt").exists());
}

#[test]
fn daemon_reload_comes_right_before_the_first_service_after_a_unit_file() {
    let (dir, case) = cluster();
    let plans = plan(&dir, &case).unwrap();
    let etcd = plans.iter().find(|p| p.step == "02.etcd").unwrap();
    let host = etcd.waves[0]
        .hosts
        .iter()
        .find(|h| h.host == "198.18.0.21")
        .unwrap();
    let kinds: Vec<&str> = host
        .tasks
        .iter()
        .map(|t| match &t.action {
            Action::File(f) if f.path.starts_with("/etc/systemd/system/") => "unit",
            Action::DaemonReload => "reload",
            Action::Service { .. } => "service",
            _ => "other",
        })
        .collect();
    let unit = kinds.iter().position(|k| *k == "unit").unwrap();
    assert_eq!(&kinds[unit..unit + 3], ["unit", "reload", "service"]);
    assert_eq!(kinds.iter().filter(|k| **k == "reload").count(), 1);
    // chrony writes no unit file: no reload there.
    let prep = plans.iter().find(|p| p.step == "01.prepare").unwrap();
    assert!(
        prep.waves
            .iter()
            .flat_map(|w| &w.hosts)
            .flat_map(|h| &h.tasks)
            .all(|t| !matches!(t.action, Action::DaemonReload))
    );
}

#[test]
fn dependency_runs_first_on_the_dependents_hosts() {
    let (dir, mut case) = cluster();
    case.step = Some("kube-master".into());
    let plans = plan(&dir, &case).unwrap();
    let waves: Vec<(Vec<String>, Vec<String>)> = plans[0]
        .waves
        .iter()
        .map(|w| {
            (
                w.roles.clone(),
                w.hosts.iter().map(|h| h.host.clone()).collect(),
            )
        })
        .collect();
    let masters: Vec<String> = case.groups["kube_master"].clone();
    assert_eq!(
        waves,
        vec![
            (vec!["kube-lb".to_string()], masters.clone()),
            (vec!["kube-master".to_string()], masters)
        ]
    );
}

#[test]
fn role_when_is_evaluated_per_cluster_and_per_task_when_per_host() {
    let (dir, mut case) = cluster();
    case.step = Some("01".into());
    let roles_on = |plans: &[StepPlan]| -> Vec<String> {
        plans[0]
            .waves
            .iter()
            .flat_map(|w| w.roles.clone())
            .collect()
    };
    let hosts_of = |plans: &[StepPlan], role: &str| {
        plans[0]
            .waves
            .iter()
            .flat_map(|w| &w.hosts)
            .filter(|h| h.role == role)
            .count()
    };
    let plans = plan(&dir, &case).unwrap();
    assert_eq!(
        hosts_of(&plans, "chrony"),
        8,
        "every k8s host gets chrony when the chrony group is set"
    );
    case.groups.insert("chrony".into(), vec![]);
    let plans = plan(&dir, &case).unwrap();
    assert_eq!(hosts_of(&plans, "chrony"), 0, "{:?}", roles_on(&plans));
    // Only 198.18.0.22 sets ETCD_WAL_DIR, so only it gets the WAL directory.
    case.step = Some("etcd".into());
    let plans = plan(&dir, &case).unwrap();
    let wal = |host: &str| {
        plans[0].waves[0].hosts.iter().find(|h| h.host == host).unwrap().tasks.iter().any(|t| matches!(&t.action, Action::Directory { path, .. } if path == "/var/lib/etcd-wal"))
    };
    assert!(wal("198.18.0.22") && !wal("198.18.0.21") && !wal("198.18.0.23"));
}

#[test]
fn step_names_by_number_name_or_both_and_unknown_lists_available() {
    let (dir, _) = cluster();
    let catalog = Catalog::load(&Library::from_dir(&dir).unwrap()).unwrap();
    for q in ["02", "2", "etcd", "02.etcd", "02.etcd.yml"] {
        assert_eq!(catalog.playbook(q).unwrap().step, "02.etcd", "{q}");
    }
    let all: Vec<&str> = catalog
        .resolve_steps("all")
        .unwrap()
        .iter()
        .map(|p| p.step.as_str())
        .collect();
    assert_eq!(all, ["01.prepare", "02.etcd", "04.kube-master"]);
    let e = catalog.playbook("05").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown step `05`; available steps: 01.prepare, 02.etcd, 04.kube-master, 90.all"
    );
}

#[test]
fn render_command_glue_writes_files_per_host_from_the_home_overrides() {
    let (dir, case) = cluster();
    let out = tempfile::tempdir().unwrap();
    let home = ezk::home::Home::at(&dir);
    let code = ezk::ops::render::render_with(
        &home,
        "etcd",
        &out.path().join("r"),
        &InventoryDouble::new(case),
        &FilesDouble,
    )
    .unwrap();
    assert_eq!(code, 0);
    let unit = std::fs::read_to_string(
        out.path()
            .join("r/198.18.0.23/etc/systemd/system/etcd.service"),
    )
    .unwrap();
    assert!(unit.contains("--name=etcd-etcd3"), "{unit}");
    let plan = std::fs::read_to_string(out.path().join("r/198.18.0.23/PLAN.txt")).unwrap();
    assert!(plan.contains("service etcd started, enabled"), "{plan}");
    assert!(
        !plan.contains("KEY etcd"),
        "secret content never in PLAN.txt"
    );
    assert!(
        !out.path().join("r/198.18.0.11").exists(),
        "step etcd touches only etcd hosts"
    );
}
