//! Step 06's image-based network plugins, rendered for the 5-host lab inventory with every
//! Kubernetes version set of the manifest (the lab's 1.20 and upstream 1.34-1.36): the manifest
//! is written on the first master only; every container image comes from the plugin's image
//! prefix variable (upstream's registry by default, a mirror when set) with the version pinned
//! in `inventory-examples/config.yml`; every object's apiVersion is one that Kubernetes version
//! serves; and network-apply runs after the plugin's role on the first master. The lab suite
//! (`tests/lab/kube_network.rs`) sends the same manifests to a real v1.20.2 API server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use ezk::artifacts::Manifest;
use ezk::home::Home;
use ezk::plan::action::{Action, Content, StepPlan};
use ezk::session::Session;

use common::files::FilesDouble;

/// A plugin with a role: its name, its image prefix variable and upstream default, and each
/// image it runs (name under the prefix, the config.yml variable holding its tag).
struct Plugin {
    net: &'static str,
    prefix_var: &'static str,
    upstream: &'static str,
    images: &'static [(&'static str, &'static str)],
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        net: "flannel",
        prefix_var: "FLANNEL_IMAGE_PREFIX",
        upstream: "docker.io/flannel",
        images: &[("flannel", "flannel_ver"), ("flannel-cni-plugin", "flannel_cni_plugin_ver")],
    },
    Plugin {
        net: "calico",
        prefix_var: "CALICO_IMAGE_PREFIX",
        upstream: "docker.io/calico",
        images: &[("node", "calico_ver"), ("cni", "calico_ver"), ("kube-controllers", "calico_ver")],
    },
    Plugin {
        net: "kube-router",
        prefix_var: "KUBE_ROUTER_IMAGE_PREFIX",
        upstream: "docker.io/cloudnativelabs",
        images: &[("kube-router", "kube_router_ver")],
    },
    Plugin {
        net: "cilium",
        prefix_var: "CILIUM_IMAGE_PREFIX",
        upstream: "quay.io/cilium",
        images: &[("cilium", "cilium_ver"), ("operator-generic", "cilium_ver")],
    },
    Plugin {
        net: "kube-ovn",
        prefix_var: "KUBE_OVN_IMAGE_PREFIX",
        upstream: "docker.io/kubeovn",
        images: &[("kube-ovn", "kube_ovn_ver")],
    },
];

const FIRST_MASTER: &str = "198.18.9.11";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example config.yml, as a map of its top-level values.
fn config() -> BTreeMap<String, serde_yaml::Value> {
    let text = std::fs::read_to_string(repo().join("inventory-examples/config.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// The version config.yml pins in `var`.
fn tag(var: &str) -> String {
    config()
        .get(var)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("inventory-examples/config.yml sets no {var}"))
        .to_string()
}

/// The lab inventory with the example config.yml, `extra` as `-e`.
fn session(extra: &[(&str, &str)]) -> (tempfile::TempDir, Session) {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("clusters/k");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::copy(repo().join("tests/fixtures/lab-inventory/5-hosts/hosts"), c.join("hosts")).unwrap();
    std::fs::copy(repo().join("inventory-examples/config.yml"), c.join("config.yml")).unwrap();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let s = Session::open(&Home::at(dir.path()), "k", &extra).unwrap_or_else(|e| panic!("{e}"));
    (dir, s)
}

fn plan_06(extra: &[(&str, &str)]) -> Vec<StepPlan> {
    let (_dir, s) = session(extra);
    s.plan("06", &FilesDouble).unwrap_or_else(|e| panic!("{extra:?}: {e}"))
}

/// Every file a plan writes: (host, path, bytes).
fn files(plans: &[StepPlan]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in plans {
        for w in &p.waves {
            for hr in &w.hosts {
                for t in &hr.tasks {
                    if let Action::File(f) = &t.action
                        && let Content::Inline(b) = &f.content
                    {
                        out.push((hr.host.clone(), f.path.clone(), String::from_utf8_lossy(b).into_owned()));
                    }
                }
            }
        }
    }
    out
}

/// The plugin's manifest: written once, on the first master, at /etc/kubernetes/ezk/<net>.yaml.
fn manifest(plans: &[StepPlan], net: &str) -> Vec<serde_yaml::Value> {
    let path = format!("/etc/kubernetes/ezk/{net}.yaml");
    let written: Vec<_> = files(plans).into_iter().filter(|(_, p, _)| *p == path).collect();
    assert_eq!(written.len(), 1, "{net}: {path} written {} times", written.len());
    assert_eq!(written[0].0, FIRST_MASTER, "{net}: manifest on {}", written[0].0);
    serde_yaml::Deserializer::from_str(&written[0].2)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{net}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

/// Every container and init container image of the manifest's workloads.
fn images(docs: &[serde_yaml::Value]) -> Vec<String> {
    let mut out = Vec::new();
    for d in docs {
        let spec = &d["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            if let Some(cs) = spec[list].as_sequence() {
                out.extend(cs.iter().map(|c| c["image"].as_str().expect("image is a string").to_string()));
            }
        }
    }
    out
}

#[test]
fn images_come_from_the_prefix_variable_with_the_pinned_versions() {
    for p in PLUGINS {
        let want = |prefix: &str| -> Vec<String> {
            // cilium_ver is written without the "v" of cilium's tags (kubeasz's form).
            let version = |var: &str| if var == "cilium_ver" { format!("v{}", tag(var)) } else { tag(var) };
            let mut v: Vec<String> = p.images.iter().map(|(name, var)| format!("{prefix}/{name}:{}", version(var))).collect();
            v.sort();
            v
        };
        let got = |extra: &[(&str, &str)]| -> Vec<String> {
            let mut v = images(&manifest(&plan_06(extra), p.net));
            v.sort();
            v.dedup();
            v
        };
        // Upstream's registry by default.
        assert_eq!(got(&[("CLUSTER_NETWORK", p.net)]), want(p.upstream), "{}", p.net);
        // A mirror or local registry when the prefix is set.
        let mirror = format!("registry.example.test:5000/mirror/{}", p.net);
        assert_eq!(got(&[("CLUSTER_NETWORK", p.net), (p.prefix_var, &mirror)]), want(&mirror), "{}", p.net);
    }
}

/// The apiVersions a Kubernetes minor serves, for the kinds the manifests use.
fn served(minor: u32, api: &str) -> bool {
    match api {
        "v1" | "apps/v1" | "rbac.authorization.k8s.io/v1" | "apiextensions.k8s.io/v1" => true,
        "policy/v1" | "batch/v1" => minor >= 21,
        "policy/v1beta1" | "batch/v1beta1" => minor <= 24,
        "discovery.k8s.io/v1" => minor >= 21,
        _ => false,
    }
}

#[test]
fn every_object_is_served_by_each_pinned_kubernetes_version() {
    let m = Manifest::shipped().unwrap();
    let mut checked = 0;
    for (set, s) in &m.sets {
        let Some(api) = s.artifact_for("kube-apiserver") else { continue };
        let minor: u32 = api.version.split('.').nth(1).unwrap().parse().unwrap();
        for p in PLUGINS {
            for d in manifest(&plan_06(&[("CLUSTER_NETWORK", p.net), ("K8S_VER", set)]), p.net) {
                let (v, kind) = (d["apiVersion"].as_str().unwrap(), d["kind"].as_str().unwrap());
                assert!(served(minor, v), "{}: {kind} {v} is not served by Kubernetes 1.{minor} ({set})", p.net);
                assert!(d["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{}: {kind} without a name", p.net);
                // A field 1.20 refuses: a DaemonSet's surge (on by default from 1.22).
                if kind == "DaemonSet" && minor < 22 {
                    assert!(d["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"].is_null(), "{}: DaemonSet maxSurge on 1.{minor}", p.net);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

/// On the first master, network-apply (kubectl diff guard, then apply) comes after the role that
/// writes the manifest, and after kubectl-admin (the diagnosis script its wait runs).
#[test]
fn network_apply_runs_after_the_plugins_role_on_the_first_master() {
    for p in PLUGINS {
        let plans = plan_06(&[("CLUSTER_NETWORK", p.net)]);
        let order: Vec<&str> = plans[0]
            .waves
            .iter()
            .flat_map(|w| &w.hosts)
            .filter(|hr| hr.host == FIRST_MASTER)
            .map(|hr| hr.role.as_str())
            .collect();
        assert_eq!(order, [p.net, "kubectl-admin", "network-apply"], "{}", p.net);
        // The other hosts get the plugin's role only.
        for w in &plans[0].waves {
            for hr in w.hosts.iter().filter(|hr| hr.host != FIRST_MASTER) {
                assert_eq!(hr.role, p.net);
            }
        }
    }
    // host-gw has no manifest: no network-apply.
    let plans = plan_06(&[]);
    assert!(plans[0].waves.iter().flat_map(|w| &w.hosts).all(|hr| hr.role == "host-gw"));
}
