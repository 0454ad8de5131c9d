//! The kubeasz inventory a lab writes: `clusters/<name>/hosts` (Ansible INI) with a layout that
//! suits the host count, and `config.yml` (the project's example, unchanged).
//!
//! Layouts: 1 host = all-in-one; 2 = one etcd/master, both nodes; 3–4 = etcd and masters on the
//! first three, every host a node; 5+ = etcd and masters on the first three, the rest workers,
//! the last two hosts also `ex_lb` (LB_ROLE master/backup) holding EX_APISERVER_VIP, and a
//! chrony server on the first host. Lab values (key, user, CIDRs that cannot leave the machine)
//! go to `[all:vars]`, which take precedence over config.yml.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// config.yml written into every lab cluster: the example shipped with ezk.
pub const CONFIG_YML: &str = include_str!("../../inventory-examples/config.yml");

/// First line of a lab-written hosts file; `up` only overwrites, and `down` only removes,
/// a hosts file that starts with it.
pub const MARKER: &str = "# written by `ezk lab up";

/// Service CIDR in lab clusters: inside 198.18.0.0/15 (never routed), disjoint from every lab
/// host subnet 198.18.N.0/24.
pub const SERVICE_CIDR: &str = "198.19.0.0/17";
/// Pod CIDR in lab clusters (same reasoning).
pub const CLUSTER_CIDR: &str = "198.19.128.0/17";
/// Port the ex_lb load balancer listens on at the VIP.
pub const EX_APISERVER_PORT: u16 = 8443;

/// What the inventory is made from.
#[derive(Debug, Clone)]
pub struct InventoryInput<'a> {
    pub name: &'a str,
    /// (host name = k8s_nodename, address), in order.
    pub hosts: &'a [(String, Ipv4Addr)],
    pub vip: Option<Ipv4Addr>,
    /// Absolute path of the lab's private key.
    pub key_file: &'a Path,
}

/// Which hosts (indices) go to which kubeasz group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub etcd: Vec<usize>,
    pub masters: Vec<usize>,
    pub nodes: Vec<usize>,
    /// (host, LB_ROLE)
    pub ex_lb: Vec<(usize, &'static str)>,
    pub chrony: Vec<usize>,
}

/// The group layout for `n` hosts.
pub fn layout(n: usize) -> Layout {
    let all: Vec<usize> = (0..n).collect();
    match n {
        0 => Layout {
            etcd: vec![],
            masters: vec![],
            nodes: vec![],
            ex_lb: vec![],
            chrony: vec![],
        },
        1 | 2 => Layout {
            etcd: vec![0],
            masters: vec![0],
            nodes: all,
            ex_lb: vec![],
            chrony: vec![],
        },
        3 | 4 => Layout {
            etcd: vec![0, 1, 2],
            masters: vec![0, 1, 2],
            nodes: all,
            ex_lb: vec![],
            chrony: vec![],
        },
        _ => Layout {
            etcd: vec![0, 1, 2],
            masters: vec![0, 1, 2],
            nodes: (3..n).collect(),
            ex_lb: vec![(n - 2, "master"), (n - 1, "backup")],
            chrony: vec![0],
        },
    }
}

/// The text of `clusters/<name>/hosts`.
pub fn hosts_file(input: &InventoryInput) -> String {
    let l = layout(input.hosts.len());
    let ip = |i: usize| input.hosts[i].1;
    let node = |i: usize| format!("{} k8s_nodename='{}'", ip(i), input.hosts[i].0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{MARKER} {}` for a local lab; `ezk lab down {}` removes it",
        input.name, input.name
    );
    s.push_str(
        "# Hosts are systemd-nspawn containers on this machine, reachable only from here.\n\n",
    );
    s.push_str("# etcd members (odd count)\n[etcd]\n");
    l.etcd.iter().for_each(|&i| {
        let _ = writeln!(s, "{}", ip(i));
    });
    s.push_str("\n# control plane; k8s_nodename = the host's name\n[kube_master]\n");
    l.masters.iter().for_each(|&i| {
        let _ = writeln!(s, "{}", node(i));
    });
    s.push_str("\n[kube_node]\n");
    l.nodes.iter().for_each(|&i| {
        let _ = writeln!(s, "{}", node(i));
    });
    s.push_str(
        "\n[harbor]\n\n# external load balancer + keepalived VIP for the apiservers\n[ex_lb]\n",
    );
    for &(i, role) in &l.ex_lb {
        let vip = input
            .vip
            .map(|v| format!(" EX_APISERVER_VIP={v} EX_APISERVER_PORT={EX_APISERVER_PORT}"))
            .unwrap_or_default();
        let _ = writeln!(s, "{} LB_ROLE={role}{vip}", ip(i));
    }
    s.push_str("\n# chrony server (the other hosts sync from it)\n[chrony]\n");
    l.chrony.iter().for_each(|&i| {
        let _ = writeln!(s, "{}", ip(i));
    });
    s.push_str("\n[all:vars]\n# --- lab connection ---\n");
    s.push_str("ansible_user=root\n");
    let _ = writeln!(
        s,
        "ansible_ssh_private_key_file={}",
        input.key_file.display()
    );
    s.push_str("\n# --- cluster ---\n");
    let _ = writeln!(s, "CLUSTER_NAME=\"{}\"", input.name);
    s.push_str("SECURE_PORT=\"6443\"\nCONTAINER_RUNTIME=\"containerd\"\n");
    s.push_str("# host-gw: Debian's CNI plugins and a route per node, no image to pull (the lab has no registry)\n");
    s.push_str("CLUSTER_NETWORK=\"host-gw\"\n");
    s.push_str("# this machine's kernel has no IPVS (CONFIG_IP_VS is not set): kube-proxy uses iptables\n");
    s.push_str("PROXY_MODE=\"iptables\"\n");
    s.push_str("# Service and pod CIDRs stay inside 198.18.0.0/15 (never routed) and off the host subnet\n");
    let _ = writeln!(
        s,
        "SERVICE_CIDR=\"{SERVICE_CIDR}\"\nCLUSTER_CIDR=\"{CLUSTER_CIDR}\""
    );
    s.push_str("NODE_PORT_RANGE=\"30000-32767\"\nCLUSTER_DNS_DOMAIN=\"cluster.local\"\n");
    s.push_str("\n# --- paths (kubeasz defaults) ---\n");
    s.push_str("bin_dir=\"/opt/kube/bin\"\nbase_dir=\"/etc/kubeasz\"\n");
    let _ = writeln!(
        s,
        "cluster_dir=\"{{{{ base_dir }}}}/clusters/{}\"",
        input.name
    );
    s.push_str("ca_dir=\"/etc/kubernetes/ssl\"\nk8s_nodename=''\n");
    s.push_str("\n# --- lab hosts are containers ---\n");
    s.push_str(
        "# no CAP_SYS_TIME: chronyd serves time without setting the clock (chrony role drop-in)\n",
    );
    s.push_str("CHRONY_SET_CLOCK=false\n");
    s.push_str(
        "# no network on lab hosts: packages are verified, not installed (the image has them)\n",
    );
    s.push_str("INSTALL_SOURCE=\"offline\"\n");
    s.push_str(
        "# binaries: Debian's own builds, pinned in the manifest (fill with `ezk download --from-apt`)\n",
    );
    s.push_str("K8S_VER=\"lab-debian\"\n");
    s.push_str("# Debian bookworm ships no crictl (cri-tools): the lab installs containerd's own ctr only\n");
    s.push_str("INSTALL_CRICTL=false\n");
    s.push_str(
        "# containerd's overlayfs snapshots cannot sit on a host's overlay root: each host has a\n",
    );
    let _ = writeln!(
        s,
        "# directory of this machine's filesystem at {DISK}, and containerd stores below it\nCONTAINERD_STORAGE_DIR=\"{DISK}/containerd\"",
        DISK = crate::lab::host::DISK_MOUNT
    );
    s.push_str("# no CAP_SYS_RESOURCE in a lab host: containerd must not ask for a negative oom_score_adj\n");
    s.push_str("CONTAINERD_RESTRICT_OOM_SCORE_ADJ=true\n");
    s.push_str(
        "# no registry: pods start from the pause image made from the lab's Kubernetes build\n",
    );
    s.push_str("SANDBOX_IMAGE=\"ezk.local/pause:3.4\"\n");
    s.push_str("# ... imported on every node with CoreDNS (built offline with Kubernetes) and the test image\n# (busybox: a shell, httpd, wget, nc, nslookup)\n");
    s.push_str("PRELOAD_IMAGES=[\"pause\", \"coredns\", \"busybox\"]\n");
    s.push_str("# the CoreDNS the lab builds (step 07 names its image registry.k8s.io/coredns/coredns:v1.8.3)\n");
    s.push_str("corednsVer=\"1.8.3\"\n");
    s.push_str("# no image for the node-local DNS cache, metrics-server or the dashboard here (their manifests\n# are checked with a server-side dry run in the lab tests): kubelets ask CoreDNS directly\n");
    s.push_str("ENABLE_LOCAL_DNS_CACHE=false\nmetricsserver_install=\"no\"\ndashboard_install=\"no\"\n");
    s.push_str("# lab hosts share this machine's disk: a percentage would be of the machine's disk, which\n# other work fills; evict only when it is really nearly full\n");
    s.push_str("EVICTION_NODEFS_AVAILABLE=\"1Gi\"\nEVICTION_IMAGEFS_AVAILABLE=\"1Gi\"\n");
    s.push_str("# the conntrack table size is the machine's (read-only in a host): kube-proxy leaves it\n");
    s.push_str("KUBE_PROXY_CONNTRACK_MAX_PER_CORE=0\n");
    s.push_str("# no default route on a lab host: kube-apiserver reaches Service addresses (webhooks) by this one\n");
    s.push_str("HOST_GW_SERVICE_ROUTE=true\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_by_size() {
        let one = layout(1);
        assert_eq!(
            (one.etcd.len(), one.masters.len(), one.nodes.len()),
            (1, 1, 1)
        );
        let three = layout(3);
        assert_eq!(three.etcd, vec![0, 1, 2]);
        assert_eq!(three.nodes, vec![0, 1, 2]);
        assert!(three.ex_lb.is_empty());
        let six = layout(6);
        assert_eq!(six.nodes, vec![3, 4, 5]);
        assert_eq!(six.ex_lb, vec![(4, "master"), (5, "backup")]);
        assert_eq!(six.chrony, vec![0]);
        for n in 1..12 {
            assert_eq!(layout(n).etcd.len() % 2, 1, "even etcd for {n} hosts");
        }
    }

    #[test]
    fn five_hosts_matches_fixture() {
        let hosts: Vec<(String, Ipv4Addr)> = (0..5)
            .map(|i| (format!("demo-{}", i + 1), Ipv4Addr::new(198, 18, 9, 11 + i)))
            .collect();
        let text = hosts_file(&InventoryInput {
            name: "demo",
            hosts: &hosts,
            vip: Some(Ipv4Addr::new(198, 18, 9, 250)),
            key_file: Path::new("/home/ezk/clusters/demo/ssh/id_ed25519"),
        });
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lab-inventory/5-hosts/hosts");
        // EZK_BLESS=1 rewrites the fixture after a deliberate change (review the diff).
        if std::env::var_os("EZK_BLESS").is_some() {
            std::fs::write(&fixture, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&fixture).unwrap();
        assert_eq!(
            text,
            expected,
            "{} differs (EZK_BLESS=1 to update)",
            fixture.display()
        );
    }
}
