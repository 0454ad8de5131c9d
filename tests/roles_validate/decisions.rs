//! What the rendering must decide, read from the rendered files: etcd and containerd options, the chrony
//! server/client split, VRRP roles and peers, a refused EX_LB_IMPL; and the rendered VRRP
//! interface detector run for real on loopback.

use std::path::Path;
use std::process::Command;

use crate::support::{FIRST_MASTER, LB_BACKUP, LB_MASTER, rendered};

#[test]
fn etcd_options_are_honoured() {
    let r = rendered();
    let unit = "/etc/systemd/system/etcd.service";
    let default = r.read("default", FIRST_MASTER, unit);
    let options = r.read("options", FIRST_MASTER, unit);
    assert!(
        !default.contains("--wal-dir"),
        "ETCD_WAL_DIR empty: no --wal-dir\n{default}"
    );
    assert!(default.contains("--initial-cluster-state=new"), "{default}");
    assert!(options.contains("--wal-dir=/var/lib/etcd-wal"), "{options}");
    assert!(
        options.contains("--initial-cluster-state=existing"),
        "{options}"
    );
    // Every member is in --initial-cluster, each by its peer URL.
    for ip in ["198.18.9.11", "198.18.9.12", "198.18.9.13"] {
        assert!(
            default.contains(&format!("=https://{ip}:2380")),
            "{ip} in --initial-cluster"
        );
    }
}

/// containerd: its options reach config.toml as containerd decodes it; INSECURE_REG and the
/// docker.io mirrors become one certs.d/<registry host>/hosts.toml each, and none by default.
#[test]
fn containerd_options_are_honoured() {
    let Some(containerd) = crate::support::tool("containerd", "containerd config dump") else {
        return;
    };
    let r = rendered();
    let conf = "/etc/containerd/config.toml";
    let decoded = |variant: &str| {
        let f = r.variant(variant).join(LB_BACKUP).join(conf.trim_start_matches('/'));
        crate::containerd::toml_keys(&crate::containerd::dump(&containerd, &f).unwrap())
    };
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let key = |s: &str, k: &str| (s.to_string(), k.to_string());
    let d = decoded("default");
    // The lab inventory's values (its hosts file wins over config.yml): storage on the host's
    // own-filesystem dir, the locally made pause image, no negative oom_score_adj.
    assert_eq!(d[&key("", "root")], "\"/var/lib/ezk-lab-disk/containerd\"");
    assert_eq!(d[&key(cri, "sandbox_image")], "\"ezk.local/pause:3.4\"", "the lab's SANDBOX_IMAGE");
    assert_eq!(d[&key(cri, "restrict_oom_score_adj")], "true");
    assert_eq!(d[&key(&format!("{cri}.containerd"), "snapshotter")], "\"overlayfs\"");
    assert_eq!(d[&key(&format!("{cri}.containerd.runtimes.runc.options"), "SystemdCgroup")], "true");
    assert_eq!(d[&key(&format!("{cri}.registry"), "config_path")], "\"/etc/containerd/certs.d\"");
    let o = decoded("options");
    assert_eq!(o[&key("", "root")], "\"/data/containerd\"");
    assert_eq!(o[&key(cri, "sandbox_image")], "\"reg.example.test:5000/pause:3.10\"");
    assert_eq!(o[&key(&format!("{cri}.containerd"), "snapshotter")], "\"native\"");
    assert_eq!(o[&key(cri, "restrict_oom_score_adj")], "false");

    let certs = |variant: &str| -> Vec<String> {
        let dir = r.variant(variant).join(LB_BACKUP).join("etc/containerd/certs.d");
        let mut found = Vec::new();
        crate::support::walk(&dir, &mut |p| {
            found.push(p.strip_prefix(&dir).unwrap().display().to_string())
        });
        found.sort();
        found
    };
    assert_eq!(certs("default"), Vec::<String>::new());
    assert_eq!(
        certs("options"),
        [
            "docker.io/hosts.toml",
            "ezk.local/hosts.toml",
            "harbor.example.test/hosts.toml",
            "reg.example.test:5000/hosts.toml",
            "registry.k8s.io/hosts.toml",
        ],
        "IMAGE_DELIVERY=registry: one per registry of the lab's PRELOAD_IMAGES"
    );
    // Pulls of ezk.local's images go to the registry on the first master, trusted by the CA.
    let local = r.read("options", LB_BACKUP, "/etc/containerd/certs.d/ezk.local/hosts.toml");
    let local = crate::containerd::toml_keys(&local);
    let host = "host.\"https://198.18.9.11:5000/v2/ezk.local\"";
    assert_eq!(local[&key(host, "override_path")], "true");
    assert_eq!(local[&key(host, "ca")], "\"/etc/kubernetes/ssl/ca.pem\"");
    assert!(!local.contains_key(&key("", "server")), "a miss goes on to ezk.local itself");
    // A registry INSECURE_REG names keeps the hosts.toml INSECURE_REG writes (one writer).
    let k8s = r.read("options", LB_BACKUP, "/etc/containerd/certs.d/registry.k8s.io/hosts.toml");
    let k8s = crate::containerd::toml_keys(&k8s);
    assert_eq!(k8s[&key("host.\"https://registry.k8s.io\"", "skip_verify")], "true");
    assert!(!k8s.keys().any(|(section, _)| section.contains(":5000/v2/")), "{k8s:?}");
    // The registry host serves the store's images from its storage, read-only, over TLS.
    let conf = r.read("options", "198.18.9.11", "/etc/ezk-registry/config.yml");
    assert!(conf.contains("readonly:\n      enabled: true") && conf.contains("addr: \":5000\""), "{conf}");
    let storage = r.variant("options").join("198.18.9.11/var/lib/ezk-registry/docker/registry/v2");
    let busybox = storage.join("repositories/ezk.local/busybox/_manifests/tags/1.35.0/current/link");
    let manifest = std::fs::read_to_string(&busybox).unwrap();
    let hex = manifest.trim_start_matches("sha256:");
    assert!(storage.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])).is_file(), "{manifest}");
    assert!(!r.variant("options").join("198.18.9.12/var/lib/ezk-registry").exists(), "one registry host");
    let reg = r.read("options", LB_BACKUP, "/etc/containerd/certs.d/reg.example.test:5000/hosts.toml");
    let reg = crate::containerd::toml_keys(&reg);
    assert_eq!(reg[&key("", "server")], "\"http://reg.example.test:5000\"");
    assert_eq!(reg[&key("host.\"http://reg.example.test:5000\"", "skip_verify")], "true");
    let hub = r.read("options", LB_BACKUP, "/etc/containerd/certs.d/docker.io/hosts.toml");
    let mirrors: Vec<&str> = hub.lines().filter(|l| l.starts_with("[host.")).collect();
    assert_eq!(
        mirrors,
        ["[host.\"https://mirror-a.example.test\"]", "[host.\"https://mirror-b.example.test\"]"],
        "mirrors in the order given:\n{hub}"
    );
    // The lab set has no crictl (INSTALL_CRICTL=false in the lab inventory): no crictl.yaml.
    assert!(!r.variant("default").join(LB_BACKUP).join("etc/crictl.yaml").exists());
}

/// The first chrony host serves (also without upstream); every other host syncs from it only.
#[test]
fn chrony_server_on_the_first_chrony_host_and_clients_use_it() {
    let r = rendered();
    let server = r.read("default", FIRST_MASTER, "/etc/chrony/chrony.conf");
    assert!(server.lines().any(|l| l == "local stratum 10"), "{server}");
    assert!(server.lines().any(|l| l.starts_with("allow ")), "{server}");
    let options = r.read("options", FIRST_MASTER, "/etc/chrony/chrony.conf");
    assert!(
        options.lines().any(|l| l == "allow 198.18.9.0/24"),
        "local_network:\n{options}"
    );
    for host in ["198.18.9.12", LB_BACKUP] {
        let client = r.read("default", host, "/etc/chrony/chrony.conf");
        let servers: Vec<&str> = client
            .lines()
            .filter(|l| l.starts_with("server ") || l.starts_with("pool "))
            .collect();
        assert_eq!(servers, ["server 198.18.9.11 iburst"], "{host}:\n{client}");
        assert!(
            !client.contains("allow") && !client.contains("local stratum"),
            "{host}:\n{client}"
        );
    }
    // CHRONY_SET_CLOCK=false (the lab) adds the no-clock drop-in; true leaves the package's unit.
    let dropin = "etc/systemd/system/chrony.service.d/10-ezk-no-clock.conf";
    assert!(r.variant("default").join(LB_BACKUP).join(dropin).exists());
    assert!(!r.variant("options").join(LB_BACKUP).join(dropin).exists());
}

/// VRRP: MASTER on LB_ROLE=master, BACKUP below it, each unicasting to the other LB only, the
/// VIP and the LB check in both; the single-LB case has no peers.
#[test]
fn keepalived_master_backup_and_unicast_peers() {
    let r = rendered();
    let conf = "/etc/keepalived/keepalived.conf";
    let master = r.read("default", LB_MASTER, conf);
    let backup = r.read("default", LB_BACKUP, conf);
    let peers = |t: &str| -> Vec<String> {
        let block = t
            .split("unicast_peer {")
            .nth(1)
            .map(|b| b.split('}').next().unwrap())
            .unwrap_or("");
        block.split_whitespace().map(String::from).collect()
    };
    assert!(
        master.contains("state MASTER") && master.contains("priority 120"),
        "{master}"
    );
    assert!(
        backup.contains("state BACKUP") && backup.contains("priority 99"),
        "{backup}"
    );
    assert_eq!(peers(&master), [LB_BACKUP]);
    assert_eq!(peers(&backup), [LB_MASTER]);
    for t in [&master, &backup] {
        assert!(t.contains("198.18.9.250"), "VIP:\n{t}");
        assert!(
            t.contains("systemctl is-active --quiet haproxy"),
            "LB check:\n{t}"
        );
    }
    let nginx = r.read("nginx", LB_MASTER, conf);
    assert!(
        nginx.contains("systemctl is-active --quiet l4lb"),
        "{nginx}"
    );
    let one = r.read("one-lb", "198.18.9.12", conf);
    assert!(peers(&one).is_empty(), "{one}");
    let options = r.read("options", LB_MASTER, conf);
    assert!(
        !options.contains("include /etc/keepalived/ezk-lb-if.conf"),
        "LB_IF set: no detection\n{options}"
    );
}

#[test]
fn an_unknown_ex_lb_impl_is_refused_by_name() {
    let (code, text) = &rendered().envoy;
    assert_ne!(*code, 0, "EX_LB_IMPL=envoy rendered:\n{text}");
    assert!(
        text.contains("EX_LB_IMPL_must_be_haproxy_or_nginx"),
        "{text}"
    );
}

/// The rendered detector, run here: the interface holding an address (127.0.0.1 → lo), its
/// `--check` (the task's `unless`) true only for the exact content, and an address nobody holds
/// is an error, not an empty interface.
#[test]
fn lb_if_detector_finds_the_interface_of_an_address() {
    let r = rendered();
    let det = r
        .variant("default")
        .join(LB_MASTER)
        .join("etc/keepalived/ezk-detect-lb-if");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lb-if.conf");
    let run = |args: &[&str], file: &Path| {
        Command::new("sh")
            .arg(&det)
            .args(args)
            .arg(file)
            .status()
            .unwrap()
            .success()
    };
    assert!(run(&["127.0.0.1"], &out), "detector failed for 127.0.0.1");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "$LB_IF=lo\n");
    assert!(run(&["--check", "127.0.0.1"], &out));
    assert!(!run(
        &["--check", "127.0.0.1"],
        &tmp.path().join("none.conf")
    ));
    std::fs::write(&out, "$LB_IF=eth9\n").unwrap();
    assert!(
        !run(&["--check", "127.0.0.1"], &out),
        "--check accepted a stale interface"
    );
    let nobody = tmp.path().join("x.conf");
    assert!(
        !run(&["127.255.255.254"], &nobody),
        "an address held by no interface was accepted"
    );
}
