//! Step 06's image-based network plugins against the lab's real Kubernetes v1.20.2. Lab hosts
//! cannot pull images (no registry, no route out), so the plugins' pods cannot run here: every
//! manifest `ezk render` writes for them is sent to the real API server with
//! `kubectl apply --dry-run=server` (client-side schema validation, admission, defaulting, no
//! object stored), with default and non-default options; then network-apply is run for real
//! (`ezk setup 06 -e CLUSTER_NETWORK=…`): it applies the manifest once, a re-run applies
//! nothing (its `kubectl diff` guard is clean), and the rollout wait gives up in time showing
//! why the pods do not start; the objects are deleted again. The clean-<plugin> roles are run
//! on a shared-lab host holding the host state those plugins leave (links, routes, iptables
//! chains, ipsets, files), made by hand, and must remove exactly that.
//!
//! The lab's own network stays host-gw; nothing here changes the cluster's inventory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kube_master::ensure_control_plane;
use crate::steps_support::{assert_nothing_changed, setup, setup_ok, text};
use crate::support::{kubectl, kubectl_ok, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "kube_network::server_dry_run_accepts_every_rendered_manifest", run: server_dry_run_accepts_every_rendered_manifest },
    Test { name: "kube_network::network_apply_applies_once_and_shows_why_pods_do_not_start", run: network_apply_applies_once_and_shows_why_pods_do_not_start },
    Test { name: "kube_network::clean_roles_remove_the_plugins_host_state", run: clean_roles_remove_the_plugins_host_state },
];

/// The image-based plugins with a role, and their workloads (namespace kube-system).
const PLUGINS: &[(&str, &[&str])] = &[
    ("flannel", &["daemonset/kube-flannel-ds"]),
    ("calico", &["daemonset/calico-node", "deployment/calico-kube-controllers"]),
    ("kube-router", &["daemonset/kube-router"]),
    ("cilium", &["daemonset/cilium", "deployment/cilium-operator"]),
    ("kube-ovn", &["deployment/ovn-central", "daemonset/ovs-ovn", "deployment/kube-ovn-controller", "daemonset/kube-ovn-cni"]),
];

/// For the runs that create pods: images from a "registry" on each lab host's loopback where
/// nothing listens, so a pull fails at once and no lookup or connection leaves the host.
fn no_registry(net: &str) -> String {
    let var = match net {
        "flannel" => "FLANNEL_IMAGE_PREFIX",
        "calico" => "CALICO_IMAGE_PREFIX",
        "kube-router" => "KUBE_ROUTER_IMAGE_PREFIX",
        "cilium" => "CILIUM_IMAGE_PREFIX",
        "kube-ovn" => "KUBE_OVN_IMAGE_PREFIX",
        _ => unreachable!("{net}"),
    };
    format!("{var}=127.0.0.1:1/{net}")
}

/// Option sets rendered per plugin besides the defaults (`-e` pairs).
fn variants(net: &str) -> Vec<Vec<&'static str>> {
    match net {
        "flannel" => vec![
            vec!["-e", "FLANNEL_BACKEND=host-gw", "-e", "FLANNEL_IMAGE_PREFIX=registry.example.test:5000/flannel", "-e", "@EXTRA_ARGS"],
            vec!["-e", "DIRECT_ROUTING=true"],
        ],
        "calico" => vec![
            vec!["-e", "CALICO_NETWORKING_BACKEND=vxlan", "-e", "CALICO_IPV4POOL_IPIP=CrossSubnet", "-e", "CALICO_MTU=1400"],
            vec!["-e", "CALICO_NETWORKING_BACKEND=none", "-e", "CALICO_IMAGE_PREFIX=registry.example.test:5000/calico"],
        ],
        "kube-router" => vec![vec![
            "-e", "OVERLAY_TYPE=subnet", "-e", "FIREWALL_ENABLE=false", "-e", "KUBE_ROUTER_IMAGE_PREFIX=registry.example.test:5000/cloudnativelabs", "-e", "@EXTRA_ARGS",
        ]],
        "cilium" => vec![
            vec!["-e", "CILIUM_ROUTING_MODE=native", "-e", "CILIUM_IMAGE_PREFIX=registry.example.test:5000/cilium", "-e", "@EXTRA_ARGS"],
            vec!["-e", "CILIUM_TUNNEL_PROTOCOL=geneve", "-e", "cilium_hubble_enabled=true", "-e", "ENABLE_LOCAL_DNS_CACHE=true"],
        ],
        // @EXTRA_ARGS also puts the OVN databases on the first master only.
        "kube-ovn" => vec![vec![
            "-e", "KUBE_OVN_TUNNEL_TYPE=vxlan", "-e", "KUBE_OVN_ENABLE_NP=false", "-e", "KUBE_OVN_IFACE=host0", "-e", "KUBE_OVN_IMAGE_PREFIX=registry.example.test:5000/kubeovn", "-e", "@EXTRA_ARGS",
        ]],
        _ => vec![],
    }
}

/// `ezk render <lab> 06 --out <dir> -e CLUSTER_NETWORK=<net> [extra]`; every manifest it wrote
/// (the YAML files under /etc/kubernetes/ezk/ of any host).
fn render(lab: &Lab, dir: &Path, net: &str, extra: &[&str]) -> Vec<PathBuf> {
    let net_var = format!("CLUSTER_NETWORK={net}");
    let out_dir = dir.display().to_string();
    let mut args = vec!["render", lab.name.as_str(), "06", "--out", out_dir.as_str(), "-e", net_var.as_str()];
    // `@EXTRA_ARGS` stands for a YAML file of list-valued variables.
    let file = dir.with_extension("vars.yml");
    std::fs::write(
        &file,
        concat!(
            "FLANNEL_EXTRA_ARGS: [\"--iface-can-reach=198.18.0.1\", \"--iptables-resync=10\"]\n",
            "KUBE_ROUTER_EXTRA_ARGS: [\"--peer-router-ips=198.18.0.1\", \"--peer-router-asns=64513\"]\n",
            "CILIUM_EXTRA_ARGS: [\"--devices=host0\"]\n",
            "OVN_DB_NODES: \"{{ groups['kube_master'][:1] }}\"\n",
        ),
    )
    .unwrap();
    let at_file = format!("@{}", file.display());
    args.extend(extra.iter().map(|a| if *a == "@EXTRA_ARGS" { at_file.as_str() } else { a }));
    let out = lab.ezk(&args);
    assert!(out.status.success(), "ezk {args:?}: {}", text(&out));
    let mut found = Vec::new();
    for host in std::fs::read_dir(dir).unwrap() {
        let d = host.unwrap().path().join("etc/kubernetes/ezk");
        if let Ok(rd) = std::fs::read_dir(&d) {
            found.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")));
        }
    }
    found
}

/// `kubectl apply --dry-run=server -f <file>`: its output, or the failure.
fn dry_run(lab: &Lab, file: &Path) -> Result<String, String> {
    let out = kubectl(lab).args(["apply", "--dry-run=server", "-f"]).arg(file).output().unwrap();
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(text(&out)) }
}

fn server_dry_run_accepts_every_rendered_manifest(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let tmp = tempfile::tempdir().unwrap();
        // The check bites: a field the API does not know is refused.
        let bad = tmp.path().join("bad.yaml");
        std::fs::write(&bad, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ezk-bad, namespace: kube-system}\ndata: {a: b}\nbogusField: 1\n").unwrap();
        let err = dry_run(lab, &bad).expect_err("an unknown field is refused");
        assert!(err.contains("bogusField"), "{err}");
        let mut checked = 0;
        for (net, workloads) in PLUGINS {
            let mut sets = vec![Vec::new()];
            sets.extend(variants(net));
            for (i, extra) in sets.iter().enumerate() {
                let manifests = render(lab, &tmp.path().join(format!("{net}-{i}")), net, extra);
                assert_eq!(manifests.len(), 1, "{net} {extra:?}: {manifests:?}");
                for m in &manifests {
                    let out = dry_run(lab, m).unwrap_or_else(|e| panic!("{net} {extra:?}: {} refused:\n{e}", m.display()));
                    let objects = std::fs::read_to_string(m).unwrap().matches("\nkind: ").count();
                    let accepted = out.lines().filter(|l| l.ends_with("(server dry run)")).count();
                    assert_eq!(accepted, objects, "{net} {extra:?}:\n{out}");
                    println!("  {net} {extra:?}: {accepted} objects accepted by the API server (dry run)");
                    checked += 1;
                }
            }
            // A dry run stores nothing.
            for w in *workloads {
                let out = kubectl(lab).args(["-n", "kube-system", "get", w]).output().unwrap();
                assert!(!out.status.success() && text(&out).contains("NotFound"), "{w} exists: {}", text(&out));
            }
        }
        assert_eq!(checked, PLUGINS.iter().map(|(n, _)| 1 + variants(n).len()).sum::<usize>());
    });
}

/// Every object of `manifest` deleted, and the plugin's pods gone. The v1.20 kubelet can take
/// minutes to finish pods whose init containers never started (it retries the image pulls): the
/// pods left after 90 s are deleted without waiting for it (the kubelet still stops their
/// sandboxes, as for any pod the API no longer has).
fn delete_all(lab: &Lab, manifest: &Path, net: &str) {
    let out = kubectl(lab).args(["delete", "--ignore-not-found", "--wait=true", "--timeout=60s", "-f"]).arg(manifest).output().unwrap();
    assert!(out.status.success(), "{net}: {}", text(&out));
    let mine = || -> Vec<String> {
        let pods = kubectl_ok(lab, &["-n", "kube-system", "get", "pods", "-o", "name"]);
        pods.lines().filter(|p| p.contains(net)).map(str::to_string).collect()
    };
    let start = Instant::now();
    let mut forced = false;
    while !mine().is_empty() {
        if start.elapsed() > Duration::from_secs(90) && !forced {
            let left = mine();
            println!("  {net}: pods still terminating after 90 s, deleted without waiting for the kubelet: {left:?}");
            let mut args = vec!["-n", "kube-system", "delete", "--grace-period=0", "--force", "--ignore-not-found"];
            args.extend(left.iter().map(String::as_str));
            kubectl(lab).args(&args).output().unwrap();
            forced = true;
        }
        assert!(start.elapsed() < Duration::from_secs(150), "{net} pods left: {:?}", mine());
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn network_apply_applies_once_and_shows_why_pods_do_not_start(_: &Lab) {
    with_cluster_lab(|lab| {
        ensure_control_plane(lab);
        let first = lab.hosts[0].ip.clone();
        let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
        let tmp = tempfile::tempdir().unwrap();
        for (net, workloads) in PLUGINS {
            let registry = no_registry(net);
            let manifest = render(lab, &tmp.path().join(net), net, &["-e", &registry]).remove(0);
            let net_var = format!("CLUSTER_NETWORK={net}");
            let extra = ["-e", net_var.as_str(), "-e", &registry, "-e", "NETWORK_ROLLOUT_TIMEOUT=20"];
            // First run: the manifest goes up and is applied; the rollout cannot finish (no
            // image can be pulled here) and the failure says why, from the pods' events.
            let r = setup(lab, "06", &extra);
            assert_ne!(r.code, 0, "{net}: the rollout cannot succeed without images:\n{}", r.output);
            assert_eq!(r.count(&first, "failed"), 1, "{net}:\n{}", r.output);
            assert!(r.output.contains(&format!("network workloads rolled out ({})", workloads[0])), "{net}:\n{}", r.output);
            // cilium's agent mounts the host's BPF filesystem: a lab host's /sys is read-only
            // and has no /sys/fs/bpf, so its pods stop at that volume, before any pull.
            let pull = ["ErrImagePull", "ImagePullBackOff", "Failed to pull image"].iter().any(|s| r.output.contains(s));
            let bpf_mount = *net == "cilium" && r.output.contains("FailedMount") && r.output.contains("bpf-maps");
            assert!(pull || bpf_mount, "{net}: the diagnosis does not show why the pods do not start:\n{}", r.output);
            for w in *workloads {
                kubectl_ok(lab, &["-n", "kube-system", "get", w]);
            }
            let applied = lab.sh(0, &format!("cat /etc/kubernetes/ezk/{net}.yaml"));
            assert_eq!(applied.trim(), std::fs::read_to_string(&manifest).unwrap().trim(), "{net}: the rendered manifest is the one on the first master");
            // Second run: the cluster already has every object as the manifest says, so
            // nothing is applied (or changed anywhere); the wait fails again (a short one: what
            // it would show is the first run's, and five plugins' waits add up).
            let quick = ["-e", net_var.as_str(), "-e", &registry, "-e", "NETWORK_ROLLOUT_TIMEOUT=3"];
            let r = setup(lab, "06", &quick);
            assert_ne!(r.code, 0, "{}", r.output);
            for ip in &ips {
                assert_eq!(r.count(ip, "changed"), 0, "{net}: a re-run changed {ip}:\n{}", r.output);
            }
            delete_all(lab, &manifest, net);
            lab.sh(0, &format!("rm -f /etc/kubernetes/ezk/{net}.yaml"));
            // The kubelet made the DaemonSet's DirectoryOrCreate host paths before the pulls
            // failed: empty ones of cilium's own go again.
            if *net == "cilium" {
                for i in 0..lab.hosts.len() {
                    lab.sh(i, "rmdir /run/cilium/cgroupv2 /run/cilium 2>/dev/null; true");
                }
            }
        }
        // The lab's own network (host-gw) is untouched: step 06 as configured changes nothing.
        let r = setup_ok(lab, "06", &[]);
        assert_nothing_changed(&r, &ips);
    });
}

/// Things on shared-lab host 0 that are no plugin's and must stay: a link, a route outside
/// CLUSTER_CIDR (the lab's 198.19.128.0/17), an iptables chain, a CNI config and plugin.
const KEEP_STATE: &str = r#"
set -e
ip link add keep0 type bridge; ip link set keep0 up
ip route add 198.18.250.0/24 dev keep0
iptables -N KEEP-ME; iptables -A INPUT -j KEEP-ME
mkdir -p /etc/cni/net.d /opt/cni/bin
echo '{}' > /etc/cni/net.d/99-keep.conf
printf '#!/bin/sh\n' > /opt/cni/bin/keep-plugin; chmod 755 /opt/cni/bin/keep-plugin
"#;

/// What each plugin leaves on a node (made by hand: the shared lab runs no Kubernetes), the
/// ipsets it leaves (made only where this kernel gives a container ipsets), and what must be
/// gone after its clean role: links, then `ls -d` paths.
struct Leftovers {
    net: &'static str,
    make: &'static str,
    ipsets: &'static str,
    links: &'static [&'static str],
    paths: &'static [&'static str],
    /// A command whose output must be empty afterwards (routes, rules, iptables lines).
    none_left: &'static str,
}

const LEFTOVERS: &[Leftovers] = &[
    Leftovers {
        net: "flannel",
        make: r#"
set -e
ip link add flannel.1 type bridge; ip link add cni0 type bridge
ip route add 198.19.200.0/24 dev keep0
iptables -t nat -N FLANNEL-POSTRTG
iptables -t nat -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
iptables -t nat -A FLANNEL-POSTRTG -s 198.19.128.0/17 -j RETURN
iptables -N FLANNEL-FWD; iptables -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
mkdir -p /run/flannel /var/lib/cni/flannel /var/lib/cni/networks/cbr0
echo '{}' > /etc/cni/net.d/10-flannel.conflist; printf '#!/bin/sh\n' > /opt/cni/bin/flannel
echo FLANNEL_SUBNET=198.19.130.1/24 > /run/flannel/subnet.env
"#,
        ipsets: "",
        links: &["flannel.1", "cni0"],
        paths: &["/etc/cni/net.d/10-flannel.conflist", "/opt/cni/bin/flannel", "/run/flannel", "/var/lib/cni/flannel", "/var/lib/cni/networks/cbr0"],
        none_left: "ip -4 route show root 198.19.128.0/17; iptables-save | grep FLANNEL- || true",
    },
    Leftovers {
        net: "calico",
        make: r#"
set -e
ip link add vxlan.calico type bridge; ip link add cali0123abcd type bridge
ip route add blackhole 198.19.201.0/26 proto 12
iptables -N cali-FORWARD; iptables -A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD
iptables -A cali-FORWARD -m comment --comment "cali:vjrMJCRpqwy5oRoX" -j MARK --set-xmark 0x0/0xe0000
iptables -t nat -N cali-nat-OUTPUT; iptables -t nat -A OUTPUT -m comment --comment "cali:tVnHkvAo15HuiPy0" -j cali-nat-OUTPUT
# felix uses raw and mangle too, where this kernel gives a container those tables
for t in raw mangle; do
  if iptables -t $t -S >/dev/null 2>&1; then
    iptables -t $t -N cali-PREROUTING; iptables -t $t -A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
  fi
done
mkdir -p /var/lib/calico /var/run/calico /var/log/calico/cni
echo '{}' > /etc/cni/net.d/10-calico.conflist; echo k > /etc/cni/net.d/calico-kubeconfig
for b in calico calico-ipam; do printf '#!/bin/sh\n' > /opt/cni/bin/$b; done
"#,
        ipsets: "ipset create cali40all-ipam-pools hash:net",
        links: &["vxlan.calico", "cali0123abcd"],
        paths: &["/etc/cni/net.d/10-calico.conflist", "/etc/cni/net.d/calico-kubeconfig", "/opt/cni/bin/calico", "/opt/cni/bin/calico-ipam", "/var/lib/calico", "/var/run/calico", "/var/log/calico"],
        none_left: "ip -4 route show root 198.19.128.0/17; iptables-save | grep -e cali- -e cali: || true; ipset list -n 2>/dev/null | grep ^cali || true",
    },
    Leftovers {
        net: "kube-router",
        make: r#"
set -e
ip link add kube-bridge type bridge; ip link add kube-dummy-if type bridge; ip link add tun-0a1b2c3d4e5 type bridge
ip route add 198.19.202.0/24 dev keep0 proto 17
ip route add 198.19.203.0/24 dev keep0 table 77
ip rule add lookup 77
iptables -I FORWARD 1 -m comment --comment "allow outbound traffic from pods" -i kube-bridge -j ACCEPT
iptables -I FORWARD 1 -m comment --comment "allow outbound node port traffic on node interface with which node ip is associated" -o host0 -j ACCEPT
mkdir -p /var/lib/cni/networks/mynet /var/lib/kube-router
echo '{}' > /etc/cni/net.d/10-kuberouter.conflist
"#,
        // the pod egress masquerade rule holds the set: it must go first
        ipsets: "ipset create kube-router-pod-subnets hash:net && iptables -t nat -A POSTROUTING -m set --match-set kube-router-pod-subnets src -m set ! --match-set kube-router-pod-subnets dst -j MASQUERADE",
        links: &["kube-bridge", "kube-dummy-if", "tun-0a1b2c3d4e5"],
        paths: &["/etc/cni/net.d/10-kuberouter.conflist", "/var/lib/cni/networks/mynet", "/var/lib/kube-router"],
        none_left: "ip -4 route show root 198.19.128.0/17; ip -4 route show table 77; ip -4 rule show | grep 'lookup 77' || true; iptables-save | grep -e kube-router -e kube-bridge -e 'node port traffic' || true; ipset list -n 2>/dev/null | grep ^kube-router || true",
    },
    Leftovers {
        net: "cilium",
        // The L7 proxy's policy routing: a rule to table 2004, and the `local` table's rule
        // moved from priority 0 to 100 (added at 100 before the 0 one goes: local delivery
        // never stops).
        make: r#"
set -e
ip link add cilium_host type veth peer name cilium_net
ip link add cilium_vxlan type bridge; ip link add lxc_health type bridge; ip link add lxc1a2b3c4d5e6 type bridge
ip route add 198.19.204.0/24 dev keep0
ip route add 198.18.251.0/24 dev keep0 table 2004
ip rule add fwmark 0x200/0xf00 lookup 2004 priority 9
ip rule add priority 100 lookup local; ip rule del priority 0 lookup local
iptables -N CILIUM_INPUT; iptables -A INPUT -m comment --comment "cilium-feeder: CILIUM_INPUT" -j CILIUM_INPUT
iptables -t nat -N CILIUM_POST_nat; iptables -t nat -A POSTROUTING -m comment --comment "cilium-feeder: CILIUM_POST_nat" -j CILIUM_POST_nat
iptables -t nat -A CILIUM_POST_nat -s 198.19.128.0/17 ! -d 198.19.128.0/17 -m comment --comment "cilium masquerade non-cluster" -j MASQUERADE
mkdir -p /run/cilium/cgroupv2 /var/run/cilium/state /etc/cilium
# the agent's cgroup v2 mount (a tmpfs stands in where a lab host may not mount cgroup2)
mount -t cgroup2 none /run/cilium/cgroupv2 2>/dev/null || mount -t tmpfs none /run/cilium/cgroupv2
echo '{}' > /etc/cni/net.d/05-cilium.conflist; printf '#!/bin/sh\n' > /opt/cni/bin/cilium-cni
"#,
        ipsets: "ipset create cilium_node_set_v4 hash:ip",
        links: &["cilium_host", "cilium_net", "cilium_vxlan", "lxc_health", "lxc1a2b3c4d5e6"],
        paths: &["/etc/cni/net.d/05-cilium.conflist", "/opt/cni/bin/cilium-cni", "/run/cilium", "/etc/cilium"],
        none_left: "ip -4 route show root 198.19.128.0/17; ip -4 route show table 2004; ip -4 rule show | grep -e 'lookup 2004' -e '^100:' || true; ip -4 rule show | grep -q '^0:.*lookup local' || echo 'no local rule at priority 0'; iptables-save | grep -e CILIUM_ -e cilium || true; ipset list -n 2>/dev/null | grep ^cilium_ || true; ! mountpoint -q /run/cilium/cgroupv2 2>/dev/null || echo 'cgroupv2 still mounted'",
    },
    Leftovers {
        net: "kube-ovn",
        // ovs-system and br-int stand for the Open vSwitch datapath's devices, which only go
        // down (checked in none_left).
        make: r#"
set -e
ip link add ovn0 type bridge; ip link add genev_sys_6081 type bridge; ip link add mirror0 type bridge; ip link add 0123456789ab_h type bridge
ip link add ovs-system type bridge; ip link add br-int type bridge; ip link set ovs-system up; ip link set br-int up; ip addr add 198.18.252.1/32 dev br-int
ip route add 198.19.205.0/24 dev keep0
ip route add 100.64.0.0/16 dev keep0
iptables -t nat -N OVN-POSTROUTING; iptables -t nat -A POSTROUTING -m comment --comment "kube-ovn postrouting rules" -j OVN-POSTROUTING
iptables -t nat -N OVN-MASQUERADE; iptables -t nat -A OVN-POSTROUTING -j OVN-MASQUERADE
iptables -A OUTPUT -p udp -m udp --dport 6081 -j MARK --set-xmark 0x0
mkdir -p /run/openvswitch /run/ovn /etc/origin/openvswitch /etc/origin/ovn /var/log/openvswitch /var/log/ovn /var/log/kube-ovn
echo '{}' > /etc/cni/net.d/01-kube-ovn.conflist
for b in kube-ovn macvlan; do printf '#!/bin/sh\n' > /opt/cni/bin/$b; done
"#,
        // the filter rules on the set hold it: they must go first
        ipsets: "ipset create ovn40subnets hash:net && iptables -A INPUT -m set --match-set ovn40subnets dst -j ACCEPT",
        links: &["ovn0", "genev_sys_6081", "mirror0", "0123456789ab_h"],
        paths: &[
            "/etc/cni/net.d/01-kube-ovn.conflist", "/opt/cni/bin/kube-ovn", "/opt/cni/bin/macvlan", "/run/openvswitch", "/run/ovn",
            "/etc/origin/openvswitch", "/etc/origin/ovn", "/var/log/openvswitch", "/var/log/ovn", "/var/log/kube-ovn",
        ],
        none_left: "ip -4 route show root 198.19.128.0/17; ip -4 route show root 100.64.0.0/16; ip -o addr show dev br-int; ip -o link show up | grep -e ' ovs-system:' -e ' br-int:' || true; iptables-save | grep -e OVN- -e ovn40 -e 'dport 6081' || true; ipset list -n 2>/dev/null | grep ^ovn40 || true",
    },
];

/// True when the kernel lets this host make ipsets (the ip_set module is loaded).
fn ipset_works(lab: &Lab) -> bool {
    lab.ssh(0, "ipset create ezk-probe hash:ip && ipset destroy ezk-probe").status.success()
}

fn clean_roles_remove_the_plugins_host_state(lab: &Lab) {
    // A step of the test's own (a playbook only in the home adds a step) runs the clean roles
    // on host 0 only, with the network chosen by -e.
    let book = lab.home.join("playbooks/97.clean-network-test.yml");
    std::fs::create_dir_all(book.parent().unwrap()).unwrap();
    let roles: String = LEFTOVERS
        .iter()
        .map(|l| format!("    - {{ role: clean-{0}, when: \"CLUSTER_NETWORK == '{0}'\" }}\n", l.net))
        .collect();
    std::fs::write(&book, format!("- hosts: [kube_master, kube_node]\n  roles:\n{roles}")).unwrap();
    let ip = lab.hosts[0].ip.clone();
    // The shared lab runs no Kubernetes, but earlier tests may have made the CNI dirs (the
    // containerd role's config names them): what is there now must be there afterwards.
    const DIRS: &str = "/etc/cni /etc/cni/net.d /opt/cni /opt/cni/bin /var/lib/cni /var/lib/cni/networks";
    // The files in them, one path a line (nothing whether the dirs are absent or empty).
    let listing = |lab: &Lab| lab.sh(0, "find /etc/cni/net.d /opt/cni/bin -mindepth 1 2>/dev/null | sort; true");
    let dirs_before = lab.sh(0, &format!("for d in {DIRS}; do [ -d $d ] && echo $d; done; true"));
    let files_before = listing(lab);
    let ipsets = ipset_works(lab);
    println!("  ipsets {}", if ipsets { "made and checked" } else { "not available in a lab host here: not checked" });
    lab.sh(0, KEEP_STATE);
    if ipsets {
        lab.sh(0, "ipset create keep-set hash:ip");
    }
    for l in LEFTOVERS {
        lab.sh(0, l.make);
        if ipsets && !l.ipsets.is_empty() {
            lab.sh(0, l.ipsets);
        }
        let net_var = format!("CLUSTER_NETWORK={}", l.net);
        let r = setup_ok(lab, "97", &["--limit", &ip, "-e", &net_var]);
        assert!(r.count(&ip, "changed") > 0, "{}:\n{}", l.net, r.output);
        // A second run finds nothing left to do.
        let r = setup_ok(lab, "97", &["--limit", &ip, "-e", &net_var]);
        assert_eq!(r.count(&ip, "changed"), 0, "{}:\n{}", l.net, r.output);
        let links = lab.sh(0, "ip -o link show | awk -F': ' '{print $2}'");
        for gone in l.links {
            assert!(!links.lines().any(|x| x == *gone), "{}: {gone} left: {links}", l.net);
        }
        let left = lab.sh(0, &format!("ls -d {} 2>/dev/null || true", l.paths.join(" ")));
        assert_eq!(left, "", "{}: files left", l.net);
        assert_eq!(lab.sh(0, l.none_left), "", "{}: routes, rules or ipsets left", l.net);
        // What is not the plugin's stays.
        assert!(links.lines().any(|x| x == "keep0"), "{}: {links}", l.net);
        assert!(lab.sh(0, "ip -4 route show 198.18.250.0/24").contains("keep0"), "{}: a route outside CLUSTER_CIDR went", l.net);
        assert!(lab.sh(0, "iptables-save").contains("-A INPUT -j KEEP-ME"), "{}: another chain went", l.net);
        let files = listing(lab);
        assert!(files.lines().any(|f| f == "/etc/cni/net.d/99-keep.conf") && files.lines().any(|f| f == "/opt/cni/bin/keep-plugin"), "{}: {files}", l.net);
        lab.sh(0, "rm -f /etc/cni/net.d/99-keep.conf /opt/cni/bin/keep-plugin");
        assert_eq!(listing(lab), files_before, "{}: other CNI files went or stayed", l.net);
        lab.sh(0, "echo '{}' > /etc/cni/net.d/99-keep.conf; printf '#!/bin/sh\\n' > /opt/cni/bin/keep-plugin; chmod 755 /opt/cni/bin/keep-plugin");
        if ipsets {
            assert_eq!(lab.sh(0, "ipset list -n"), "keep-set", "{}", l.net);
        }
    }
    // Leave the host as it was: the test's own files, and the dirs it made.
    lab.sh(0, "ip link delete ovs-system; ip link delete br-int; rmdir /etc/origin; ip link delete keep0; iptables -D INPUT -j KEEP-ME; iptables -X KEEP-ME; rm -f /etc/cni/net.d/99-keep.conf /opt/cni/bin/keep-plugin; ipset destroy keep-set 2>/dev/null || true");
    let made: Vec<&str> = DIRS.split(' ').filter(|d| !dirs_before.lines().any(|b| b == *d)).collect();
    lab.sh(0, &format!("for d in {}; do rmdir $d; done; true", made.iter().rev().copied().collect::<Vec<_>>().join(" ")));
    assert_eq!(lab.sh(0, &format!("for d in {DIRS}; do [ -d $d ] && echo $d; done; true")), dirs_before, "CNI dirs not as before");
    assert_eq!(listing(lab), files_before);
    std::fs::remove_file(&book).unwrap();
}
