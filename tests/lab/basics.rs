//! `ezk lab` itself: hosts reachable over SSH with host-key checking on, each its own machine
//! (name, address, filesystem, keys), no route off the lab, the inventory written for them,
//! and `down` leaving nothing behind, also when pieces are already gone.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::{Lab, Test, hosts_of, ini_sections, nspawn_pids_under, section, ssh_with};

pub const TESTS: &[Test] = &[
    Test { name: "lab::ssh_strict_hostname_address_systemd", run: ssh_strict_hostname_address_systemd },
    Test { name: "lab::wrong_host_key_is_refused", run: wrong_host_key_is_refused },
    Test { name: "lab::inventory_describes_the_hosts", run: inventory_describes_the_hosts },
    Test { name: "lab::no_route_off_the_lab", run: no_route_off_the_lab },
    Test { name: "lab::filesystems_are_separate", run: filesystems_are_separate },
    Test { name: "lab::identities_are_distinct", run: identities_are_distinct },
    Test { name: "lab::role_services_installed_but_off", run: role_services_installed_but_off },
    Test { name: "lab::vip_can_be_added", run: vip_can_be_added },
    Test { name: "lab::status_lists_hosts", run: status_lists_hosts },
    Test { name: "lab::up_refuses_existing_names", run: up_refuses_existing_names },
    Test { name: "lab::not_root_is_refused", run: not_root_is_refused },
    Test { name: "lab::five_hosts_demo_inventory", run: five_hosts_demo_inventory },
    Test { name: "lab::down_tolerates_missing_pieces", run: down_tolerates_missing_pieces },
];

fn ssh_strict_hostname_address_systemd(lab: &Lab) {
    let inv = lab.inventory();
    for (i, h) in lab.hosts.iter().enumerate() {
        assert!(inv.contains(&format!("{} k8s_nodename='{}'", h.ip, h.name)), "{} not in inventory:\n{inv}", h.name);
        assert_eq!(lab.sh(i, "hostname"), h.name);
        let addr = lab.sh(i, "ip -4 -o addr show dev host0");
        assert!(addr.contains(&format!("inet {}/24", h.ip)), "{}: {addr}", h.name);
        // `is-system-running` exits non-zero for degraded; the word is what matters.
        let out = lab.ssh(i, "systemctl is-system-running");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(state == "running" || state == "degraded", "{}: system {state}", h.name);
    }
}

fn wrong_host_key_is_refused(lab: &Lab) {
    let dir = tempfile::tempdir().unwrap();
    // Host 1's real key recorded under host 0's address: the connection must be refused.
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let key1 = known.lines().find(|l| l.starts_with(&format!("{} ", lab.hosts[1].ip))).unwrap();
    let wrong = dir.path().join("known_hosts");
    std::fs::write(&wrong, key1.replacen(&lab.hosts[1].ip, &lab.hosts[0].ip, 1) + "\n").unwrap();
    let out = ssh_with(&lab.key(), &wrong, &lab.hosts[0].ip).arg("true").output().unwrap();
    assert_eq!(out.status.code(), Some(255), "connected despite a wrong host key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification failed"), "{}", String::from_utf8_lossy(&out.stderr));
    // No entry at all: strict checking refuses too (it does not learn the key).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = ssh_with(&lab.key(), &empty, &lab.hosts[0].ip).arg("true").output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "", "a host key was learned");
}

fn inventory_describes_the_hosts(lab: &Lab) {
    let ini = ini_sections(&lab.inventory());
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    assert_eq!(hosts_of(section(&ini, "etcd")), ips);
    assert_eq!(hosts_of(section(&ini, "kube_master")), ips);
    assert_eq!(hosts_of(section(&ini, "kube_node")), ips);
    assert!(section(&ini, "ex_lb").is_empty(), "no ex_lb for 3 hosts");
    let vars = section(&ini, "all:vars");
    assert!(vars.contains(&"ansible_user=root".to_string()), "{vars:?}");
    let key_line = format!("ansible_ssh_private_key_file={}", lab.key().display());
    assert!(vars.contains(&key_line), "{key_line} not in {vars:?}");
    let mode = std::fs::metadata(lab.key()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "lab private key mode");
    assert!(vars.contains(&format!("CLUSTER_NAME=\"{}\"", lab.name)), "{vars:?}");
    let config = std::fs::read_to_string(lab.cluster_dir().join("config.yml")).unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inventory-examples/config.yml")).unwrap();
    assert_eq!(config, example, "config.yml is the shipped example");
}

fn no_route_off_the_lab(lab: &Lab) {
    let subnet = format!("198.18.{}.0/24", lab.index);
    for i in 0..lab.hosts.len() {
        assert_eq!(lab.sh(i, "ip -4 route show default"), "", "default route on {}", lab.hosts[i].name);
        assert_eq!(lab.sh(i, "ip -6 route show default"), "");
        for route in lab.sh(i, "ip -4 route show table main").lines() {
            assert!(route.starts_with(&subnet), "{}: route off the lab: {route}", lab.hosts[i].name);
        }
        // An address outside the subnet is unreachable from inside (no packet leaves).
        let out = lab.ssh(i, "ip -4 route get 198.51.100.1");
        assert!(!out.status.success(), "198.51.100.1 routable from {}", lab.hosts[i].name);
    }
}

fn filesystems_are_separate(lab: &Lab) {
    let token = format!("ezk-iso-{}", std::process::id());
    lab.sh(0, &format!("echo {token} > /root/{token} && mkdir -p /opt/{token} && sync"));
    assert_eq!(lab.sh(0, &format!("cat /root/{token}")), token);
    for i in 1..lab.hosts.len() {
        let out = lab.ssh(i, &format!("test -e /root/{token} || test -e /opt/{token}"));
        assert_eq!(out.status.code(), Some(1), "{}'s file visible on {}", lab.hosts[0].name, lab.hosts[i].name);
    }
    // Not written through to the shared base image either.
    let images = crate::support::lab_root().join("images");
    for img in std::fs::read_dir(&images).unwrap().flatten() {
        assert!(!img.path().join("root").join(&token).exists(), "written into image {}", img.path().display());
    }
}

fn identities_are_distinct(lab: &Lab) {
    let ids: Vec<String> = (0..lab.hosts.len()).map(|i| lab.sh(i, "cat /etc/machine-id")).collect();
    let keys: Vec<String> = (0..lab.hosts.len()).map(|i| lab.sh(i, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub")).collect();
    for set in [&ids, &keys] {
        let mut uniq = set.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), set.len(), "shared between hosts: {set:?}");
    }
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    for (h, key) in lab.hosts.iter().zip(&keys) {
        assert!(known.contains(&format!("{} ssh-ed25519 {key}", h.ip)), "known_hosts lacks {}'s real key", h.name);
    }
}

fn role_services_installed_but_off(lab: &Lab) {
    lab.sh(0, "command -v nginx haproxy keepalived chronyd ipvsadm conntrack ipset socat curl");
    lab.sh(0, "test -e /usr/lib/nginx/modules/ngx_stream_module.so");
    for unit in ["nginx", "haproxy", "keepalived", "chrony"] {
        let out = lab.ssh(0, &format!("systemctl is-enabled {unit}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "disabled", "{unit} enabled in the image");
    }
    // Only sshd listens until a role starts something.
    let ports = lab.sh(0, "ss -Hltn | awk '{print $4}' | sed 's/.*://' | sort -u");
    assert_eq!(ports, "22", "listening ports: {ports}");
}

fn vip_can_be_added(lab: &Lab) {
    // keepalived adds the VIP with CAP_NET_ADMIN inside the host's network namespace.
    let vip = format!("198.18.{}.249/32", lab.index);
    lab.sh(0, &format!("ip addr add {vip} dev host0 && ip -4 -o addr show dev host0 | grep -q ' {vip} ' && ip addr del {vip} dev host0"));
    lab.sh(0, "sysctl -w net.ipv4.ip_nonlocal_bind=1 >/dev/null && sysctl -w net.ipv4.ip_nonlocal_bind=0 >/dev/null");
}

fn status_lists_hosts(lab: &Lab) {
    let out = lab.ezk(&["lab", "status", &lab.name]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for h in &lab.hosts {
        let line = text.lines().find(|l| l.contains(&h.name)).unwrap_or_else(|| panic!("{} missing in:\n{text}", h.name));
        assert!(line.contains(&h.ip) && line.trim_end().ends_with("running"), "{line}");
    }
    let out = lab.ezk(&["lab", "status", "no-such-lab"]);
    assert_eq!(out.status.code(), Some(1));
}

fn up_refuses_existing_names(lab: &Lab) {
    let out = lab.ezk(&["lab", "up", &lab.name, "--hosts", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lab.sh(0, "hostname"), lab.hosts[0].name, "the existing lab still works");
    // A real cluster's inventory (not written by the lab) is never overwritten.
    let home = tempfile::tempdir().unwrap();
    let name = format!("real{}", std::process::id());
    let dir = home.path().join("clusters").join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), "[etcd]\n10.0.0.1\n").unwrap();
    let out = Command::new(crate::support::ezk_bin()).arg("--home").arg(home.path()).args(["lab", "up", &name]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not written by `ezk lab`"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("hosts")).unwrap(), "[etcd]\n10.0.0.1\n");
    assert!(!crate::support::lab_root().join("labs").join(&name).exists(), "state left by a refused up");
}

fn not_root_is_refused(_lab: &Lab) {
    // A copy of the binary nobody can execute, run as nobody.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("ezk");
    std::fs::copy(crate::support::ezk_bin(), &bin).unwrap();
    let name = format!("nr{}", std::process::id());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("--home").arg(dir.path())
        .args(["lab", "up", &name])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
    assert!(!crate::support::lab_root().join("labs").join(&name).exists());
    assert!(!dir.path().join("clusters").exists(), "cluster dir made by a refused up");
}

fn five_hosts_demo_inventory(shared: &Lab) {
    let lab = Lab::up(&format!("d{}", std::process::id()), 5).expect("5-host lab");
    assert_ne!(lab.index, shared.index, "two labs share a subnet");
    let ini = ini_sections(&lab.inventory());
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    assert_eq!(hosts_of(section(&ini, "etcd")), ips[..3]);
    assert_eq!(hosts_of(section(&ini, "kube_master")), ips[..3]);
    assert_eq!(hosts_of(section(&ini, "kube_node")), ips[3..]);
    assert_eq!(hosts_of(section(&ini, "chrony")), ips[..1]);
    let ex_lb = section(&ini, "ex_lb");
    assert_eq!(hosts_of(ex_lb), ips[3..]);
    let vip = lab.vip();
    for (line, role) in ex_lb.iter().zip(["master", "backup"]) {
        assert!(line.contains(&format!("LB_ROLE={role}")), "{line}");
        assert!(line.contains(&format!("EX_APISERVER_VIP={vip}")), "{line}");
        assert!(line.contains("EX_APISERVER_PORT="), "{line}");
    }
    assert!(!ips.contains(&vip), "VIP is a host address");
    // The VIP is free inside the lab subnet.
    let out = lab.ssh(0, &format!("ping -c1 -W1 {vip}"));
    assert!(!out.status.success(), "something already answers on the VIP");
    let vars = section(&ini, "all:vars");
    let var = |k: &str| vars.iter().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("{k} not in {vars:?}")).trim_matches('"').to_string();
    assert_eq!(var("ansible_user"), "root");
    assert_eq!(var("ansible_ssh_private_key_file"), lab.key().display().to_string());
    let (svc, pod) = (cidr(&var("SERVICE_CIDR")), cidr(&var("CLUSTER_CIDR")));
    assert!(!overlaps(svc, pod), "service and pod CIDRs overlap");
    for ip in ips.iter().chain([&vip]) {
        let a = parse_ip(ip);
        assert!(!contains(svc, a) && !contains(pod, a), "{ip} inside a cluster CIDR");
    }
    for c in [svc, pod] {
        assert!(contains((0xC612_0000, 15), c.0), "CIDR outside the unroutable 198.18.0.0/15");
    }
    assert_eq!(lab.sh(4, "hostname"), lab.hosts[4].name);
    let left = lab.down_and_check();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn down_tolerates_missing_pieces(_shared: &Lab) {
    let lab = Lab::up(&format!("x{}", std::process::id()), 2).expect("2-host lab");
    let lab_dir = crate::support::lab_root().join("labs").join(&lab.name);
    // Host 1 crashed (killed without shutdown), host 2's overlay already unmounted, the bridge gone.
    let pids = nspawn_pids_under(&lab_dir.join("hosts").join(&lab.hosts[0].name));
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(Command::new("kill").args(["-KILL", &pids[0].to_string()]).status().unwrap().success());
    let root2 = lab_dir.join("hosts").join(&lab.hosts[1].name).join("rootfs");
    assert!(Command::new("umount").arg("-l").arg(&root2).status().unwrap().success());
    assert!(Command::new("ip").args(["link", "del", &format!("ezkbr{}", lab.index)]).status().unwrap().success());
    let left = lab.down_and_check();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A second down is a no-op, not an error.
    let out = lab.ezk(&["lab", "down", &lab.name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
}

/// (network, prefix length) of an IPv4 CIDR.
fn cidr(s: &str) -> (u32, u32) {
    let (a, len) = s.split_once('/').unwrap_or_else(|| panic!("not a CIDR: {s}"));
    (parse_ip(a), len.parse().unwrap())
}

fn parse_ip(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap_or_else(|_| panic!("not an address: {s}")))
}

fn contains((net, len): (u32, u32), a: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == net & mask
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    contains(a, b.0) || contains(b, a.0)
}
