//! `ezk lab up/down` themselves: refusals (existing names, real inventories, not root), a
//! 5-host lab and its inventory, and `down` leaving nothing behind — also after pieces vanished,
//! an interrupted `up`, or a boot that timed out.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::{Lab, Test, hosts_of, ini_sections, nspawn_pids_under, section};

pub const TESTS: &[Test] = &[
    Test {
        name: "lab::up_refuses_existing_names",
        run: up_refuses_existing_names,
    },
    Test {
        name: "lab::not_root_is_refused",
        run: not_root_is_refused,
    },
    Test {
        name: "lab::five_hosts_demo_inventory",
        run: five_hosts_demo_inventory,
    },
    Test {
        name: "lab::stopped_host_is_unreachable",
        run: stopped_host_is_unreachable,
    },
    Test {
        name: "lab::down_tolerates_missing_pieces",
        run: down_tolerates_missing_pieces,
    },
    Test {
        name: "lab::interrupted_up_leaves_nothing",
        run: interrupted_up_leaves_nothing,
    },
    Test {
        name: "lab::boot_timeout_shows_log_and_cleans_up",
        run: boot_timeout_shows_log_and_cleans_up,
    },
];

fn up_refuses_existing_names(lab: &Lab) {
    let out = lab.ezk(&["lab", "up", &lab.name, "--hosts", "1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lab.sh(0, "hostname"),
        lab.hosts[0].name,
        "the existing lab still works"
    );
    // A real cluster's inventory (not written by the lab) is never overwritten.
    let home = tempfile::tempdir().unwrap();
    let name = format!("real{}", std::process::id());
    let dir = home.path().join("clusters").join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), "[etcd]\n10.0.0.1\n").unwrap();
    let out = Command::new(crate::support::ezk_bin())
        .arg("--home")
        .arg(home.path())
        .args(["lab", "up", &name])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not written by `ezk lab`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts")).unwrap(),
        "[etcd]\n10.0.0.1\n"
    );
    assert!(
        !crate::support::lab_root().join("labs").join(&name).exists(),
        "state left by a refused up"
    );
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
        .arg("--home")
        .arg(dir.path())
        .args(["lab", "up", &name])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
    assert!(!crate::support::lab_root().join("labs").join(&name).exists());
    assert!(
        !dir.path().join("clusters").exists(),
        "cluster dir made by a refused up"
    );
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
    assert!(
        !out.status.success(),
        "something already answers on the VIP"
    );
    let vars = section(&ini, "all:vars");
    let var = |k: &str| {
        vars.iter()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} not in {vars:?}"))
            .trim_matches('"')
            .to_string()
    };
    assert_eq!(var("ansible_user"), "root");
    assert_eq!(
        var("ansible_ssh_private_key_file"),
        lab.key().display().to_string()
    );
    let (svc, pod) = (cidr(&var("SERVICE_CIDR")), cidr(&var("CLUSTER_CIDR")));
    assert!(!overlaps(svc, pod), "service and pod CIDRs overlap");
    for ip in ips.iter().chain([&vip]) {
        let a = parse_ip(ip);
        assert!(
            !contains(svc, a) && !contains(pod, a),
            "{ip} inside a cluster CIDR"
        );
    }
    for c in [svc, pod] {
        assert!(
            contains((0xC612_0000, 15), c.0),
            "CIDR outside the unroutable 198.18.0.0/15"
        );
    }
    assert_eq!(lab.sh(4, "hostname"), lab.hosts[4].name);
    // The inventory passes ezk's own validation.
    let out = lab.ezk(&["check", &lab.name]);
    assert!(
        out.status.success(),
        "ezk check {}:\n{}{}",
        lab.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let left = lab.down_and_check();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn stopped_host_is_unreachable(_shared: &Lab) {
    let lab = Lab::up(&format!("s{}", std::process::id()), 2).expect("2-host lab");
    lab.stop_host(1);
    let out = lab.ssh(1, "true");
    assert_eq!(out.status.code(), Some(255), "stopped host still answers");
    assert_eq!(
        lab.sh(0, "hostname"),
        lab.hosts[0].name,
        "the other host is unaffected"
    );
    let status = lab.ezk(&["lab", "status", &lab.name]);
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&lab.hosts[1].name))
        .unwrap();
    assert!(line.trim_end().ends_with("stopped"), "{line}");
    let left = lab.down_and_check();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn down_tolerates_missing_pieces(_shared: &Lab) {
    let lab = Lab::up(&format!("x{}", std::process::id()), 2).expect("2-host lab");
    let lab_dir = crate::support::lab_root().join("labs").join(&lab.name);
    // Host 1 crashed (killed without shutdown), host 2's overlay already unmounted, the bridge gone.
    let pids = nspawn_pids_under(&lab_dir.join("hosts").join(&lab.hosts[0].name));
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(
        Command::new("kill")
            .args(["-KILL", &pids[0].to_string()])
            .status()
            .unwrap()
            .success()
    );
    let root2 = lab_dir
        .join("hosts")
        .join(&lab.hosts[1].name)
        .join("rootfs");
    assert!(
        Command::new("umount")
            .arg("-l")
            .arg(&root2)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("ip")
            .args(["link", "del", &format!("ezkbr{}", lab.index)])
            .status()
            .unwrap()
            .success()
    );
    let left = lab.down_and_check();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A second down is a no-op, not an error.
    let out = lab.ezk(&["lab", "down", &lab.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
}

fn interrupted_up_leaves_nothing(_shared: &Lab) {
    let home = tempfile::tempdir().unwrap();
    let name = format!("i{}", std::process::id());
    let state_file = crate::support::lab_root()
        .join("labs")
        .join(&name)
        .join("state.json");
    let mut child = Command::new(crate::support::ezk_bin())
        .arg("--home")
        .arg(home.path())
        .args(["lab", "up", &name, "--hosts", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once a host process has been started (the state records its pid).
    let start = std::time::Instant::now();
    let mut index = None;
    while start.elapsed() < std::time::Duration::from_secs(60) && index.is_none() {
        let state: serde_json::Value = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if state["hosts"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["pid"].is_u64()))
        {
            index = state["index"].as_u64();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let index = index.expect("no host started within 60s");
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    // Either the interrupt landed (130) or up had just finished; then the lab must go via down.
    if status.code() != Some(130) {
        let out = Command::new(crate::support::ezk_bin())
            .arg("--home")
            .arg(home.path())
            .args(["lab", "down", &name])
            .output()
            .unwrap();
        panic!(
            "up was not interrupted ({status}): {err}; down: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let lab_dir = crate::support::lab_root().join("labs").join(&name);
    assert!(
        nspawn_pids_under(&lab_dir).is_empty(),
        "host processes left"
    );
    assert!(!lab_dir.exists(), "state dir left: {err}");
    // (Another lab may have reused the subnet number since; its state file would say so.)
    let reused = crate::support::lab_root()
        .join("labs")
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("state.json"))
                .unwrap_or_default()
                .contains(&format!("\"bridge\": \"ezkbr{index}\""))
        });
    assert!(
        reused || !std::path::Path::new(&format!("/sys/class/net/ezkbr{index}")).exists(),
        "bridge left"
    );
    assert!(
        !home
            .path()
            .join("clusters")
            .join(&name)
            .join("hosts")
            .exists(),
        "inventory left"
    );
}

fn boot_timeout_shows_log_and_cleans_up(_shared: &Lab) {
    // --timeout 0: the first readiness round cannot succeed (sshd needs seconds), so up fails.
    let home = tempfile::tempdir().unwrap();
    let name = format!("o{}", std::process::id());
    let out = Command::new(crate::support::ezk_bin())
        .arg("--home")
        .arg(home.path())
        .args(["lab", "up", &name, "--hosts", "2", "--timeout", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not ready after 0s") && err.contains("console log"),
        "{err}"
    );
    assert!(err.contains("removing lab"), "{err}");
    let lab_dir = crate::support::lab_root().join("labs").join(&name);
    assert!(
        nspawn_pids_under(&lab_dir).is_empty(),
        "host processes left"
    );
    assert!(!lab_dir.exists(), "state left");
    assert!(
        !home.path().join("clusters").join(&name).exists(),
        "cluster files left"
    );
}

/// (network, prefix length) of an IPv4 CIDR.
fn cidr(s: &str) -> (u32, u32) {
    let (a, len) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("not a CIDR: {s}"));
    (parse_ip(a), len.parse().unwrap())
}

fn parse_ip(s: &str) -> u32 {
    u32::from(
        s.parse::<std::net::Ipv4Addr>()
            .unwrap_or_else(|_| panic!("not an address: {s}")),
    )
}

fn contains((net, len): (u32, u32), a: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == net & mask
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    contains(a, b.0) || contains(b, a.0)
}
