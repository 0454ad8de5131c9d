//! `ezk lab` hosts, on the shared lab: reachable over SSH with host-key checking on, each its
//! own machine (name, address, filesystem, keys), no route off the lab, the inventory written
//! for them, role services installed but off.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Lab, Test, hosts_of, ini_sections, section, ssh_with};

pub const TESTS: &[Test] = &[
    Test {
        name: "lab::ssh_strict_hostname_address_systemd",
        run: ssh_strict_hostname_address_systemd,
    },
    Test {
        name: "lab::wrong_host_key_is_refused",
        run: wrong_host_key_is_refused,
    },
    Test {
        name: "lab::inventory_describes_the_hosts",
        run: inventory_describes_the_hosts,
    },
    Test {
        name: "lab::no_route_off_the_lab",
        run: no_route_off_the_lab,
    },
    Test {
        name: "lab::filesystems_are_separate",
        run: filesystems_are_separate,
    },
    Test {
        name: "lab::identities_are_distinct",
        run: identities_are_distinct,
    },
    Test {
        name: "lab::role_services_installed_but_off",
        run: role_services_installed_but_off,
    },
    Test {
        name: "lab::vip_can_be_added",
        run: vip_can_be_added,
    },
    Test {
        name: "lab::keepalived_vip_moves",
        run: keepalived_vip_moves,
    },
    Test {
        name: "lab::status_lists_hosts",
        run: status_lists_hosts,
    },
];

fn ssh_strict_hostname_address_systemd(lab: &Lab) {
    let inv = lab.inventory();
    for (i, h) in lab.hosts.iter().enumerate() {
        assert!(
            inv.contains(&format!("{} k8s_nodename='{}'", h.ip, h.name)),
            "{} not in inventory:\n{inv}",
            h.name
        );
        assert_eq!(lab.sh(i, "hostname"), h.name);
        let addr = lab.sh(i, "ip -4 -o addr show dev host0");
        assert!(
            addr.contains(&format!("inet {}/24", h.ip)),
            "{}: {addr}",
            h.name
        );
        // `is-system-running` exits non-zero for degraded; the word is what matters.
        let out = lab.ssh(i, "systemctl is-system-running");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            state == "running" || state == "degraded",
            "{}: system {state}",
            h.name
        );
    }
}

fn wrong_host_key_is_refused(lab: &Lab) {
    let dir = tempfile::tempdir().unwrap();
    // Host 1's real key recorded under host 0's address: the connection must be refused.
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let key1 = known
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lab.hosts[1].ip)))
        .unwrap();
    let wrong = dir.path().join("known_hosts");
    std::fs::write(
        &wrong,
        key1.replacen(&lab.hosts[1].ip, &lab.hosts[0].ip, 1) + "\n",
    )
    .unwrap();
    let out = ssh_with(&lab.key(), &wrong, &lab.hosts[0].ip)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(255),
        "connected despite a wrong host key"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No entry at all: strict checking refuses too (it does not learn the key).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let out = ssh_with(&lab.key(), &empty, &lab.hosts[0].ip)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "a host key was learned"
    );
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
    assert!(
        vars.contains(&format!("CLUSTER_NAME=\"{}\"", lab.name)),
        "{vars:?}"
    );
    let config = std::fs::read_to_string(lab.cluster_dir().join("config.yml")).unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/inventory-examples/config.yml"
    ))
    .unwrap();
    assert_eq!(config, example, "config.yml is the shipped example");
    let out = lab.ezk(&["check", &lab.name]);
    assert!(
        out.status.success(),
        "ezk check {}:\n{}{}",
        lab.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn no_route_off_the_lab(lab: &Lab) {
    let subnet = format!("198.18.{}.0/24", lab.index);
    for i in 0..lab.hosts.len() {
        assert_eq!(
            lab.sh(i, "ip -4 route show default"),
            "",
            "default route on {}",
            lab.hosts[i].name
        );
        assert_eq!(lab.sh(i, "ip -6 route show default"), "");
        for route in lab.sh(i, "ip -4 route show table main").lines() {
            assert!(
                route.starts_with(&subnet),
                "{}: route off the lab: {route}",
                lab.hosts[i].name
            );
        }
        // An address outside the subnet is unreachable from inside (no packet leaves).
        let out = lab.ssh(i, "ip -4 route get 198.51.100.1");
        assert!(
            !out.status.success(),
            "198.51.100.1 routable from {}",
            lab.hosts[i].name
        );
    }
}

fn filesystems_are_separate(lab: &Lab) {
    let token = format!("ezk-iso-{}", std::process::id());
    lab.sh(
        0,
        &format!("echo {token} > /root/{token} && mkdir -p /opt/{token} && sync"),
    );
    assert_eq!(lab.sh(0, &format!("cat /root/{token}")), token);
    for i in 1..lab.hosts.len() {
        let out = lab.ssh(i, &format!("test -e /root/{token} || test -e /opt/{token}"));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}'s file visible on {}",
            lab.hosts[0].name,
            lab.hosts[i].name
        );
    }
    // Not written through to the shared base image either.
    let images = crate::support::lab_root().join("images");
    for img in std::fs::read_dir(&images).unwrap().flatten() {
        assert!(
            !img.path().join("root").join(&token).exists(),
            "written into image {}",
            img.path().display()
        );
    }
}

fn identities_are_distinct(lab: &Lab) {
    let ids: Vec<String> = (0..lab.hosts.len())
        .map(|i| lab.sh(i, "cat /etc/machine-id"))
        .collect();
    let keys: Vec<String> = (0..lab.hosts.len())
        .map(|i| lab.sh(i, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub"))
        .collect();
    for set in [&ids, &keys] {
        let mut uniq = set.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), set.len(), "shared between hosts: {set:?}");
    }
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    for (h, key) in lab.hosts.iter().zip(&keys) {
        assert!(
            known.contains(&format!("{} ssh-ed25519 {key}", h.ip)),
            "known_hosts lacks {}'s real key",
            h.name
        );
    }
}

fn role_services_installed_but_off(lab: &Lab) {
    lab.sh(
        0,
        "command -v nginx haproxy keepalived chronyd ipvsadm conntrack ipset socat curl jq rsync killall",
    );
    lab.sh(0, "test -e /usr/lib/nginx/modules/ngx_stream_module.so");
    for unit in [
        "nginx",
        "haproxy",
        "keepalived",
        "chrony",
        "rpcbind.service",
        "rpcbind.socket",
    ] {
        let out = lab.ssh(0, &format!("systemctl is-enabled {unit}"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "disabled",
            "{unit} enabled in the image"
        );
    }
    // They start for real when asked.
    lab.sh(
        0,
        "systemctl start nginx && systemctl is-active nginx && systemctl stop nginx",
    );
    // chrony needs the role's no-clock drop-in: Debian's unit is skipped without CAP_SYS_TIME.
    assert!(lab.inventory().contains("\nCHRONY_SET_CLOCK=false\n"));
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

/// keepalived with unicast peers (as the ex-lb role configures it) holds the VIP on the master
/// and moves it to the backup when the master's keepalived stops: VRRP works between lab hosts.
fn keepalived_vip_moves(lab: &Lab) {
    let vip = format!("198.18.{}.248", lab.index);
    let conf = |state: &str, prio: u32, me: usize, peer: usize| {
        format!(
            "vrrp_instance EZKLAB {{\n  state {state}\n  interface host0\n  virtual_router_id 77\n  priority {prio}\n  advert_int 1\n  unicast_src_ip {}\n  unicast_peer {{\n    {}\n  }}\n  virtual_ipaddress {{\n    {vip}/24 dev host0\n  }}\n}}\n",
            lab.hosts[me].ip, lab.hosts[peer].ip
        )
    };
    for (i, state, prio, peer) in [(0, "MASTER", 120, 1), (1, "BACKUP", 100, 0)] {
        let text = conf(state, prio, i, peer);
        lab.sh(i, &format!("mkdir -p /etc/keepalived && printf '%s' '{text}' > /etc/keepalived/keepalived.conf && systemctl start keepalived"));
    }
    let holds = |i: usize| {
        lab.sh(i, "ip -4 -o addr show dev host0")
            .contains(&format!(" {vip}/24 "))
    };
    let wait_for = |i: usize| {
        let start = std::time::Instant::now();
        while !holds(i) {
            assert!(
                start.elapsed().as_secs() < 15,
                "{} never took the VIP {vip}",
                lab.hosts[i].name
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    wait_for(0);
    assert!(!holds(1), "both hosts hold the VIP");
    lab.sh(0, "systemctl stop keepalived");
    wait_for(1);
    assert!(!holds(0), "the stopped master kept the VIP");
    for i in [0, 1] {
        lab.sh(
            i,
            "systemctl stop keepalived; rm -f /etc/keepalived/keepalived.conf",
        );
    }
}

fn status_lists_hosts(lab: &Lab) {
    let out = lab.ezk(&["lab", "status", &lab.name]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for h in &lab.hosts {
        let line = text
            .lines()
            .find(|l| l.contains(&h.name))
            .unwrap_or_else(|| panic!("{} missing in:\n{text}", h.name));
        assert!(
            line.contains(&h.ip) && line.trim_end().ends_with("running"),
            "{line}"
        );
    }
    let out = lab.ezk(&["lab", "status", "no-such-lab"]);
    assert_eq!(out.status.code(), Some(1));
}
