//! Hand-built PKI inputs: what `pki::from_inventory` would derive from an inventory, written
//! out for tests that issue certificates directly. Lab-style addresses (198.18.0.0/15);
//! nothing is sent to them.

use ezk::pki::{Member, PkiSpec};

/// A spec with these members, each `(address, name)`; the rest as kubeasz's example
/// config.yml sets it (service CIDR 10.68.0.0/16, ports 6443/8443, the default expiries).
pub fn spec(
    cluster: &str,
    context: &str,
    etcd: &[(&str, &str)],
    masters: &[(&str, &str)],
    nodes: &[(&str, &str)],
) -> PkiSpec {
    let m = |list: &[(&str, &str)]| -> Vec<Member> {
        list.iter().map(|(h, n)| Member::new(h, n, h).unwrap()).collect()
    };
    PkiSpec {
        cluster_name: cluster.into(),
        context_name: context.into(),
        etcd: m(etcd),
        masters: m(masters),
        nodes: m(nodes),
        vips: vec![],
        master_cert_hosts: vec![],
        service_cidr: "10.68.0.0/16".into(),
        cluster_dns_domain: "cluster.local".into(),
        secure_port: 6443,
        ex_apiserver_port: 8443,
        node_lb_port: 6443,
        ca_expiry: "876000h".into(),
        cert_expiry: "438000h".into(),
        registry: None,
    }
}

/// 3 masters (also etcd, named kubeasz's `etcd-<ip>`), 2 workers, a VIP and two extra
/// apiserver names: the spec most PKI tests use.
pub fn three_masters() -> PkiSpec {
    let masters = [("198.18.9.11", "master-1"), ("198.18.9.12", "master-2"), ("198.18.9.13", "master-3")];
    let workers = [("198.18.9.21", "worker-1"), ("198.18.9.22", "worker-2")];
    let nodes: Vec<(&str, &str)> = masters.iter().chain(&workers).copied().collect();
    let mut s = spec(
        "cluster1",
        "context-cluster1",
        &[("198.18.9.11", "etcd-198.18.9.11"), ("198.18.9.12", "etcd-198.18.9.12"), ("198.18.9.13", "etcd-198.18.9.13")],
        &masters,
        &nodes,
    );
    s.vips = vec!["198.18.9.250".parse().unwrap()];
    s.master_cert_hosts = vec!["198.18.9.200".into(), "k8s.example.test".into()];
    s
}
