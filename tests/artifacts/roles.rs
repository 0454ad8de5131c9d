//! The shipped roles against the shipped manifest: every binary a `binary:` task installs is
//! pinned in every Kubernetes version set, and the lab sets (lab-debian, lab-debian-next) provide every binary of the
//! steps the lab runs (01 prepare, 02 etcd, 03 runtime, 10 ex-lb). A role set that is empty fails here: an
//! absent role must not make this check pass by having nothing to check.

use std::collections::{BTreeMap, BTreeSet};

use ezk::artifacts::Manifest;
use ezk::plan::{Body, Catalog, Library, Module};

/// The steps of the lab slice (issue 7), whose binaries the lab-debian set must provide.
const LAB_STEPS: &[&str] = &["01", "02", "03", "10"];

/// The sets that pin Debian packages for the lab rather than a Kubernetes release (the second
/// is the same build stamped for `ezk upgrade`'s tests).
const LAB_SETS: &[&str] = &["lab-debian", "lab-debian-next"];

/// Binaries of the lab's steps that Debian does not ship, each with the lab inventory setting
/// that turns its install off (checked against the inventory `ezk lab up` writes).
const LAB_OFF: &[(&str, &str)] = &[("crictl", "INSTALL_CRICTL=false")];

/// Binary name → the tasks (`roles/<role>/tasks.yml:<line>`) that install it, per role.
type RoleBinaries = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Every `binary:` task of every role, by role. A name must be a literal, or `{{ item }}` over
/// a literal loop list; anything else cannot be checked against the manifest and is an error.
fn role_binaries(catalog: &Catalog) -> Result<RoleBinaries, Vec<String>> {
    let mut out = RoleBinaries::new();
    let mut errors = Vec::new();
    for (role, r) in &catalog.roles {
        let mine = out.entry(role.clone()).or_default();
        for t in &r.tasks {
            let Module::Binary(b) = &t.module else {
                continue;
            };
            let names: Vec<String> = match (b.name.as_str(), &t.loop_) {
                (Some(n), _) if !n.contains("{{") => vec![n.to_string()],
                (Some(n), Some(serde_yaml::Value::Sequence(items)))
                    if n.replace(' ', "") == "{{item}}" =>
                {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(String::from))
                        .collect()
                }
                _ => {
                    errors.push(format!(
                        "{}: binary name {:?} is not a literal (or {{{{ item }}}} over a literal list); the manifest check cannot see it",
                        t.origin, b.name
                    ));
                    continue;
                }
            };
            for n in names {
                mine.entry(n).or_default().push(t.origin.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The roles a step runs, with the roles they depend on (meta.yml), transitively.
fn step_roles(catalog: &Catalog, step: &str) -> BTreeSet<String> {
    let mut todo: Vec<String> = Vec::new();
    for p in catalog.resolve_steps(step).unwrap() {
        if let Body::Plays(plays) = &p.body {
            for play in plays {
                todo.extend(play.roles.iter().map(|r| r.role.clone()));
            }
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(r) = todo.pop() {
        if seen.insert(r.clone()) {
            todo.extend(catalog.roles[&r].depends.iter().cloned());
        }
    }
    seen
}

#[test]
fn every_binary_a_shipped_role_installs_is_in_every_version_set() {
    let catalog = Catalog::load(&Library::embedded()).expect("the shipped roles load");
    assert!(
        !catalog.roles.is_empty(),
        "no roles are embedded (roles/ is empty): this check needs the shipped roles"
    );
    let by_role = role_binaries(&catalog).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let all: BTreeMap<&str, &Vec<String>> = by_role
        .values()
        .flat_map(|m| m.iter().map(|(n, o)| (n.as_str(), o)))
        .collect();
    assert!(
        !all.is_empty(),
        "no role has a `binary:` task (roles: {:?}); the roles install etcd, kubectl, ... from the store",
        catalog.roles.keys().collect::<Vec<_>>()
    );

    let manifest = Manifest::shipped().unwrap();
    let mut missing = Vec::new();
    for (set_name, set) in &manifest.sets {
        if LAB_SETS.contains(&set_name.as_str()) {
            continue;
        }
        for (bin, origins) in &all {
            if !set.provides(bin) {
                missing.push(format!(
                    "set {set_name} lacks {bin} (installed by {})",
                    origins.join(", ")
                ));
            }
        }
    }

    // The lab sets: the binaries of the lab's steps.
    let mut lab_bins = BTreeSet::new();
    for lab_set in LAB_SETS {
        let (_, lab) = manifest.set(lab_set).unwrap();
        for step in LAB_STEPS {
            for role in step_roles(&catalog, step) {
                for (bin, origins) in &by_role[&role] {
                    lab_bins.insert(bin.clone());
                    if let Some((_, setting)) = LAB_OFF.iter().find(|(b, _)| b == bin) {
                        let lab_hosts = include_str!("../fixtures/lab-inventory/5-hosts/hosts");
                        assert!(
                            lab_hosts.lines().any(|l| l == *setting),
                            "the lab inventory must set {setting}: set {lab_set} has no {bin}"
                        );
                        continue;
                    }
                    if !lab.provides(bin) {
                        missing.push(format!(
                            "set {lab_set} lacks {bin} (step {step}, installed by {})",
                            origins.join(", ")
                        ));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "src/artifacts/versions.yml:\n{}",
        missing.join("\n")
    );
    // The lab's etcd step installs etcd from the store: if this set were empty the lab check
    // above would have checked nothing.
    assert!(
        lab_bins.contains("etcd"),
        "step 02 installs no etcd binary: {lab_bins:?}"
    );
}
