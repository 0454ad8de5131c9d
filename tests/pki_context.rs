//! The PKI reads the inventory as the roles do (issue 16): the same per-host variables with the
//! roles' defaults below them, so a certificate and the files that use it cannot disagree.
//! The case that used to split: a config.yml without `K8S_NODENAME` and a host without
//! `k8s_nodename`. The prepare role names the node `k8s-<address>` (its default); the PKI
//! used to fall back to the bare address for the kubelet's certificate, and `hostvars` (without
//! role defaults) had no name at all for /etc/hosts.

use ezk::inventory::Inventory;
use ezk::plan::action::Action;
use ezk::plan::{Catalog, Library, Planner};

#[path = "common/mod.rs"]
mod common;

const HOSTS: &str = "\
[etcd]
198.51.100.11
[kube_master]
198.51.100.11 k8s_nodename='master-1'
[kube_node]
198.51.100.12
[all:vars]
CONTAINER_RUNTIME=containerd
CLUSTER_NETWORK=host-gw
SERVICE_CIDR=10.68.0.0/16
CLUSTER_CIDR=172.20.0.0/16
bin_dir=/opt/kube/bin
";

#[test]
fn node_names_come_from_the_same_variables_as_the_prepare_role() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("c1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), HOSTS).unwrap();
    let inv = Inventory::from_dir(&dir, "c1", &[]).unwrap();
    let catalog = Catalog::load(&Library::embedded()).unwrap();
    let spec = ezk::pki::from_inventory(&inv, catalog.run_defaults()).unwrap();
    let named = |h: &str| spec.nodes.iter().find(|m| m.host == h).map(|m| m.name.clone()).unwrap();
    assert_eq!(named("198.51.100.11"), "master-1");
    assert_eq!(named("198.51.100.12"), "k8s-198-51-100-12", "the prepare role's default, not the bare address");
    // The name prepare gives the host is the name in its certificate.
    let planner = Planner { catalog: &catalog, vars: &inv, files: &common::files::FilesDouble, nodes: None };
    let plan = planner.plan_step("01").unwrap();
    // The commands step 01 runs on `host`.
    let commands = |host: &str| -> Vec<String> {
        let tasks = plan.waves.iter().flat_map(|w| &w.hosts).filter(|hr| hr.host == host).flat_map(|hr| &hr.tasks);
        tasks.filter_map(|t| match &t.action {
            Action::Command { cmd, .. } => Some(cmd.to_string()),
            _ => None,
        })
        .collect()
    };
    let hostname = commands("198.51.100.12")
        .into_iter()
        .find(|c| c.starts_with("hostnamectl set-hostname "))
        .expect("prepare sets the hostname");
    assert!(hostname.starts_with("hostnamectl set-hostname k8s-198-51-100-12 "), "{hostname}");
    // Every node finds it under that name in /etc/hosts (`hostvars` is the same context): the
    // planned command run for real by sh, on a copy of /etc/hosts, adds the missing names once.
    let (cmd, unless) = plan
        .waves
        .iter()
        .flat_map(|w| &w.hosts)
        .filter(|hr| hr.host == "198.51.100.11")
        .flat_map(|hr| &hr.tasks)
        .find(|t| t.name == "node names in /etc/hosts")
        .and_then(|t| match &t.action {
            Action::Command { cmd, unless, .. } => Some((cmd.to_string(), unless.as_deref().expect("an unless").to_string())),
            _ => None,
        })
        .expect("prepare writes the node names");
    let etc_hosts = home.path().join("etc-hosts");
    std::fs::write(&etc_hosts, "127.0.0.1\tlocalhost\n198.51.100.11 master-1\n").unwrap();
    let on_copy = |c: &str| c.replace("/etc/hosts", etc_hosts.to_str().unwrap());
    let sh = |c: &str| std::process::Command::new("sh").arg("-c").arg(on_copy(c)).status().unwrap().success();
    assert!(!sh(&unless), "a name is missing: the task must run");
    assert!(sh(&cmd));
    assert!(sh(&cmd), "a second run");
    assert!(sh(&unless), "every name there: the task is skipped");
    assert_eq!(
        std::fs::read_to_string(&etc_hosts).unwrap(),
        "127.0.0.1\tlocalhost\n198.51.100.11 master-1\n198.51.100.12    k8s-198-51-100-12  # ezk\n",
        "only the missing name added, once"
    );
    // Values the roles default are the roles' (kube-master's SERVICE_CIDR, CLUSTER_DNS_DOMAIN).
    assert_eq!(spec.cluster_dns_domain, "cluster.local");
    assert_eq!(spec.secure_port, 6443);
}
