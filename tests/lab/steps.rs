//! Steps 01 prepare and 02 etcd, run for real with ezk's CLI on the shared 3-host lab (issue 7):
//! a TLS-only etcd cluster that answers etcdctl from this machine, unit files systemd accepts,
//! second runs that change nothing, and plans that say exactly what a variable change would do.
//!
//! Tests run in the order listed on one cluster: the store is filled once, 01 and 02 run once
//! (`ensure_etcd_cluster` does it for whichever test runs first, so filters work too).
//! Hosts failing partway: `steps_fail.rs`; step 10 (ex-lb) and chrony on 5 hosts: `steps_lb.rs`.

use std::process::{Command, Stdio};

use crate::steps_support::*;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test {
        name: "steps::prepare_then_etcd_tls_cluster",
        run: prepare_then_etcd_tls_cluster,
    },
    Test {
        name: "steps::etcd_no_plaintext_listener",
        run: etcd_no_plaintext_listener,
    },
    Test {
        name: "steps::etcd_unit_passes_systemd_verify",
        run: etcd_unit_passes_systemd_verify,
    },
    Test {
        name: "steps::second_run_changes_nothing_and_plans_nothing",
        run: second_run_changes_nothing_and_plans_nothing,
    },
    Test {
        name: "steps::plan_after_var_change_is_exact_and_applies_nothing",
        run: plan_after_var_change_is_exact_and_applies_nothing,
    },
    Test {
        name: "steps::limit_touches_only_the_selected_hosts",
        run: limit_touches_only_the_selected_hosts,
    },
];

fn prepare_then_etcd_tls_cluster(lab: &Lab) {
    fill_store(lab);
    let ips = etcd_ips(lab);
    let r = setup_ok(lab, "01", &[]);
    println!("  timing: 01 prepare first run {:.1}s (3 hosts)", r.secs);
    for ip in &ips {
        assert!(
            r.count(ip, "changed") > 0,
            "01 changed nothing on {ip}:\n{}",
            r.output
        );
    }
    // What 01 leaves that users rely on: dirs, the CA, kubectl + admin kubeconfig on masters.
    for i in 0..3 {
        lab.sh(
            i,
            "test -d /opt/kube/bin && test -s /etc/kubernetes/ssl/ca.pem",
        );
        lab.sh(
            i,
            "test -x /opt/kube/bin/kubectl && test -s /root/.kube/config",
        );
        assert_eq!(lab.sh(i, "swapon --show --noheadings | wc -l"), "0");
        // The kernel settings file is applied where the container's kernel allows it.
        assert_eq!(lab.sh(i, "sysctl -n net.ipv4.ip_forward"), "1");
        lab.sh(i, "grep -Eq '^net[.]ipv4[.]ip_forward ?= ?1$' /etc/sysctl.d/95-k8s-sysctl.conf");
    }
    let r = setup_ok(lab, "02", &[]);
    println!("  timing: 02 etcd first run {:.1}s (3 members)", r.secs);
    for (i, ip) in ips.iter().enumerate() {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
        assert_eq!(lab.sh(i, "systemctl is-active etcd"), "active");
        assert_eq!(lab.sh(i, "systemctl is-enabled etcd"), "enabled");
        assert_eq!(
            lab.sh(i, "stat -c %a /etc/kubernetes/ssl/etcd-key.pem"),
            "600"
        );
    }
    assert_cluster_healthy(lab, &ips[0], &ips, 5);
    assert_put_get(lab, &ips[0], &ips[1], "written-on-member-1");
    assert_put_get(lab, &ips[2], &ips[0], "written-on-member-3");
}

/// No etcd port answers plaintext; each answers TLS with the cluster's client certificate.
fn etcd_no_plaintext_listener(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ssl = lab.cluster_dir().join("ssl");
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "-m", "5"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("curl runs")
    };
    let file = |f: &str| ssl.join(f).display().to_string();
    let (ca, cert, key) = (
        file("etcd-ca.pem"),
        file("etcd-client.pem"),
        file("etcd-client-key.pem"),
    );
    let tls = vec![
        "--cacert",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];
    for (i, ip) in etcd_ips(lab).iter().enumerate() {
        // Exactly these sockets belong to etcd: nothing else (no metrics or plaintext port).
        let mut socks: Vec<String> = lab
            .sh(i, "ss -Hltnp | grep '\"etcd\"' | awk '{print $4}'")
            .lines()
            .map(String::from)
            .collect();
        socks.sort();
        let mut want = vec![
            format!("127.0.0.1:2379"),
            format!("{ip}:2379"),
            format!("{ip}:2380"),
        ];
        want.sort();
        assert_eq!(socks, want, "etcd listening sockets on {ip}");
        for (port, path) in [(2379, "/health"), (2380, "/version")] {
            let out = curl(&[&format!("http://{ip}:{port}{path}")]);
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                !out.status.success() && !body.contains("health") && !body.contains("etcd"),
                "plaintext http://{ip}:{port}{path} answered: {}",
                text(&out)
            );
            let mut args = tls.clone();
            let url = format!("https://{ip}:{port}{path}");
            args.extend(["--http1.1", url.as_str()]);
            let out = curl(&args);
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "TLS {url} failed: {}", text(&out));
            assert!(
                body.contains(if port == 2379 {
                    "\"health\":\"true\""
                } else {
                    "etcdserver"
                }),
                "{url}: {body}"
            );
            // Without a client certificate the member refuses (client-cert-auth on both ports).
            let out = curl(&["--cacert", ca.as_str(), "--http1.1", url.as_str()]);
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("true")
                    && !String::from_utf8_lossy(&out.stdout).contains("etcdserver"),
                "{url} answered without a client cert"
            );
        }
        // The loopback client listener is TLS too.
        let out = lab.ssh(i, "curl -sS -m 5 http://127.0.0.1:2379/health");
        assert!(
            !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("health"),
            "plaintext http://127.0.0.1:2379 on {ip} answered: {}",
            text(&out)
        );
    }
}

/// `systemd-analyze verify` on the host accepts the etcd unit (and prints nothing).
fn etcd_unit_passes_systemd_verify(lab: &Lab) {
    ensure_etcd_cluster(lab);
    for i in 0..3 {
        let out = lab.sh(
            i,
            "systemd-analyze verify --man=no /etc/systemd/system/etcd.service 2>&1",
        );
        assert_eq!(
            out, "",
            "systemd-analyze verify etcd.service on {}",
            lab.hosts[i].name
        );
    }
}

fn second_run_changes_nothing_and_plans_nothing(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    for step in ["01", "02"] {
        let r = setup_ok(lab, step, &[]);
        println!("  timing: {step} re-run {:.1}s", r.secs);
        assert_nothing_changed(&r, &ips);
        let p = setup_ok(lab, step, &["--plan"]);
        assert_eq!(p.recap["plan_only"], true);
        for ip in &ips {
            assert_eq!(
                p.plan(ip),
                Vec::<String>::new(),
                "--plan {step} after a run on {ip}"
            );
            assert_eq!(p.count(ip, "changed"), 0);
        }
    }
}

fn plan_after_var_change_is_exact_and_applies_nothing(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    let before: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                lab.sh(i, "sha256sum /etc/systemd/system/etcd.service"),
                lab.sh(i, "systemctl show -p MainPID --value etcd"),
            )
        })
        .collect();
    let leader = etcd_leader(lab, &ips);
    let p = setup_ok(lab, "02", &["--plan", "-e", "ETCD_SNAPSHOT_COUNT=40000"]);
    for (i, ip) in ips.iter().enumerate() {
        // The leader's restart waits for the others' (one leader change, to a restarted member).
        let mut want = vec!["[etcd] changed /etc/systemd/system/etcd.service", "[etcd] systemctl daemon-reload", "[etcd] restart etcd (etcd unit file)"];
        if *ip == leader {
            want.push("[etcd] restarts after the other hosts of this role (its restart_last_if holds: for etcd, it leads)");
        }
        let (diff, actions) = p.plan_split(ip, "etcd");
        assert_eq!(
            diff,
            [
                "[etcd]     -  --snapshot-count=50000 \\",
                "[etcd]     +  --snapshot-count=40000 \\"
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(actions, want, "{:#?}", p.plan(ip));
        let now = (
            lab.sh(i, "sha256sum /etc/systemd/system/etcd.service"),
            lab.sh(i, "systemctl show -p MainPID --value etcd"),
        );
        assert_eq!(
            now, before[i],
            "--plan changed the unit file or restarted etcd on {ip}"
        );
        assert!(etcd_cmdline(lab, i).contains("--snapshot-count=50000 "));
    }
    // The same -e for 01 touches nothing there (etcd variables only reach the etcd role).
    let p = setup_ok(lab, "01", &["--plan", "-e", "ETCD_SNAPSHOT_COUNT=40000"]);
    for ip in &ips {
        assert_eq!(p.plan(ip), Vec::<String>::new());
    }
    // 01: a journald limit changes that one line of the drop-in and restarts journald.
    let conf = "/etc/systemd/journald.conf.d/95-k8s-journald.conf";
    let journald = |i: usize| {
        (
            lab.sh(i, &format!("sha256sum {conf}")),
            lab.sh(i, "systemctl show -p MainPID --value systemd-journald"),
        )
    };
    let before: Vec<_> = (0..3).map(journald).collect();
    let p = setup_ok(lab, "01", &["--plan", "-e", "JOURNALD_MAX_USE=1G"]);
    for (i, ip) in ips.iter().enumerate() {
        let (diff, actions) = p.plan_split(ip, "prepare");
        assert_eq!(
            diff,
            [
                "[prepare]     -SystemMaxUse=2G",
                "[prepare]     +SystemMaxUse=1G"
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(
            actions,
            [
                format!("[prepare] changed {conf}").as_str(),
                "[prepare] restart systemd-journald (journald settings)"
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(
            journald(i),
            before[i],
            "--plan changed {conf} or restarted journald on {ip}"
        );
    }
}

/// `--limit`: only the selected hosts are contacted and changed; `!host` leaves one out; a name
/// that matches nothing stops the run before any connection.
fn limit_touches_only_the_selected_hosts(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let ips = etcd_ips(lab);
    let conf = "/etc/systemd/journald.conf.d/95-k8s-journald.conf";
    let sums = || -> Vec<String> { (0..3).map(|i| lab.sh(i, &format!("sha256sum {conf}"))).collect() };
    let hosts_of = |r: &Run| -> Vec<String> {
        let mut h: Vec<String> = r.recap["hosts"].as_object().unwrap().keys().cloned().collect();
        h.sort();
        h
    };
    let before = sums();
    let r = setup_ok(lab, "01", &["--limit", &ips[1], "-e", "JOURNALD_MAX_USE=1G"]);
    assert_eq!(hosts_of(&r), [ips[1].clone()], "{}", r.output);
    assert!(r.count(&ips[1], "changed") > 0, "{}", r.output);
    let after = sums();
    assert_ne!(after[1], before[1]);
    assert_eq!((&after[0], &after[2]), (&before[0], &before[2]), "a host outside --limit changed");

    let not1 = format!("!{}", ips[1]);
    let r = setup_ok(lab, "01", &["--limit", &not1, "-e", "JOURNALD_MAX_USE=1G"]);
    assert_eq!(hosts_of(&r), [ips[0].clone(), ips[2].clone()], "{}", r.output);
    assert!(r.count(&ips[0], "changed") > 0 && r.count(&ips[2], "changed") > 0, "{}", r.output);

    let logs = || std::fs::read_dir(lab.cluster_dir().join("logs")).map(|d| d.count()).unwrap_or(0);
    let n = logs();
    let out = lab.ezk(&["setup", &lab.name, "01", "--limit", "kube_nodes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("\"kube_nodes\" names no group or host"), "{}", text(&out));
    assert_eq!(logs(), n, "a run started despite a --limit that matches nothing");

    // Back to the inventory's settings everywhere.
    let r = setup_ok(lab, "01", &[]);
    for ip in &ips {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
    }
    assert_eq!(sums(), before);
}
