//! The shipped roles (steps 01 prepare, 02 etcd, 03 runtime, 10 ex-lb, chrony), rendered by
//! `ezk render` for the 5-host lab inventory, checked file by file with the program that will read each file on
//! a host, as installed on this deploy machine: `systemd-analyze verify` (units and drop-ins, in
//! a temporary root), `haproxy -c`, `nginx -t` (stream module), `keepalived -t`, `chronyd -p`,
//! `sh -n`, `containerd config dump`; sysctl keys against this kernel, journald/system.conf
//! keys against the daemons' own parser tables, etcd flags against the pushed etcd's `--help`. Plus what the rendering must
//! decide (chrony server/clients, VRRP master/backup and peers, TLS-only etcd, options honoured)
//! and the VRRP interface detector run for real on loopback.
//!
//! Running the services on real hosts (etcd cluster over TLS, LB forwarding, VIP failover) is
//! the lab suite's part (tests/lab); nothing here starts a service or touches the network.
//! A check whose tool is missing says so and passes (tests/deps.sh installs the tools).

#[path = "../common/mod.rs"]
mod common;
mod containerd;
mod decisions;
mod support;
mod units;

use std::path::Path;
use std::process::Command;

use support::{FIRST_MASTER, Rendered, label, quiet_ok, rendered, tool};

/// Run `check` on each file, collecting every failure (not just the first).
fn each(r: &Rendered, files: &[std::path::PathBuf], check: impl Fn(&Path) -> Result<(), String>) {
    assert!(!files.is_empty(), "nothing rendered to check");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", label(r, f))))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn systemd_accepts_every_rendered_unit_and_drop_in() {
    let Some(sa) = tool("systemd-analyze", "systemd-analyze verify") else {
        return;
    };
    let r = rendered();
    let checked = units::verify_all(r, &sa);
    // etcd.service (default, options), l4lb.service (nginx), chrony's drop-in (default).
    for want in [
        "default/198.18.9.11 etcd.service",
        "nginx/198.18.9.14 l4lb.service",
        "default/198.18.9.15 chrony.service",
        "default/198.18.9.14 containerd.service",
        "default/198.18.9.11 kube-apiserver.service",
        "default/198.18.9.11 kube-controller-manager.service",
        "default/198.18.9.11 kube-scheduler.service",
        "default/198.18.9.14 kubelet.service",
        "default/198.18.9.14 kube-proxy.service",
        "default/198.18.9.14 kube-lb.service",
        "default/198.18.9.14 ezk-host-gw.service",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "not verified: {want} (verified: {checked:?})"
        );
    }
}

#[test]
fn containerd_reads_every_rendered_config() {
    let Some(containerd) = tool("containerd", "containerd config dump") else {
        return;
    };
    let r = rendered();
    each(r, &r.files("/etc/containerd/config.toml"), |f| containerd::check(&containerd, f));
}

#[test]
fn haproxy_accepts_every_rendered_config() {
    let Some(haproxy) = tool("haproxy", "haproxy -c") else {
        return;
    };
    let r = rendered();
    each(r, &r.files("/etc/haproxy/haproxy.cfg"), |f| {
        // Not -q: its ALERT lines say what is wrong; NOTICE lines (version) are chatter.
        let out = Command::new(&haproxy)
            .args(["-c", "-f"])
            .arg(f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !err.contains("[WARNING]") && !err.contains("[ALERT]") {
            Ok(())
        } else {
            Err(format!("{}\n{err}", out.status))
        }
    });
}

#[test]
fn nginx_accepts_every_rendered_stream_config() {
    let Some(nginx) = tool("nginx", "nginx -t") else {
        return;
    };
    let r = rendered();
    let files = r.files("/etc/l4lb/l4lb.conf");
    assert_eq!(
        files.len(),
        2,
        "the nginx variant has two ex_lb hosts: {files:?}"
    );
    each(r, &files, |f| {
        quiet_ok(Command::new(&nginx).args(["-q", "-t", "-c"]).arg(f))
    });
    // kube-lb: every node of the default variant.
    let kube_lb = r.files("/etc/kube-lb/kube-lb.conf");
    assert!(kube_lb.len() >= 5, "kube-lb on every node: {kube_lb:?}");
    each(r, &kube_lb, |f| {
        quiet_ok(Command::new(&nginx).args(["-q", "-t", "-c"]).arg(f))
    });
}

#[test]
fn keepalived_accepts_every_rendered_config() {
    let Some(keepalived) = tool("keepalived", "keepalived -t") else {
        return;
    };
    let r = rendered();
    let Some(iface) = &r.iface else {
        eprintln!("SKIPPED keepalived -t: this machine has no network interface but lo");
        return;
    };
    // What the role's detector writes on a host, naming an interface that exists here.
    let tmp = tempfile::tempdir().unwrap();
    let lb_if = tmp.path().join("ezk-lb-if.conf");
    std::fs::write(&lb_if, format!("$LB_IF={iface}\n")).unwrap();
    let files = r.files("/etc/keepalived/keepalived.conf");
    // default, nginx, options: two LBs each; one-lb: a single LB without peers.
    assert_eq!(files.len(), 7, "{files:?}");
    each(r, &files, |f| {
        let text = std::fs::read_to_string(f).unwrap();
        let conf = tmp.path().join("keepalived.conf");
        std::fs::write(
            &conf,
            text.replace("/etc/keepalived/ezk-lb-if.conf", &lb_if.to_string_lossy()),
        )
        .unwrap();
        let out = Command::new(&keepalived)
            .args(["-t", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if out.status.success() && said.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {said}", out.status))
        }
    });
}

#[test]
fn chronyd_parses_every_rendered_config() {
    let Some(chronyd) = tool("chronyd", "chronyd -p") else {
        return;
    };
    let r = rendered();
    each(r, &r.files("/etc/chrony/chrony.conf"), |f| {
        // -d: errors to stderr instead of syslog.
        quiet_ok(Command::new(&chronyd).args(["-p", "-d", "-f"]).arg(f))
    });
}

#[test]
fn shell_files_parse() {
    let Some(sh) = tool("sh", "sh -n") else {
        return;
    };
    let r = rendered();
    let mut files = r.files(".sh");
    files.extend(r.files("/etc/keepalived/ezk-detect-lb-if"));
    each(r, &files, |f| quiet_ok(Command::new(&sh).arg("-n").arg(f)));
}

/// A mistyped key would be refused on every host. (net.bridge.* exists only while br_netfilter
/// is loaded; the prepare role loads it on hosts, and a lab machine has it loaded.)
#[test]
fn every_sysctl_key_exists_in_this_kernel() {
    let r = rendered();
    let mut keys = std::collections::BTreeSet::new();
    for plan in r.files("/PLAN.txt") {
        for line in std::fs::read_to_string(&plan).unwrap().lines() {
            // "[01.prepare] prepare: sysctl /etc/sysctl.d/x.conf: k=v k=v1 v2 …    # name (origin)"
            let Some((_, rest)) = line.split_once(": sysctl ") else {
                continue;
            };
            let entries = rest.split("    # ").next().unwrap();
            let (_, entries) = entries.split_once(": ").unwrap();
            keys.extend(
                entries
                    .split_whitespace()
                    .filter_map(|t| t.split_once('='))
                    .map(|(k, _)| k.to_string()),
            );
        }
    }
    assert!(
        keys.contains("net.ipv4.ip_forward") && keys.contains("net.ipv4.ip_nonlocal_bind"),
        "{keys:?}"
    );
    let unknown: Vec<&String> = keys
        .iter()
        .filter(|k| !Path::new("/proc/sys").join(k.replace('.', "/")).exists())
        .collect();
    assert!(
        unknown.is_empty(),
        "sysctl keys this kernel does not have: {unknown:?}"
    );
}

/// systemd ignores (with a log line) a key it does not know; its config parsers look keys up in
/// tables compiled into the daemons, so every key must be one of those strings.
#[test]
fn systemd_drop_in_keys_are_known_to_the_daemons() {
    let r = rendered();
    let cases = [
        (
            "/etc/systemd/journald.conf.d/95-k8s-journald.conf",
            "/lib/systemd/systemd-journald",
            "Journal.",
        ),
        (
            "/etc/systemd/system.conf.d/30-k8s-ulimits.conf",
            "/lib/systemd/systemd",
            "",
        ),
    ];
    for (file, daemon, prefix) in cases {
        let Ok(table) = std::fs::read(daemon) else {
            eprintln!("SKIPPED keys of {file}: {daemon} is not on this machine");
            continue;
        };
        let text = r.read("default", FIRST_MASTER, file);
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        assert!(!keys.is_empty(), "{file}: no keys");
        for k in keys {
            let needle = format!("\0{prefix}{k}\0");
            assert!(
                table.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{file}: key {k} is unknown to {daemon}"
            );
        }
    }
}

/// Every flag of the rendered ExecStart is a current flag of the etcd the role pushes (its own
/// `--help`; not one of its deprecated or v2-proxy flags); TLS only, certificates required.
#[test]
fn etcd_units_use_current_flags_and_tls_only() {
    let r = rendered();
    let etcd = r
        .variant("default")
        .join(FIRST_MASTER)
        .join("opt/kube/bin/etcd");
    let help = Command::new(&etcd).arg("--help").output().unwrap();
    let help =
        String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    let mut current = std::collections::HashSet::new();
    let mut section_ok = true;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section_ok = !line.to_lowercase().contains("deprecated");
        } else if let Some(flag) = line.strip_prefix("  --")
            && section_ok
        {
            current.insert(flag.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    assert!(
        current.contains("listen-client-urls"),
        "unexpected etcd --help:\n{help}"
    );
    for unit in r.files("/etc/systemd/system/etcd.service") {
        let text = std::fs::read_to_string(&unit).unwrap();
        let at = label(r, &unit);
        let flags: Vec<(&str, &str)> = text
            .split_whitespace()
            .filter_map(|t| t.strip_prefix("--"))
            .map(|t| t.split_once('=').unwrap_or((t, "")))
            .collect();
        for (flag, _) in &flags {
            assert!(
                current.contains(*flag),
                "{at}: --{flag} is not a current flag of the pushed etcd"
            );
        }
        for (flag, value) in &flags {
            if flag.ends_with("-urls") {
                assert!(
                    value.split(',').all(|u| u.starts_with("https://")),
                    "{at}: --{flag}={value}"
                );
            }
        }
        for need in ["client-cert-auth", "peer-client-cert-auth"] {
            assert!(
                flags.contains(&(need, "true")),
                "{at}: --{need}=true missing"
            );
        }
    }
}
