//! Step 10 (ex-lb: haproxy + keepalived VIP) and chrony (in step 01) on a 5-host lab of its own
//! (issue 7): the lab layout puts etcd + masters on hosts 1–3, `ex_lb` on hosts 4 (LB_ROLE
//! master) and 5 (backup) holding EX_APISERVER_VIP, and the chrony server on host 1. It ends
//! with `ezk destroy` releasing the VIP. The lab is torn down at the end, also when an assertion
//! fails (dropping `Lab`).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::steps_support::{assert_nothing_changed, fill_store, setup_ok};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "steps::ex_lb_vip_failover_and_chrony_on_5_hosts",
    run: ex_lb_vip_failover_and_chrony,
}];

/// kube_master hosts (indices) and their SECURE_PORT; ex_lb master/backup; the LB port.
const MASTERS: [usize; 3] = [0, 1, 2];
const SECURE_PORT: u16 = 6443;
const LB_MASTER: usize = 3;
const LB_BACKUP: usize = 4;
const EX_APISERVER_PORT: u16 = 8443;

/// Connect to VIP:port and read what the backend said (a master's host name), or an error.
fn through_vip(vip: &str, port: u16) -> Result<String, String> {
    let addr: SocketAddr = format!("{vip}:{port}").parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.trim().to_string())
}

/// Until every master name was served through the VIP (haproxy's health checks bring backends
/// up after `rise` checks), at most `secs`.
fn assert_vip_reaches_every_master(lab: &Lab, secs: u64) {
    let want: Vec<&str> = MASTERS
        .iter()
        .map(|&i| lab.hosts[i].name.as_str())
        .collect();
    let mut seen: Vec<String> = Vec::new();
    let mut last = String::new();
    let start = Instant::now();
    while !want.iter().all(|w| seen.iter().any(|s| s == w)) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "through {}:{EX_APISERVER_PORT} only {seen:?} answered of {want:?} (last: {last})",
            lab.vip()
        );
        match through_vip(&lab.vip(), EX_APISERVER_PORT) {
            Ok(name) if want.contains(&name.as_str()) => {
                if !seen.contains(&name) {
                    seen.push(name);
                }
            }
            Ok(other) => last = format!("unexpected answer {other:?}"),
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

fn holds_vip(lab: &Lab, i: usize) -> bool {
    lab.sh(i, "ip -4 -o addr show dev host0")
        .contains(&format!(" {}/", lab.vip()))
}

fn ex_lb_vip_failover_and_chrony(_shared: &Lab) {
    let lab = Lab::up(&format!("lb{}", std::process::id()), 5).expect("5-host lab");
    // This lab's "apiservers" are stand-ins that answer TCP with their host name (see below):
    // haproxy checks them by TCP, not by HTTPS /readyz (kube_master's tests check that).
    let hosts = lab.cluster_dir().join("hosts");
    let mut inv = std::fs::read_to_string(&hosts).unwrap();
    inv.push_str("EX_LB_HEALTH_CHECK=\"tcp\"\n");
    std::fs::write(&hosts, inv).unwrap();
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let lb_ips = vec![ips[LB_MASTER].clone(), ips[LB_BACKUP].clone()];
    fill_store(&lab);

    // 01 on 5 hosts: chrony server on host 1, every other host its client.
    let r = setup_ok(&lab, "01", &[]);
    println!(
        "  timing: 01 prepare+chrony first run {:.1}s (5 hosts)",
        r.secs
    );
    let server = &ips[0];
    assert!(
        lab.sh(0, "cat /etc/chrony/chrony.conf")
            .contains("local stratum"),
        "host 1 is not a chrony server"
    );
    let start = Instant::now();
    for i in 1..5 {
        // A client lists the server as its only source and selects it (`^*`) once synced.
        loop {
            let sources = lab.sh(i, "chronyc -n sources");
            let lines: Vec<&str> = sources.lines().filter(|l| l.starts_with('^')).collect();
            assert_eq!(
                lines.len(),
                1,
                "{}: sources other than the chrony server:\n{sources}",
                lab.hosts[i].name
            );
            assert!(
                lines[0].contains(&format!(" {server} ")),
                "{}: {sources}",
                lab.hosts[i].name
            );
            if lines[0].starts_with("^*") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{} never synced to {server}:\n{sources}",
                lab.hosts[i].name
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    let r = setup_ok(&lab, "10", &[]);
    println!(
        "  timing: 10 ex-lb first run {:.1}s (2 ex_lb hosts)",
        r.secs
    );
    for ip in &lb_ips {
        assert!(r.count(ip, "changed") > 0, "{}", r.output);
    }
    assert!(
        r.recap["hosts"].get(&ips[0]).is_none(),
        "10 ran on a non-ex_lb host:\n{}",
        r.output
    );

    // Unit files (the package's units with our drop-ins, as systemd loads them) verify clean.
    for i in 0..5 {
        let out = lab.sh(i, "systemd-analyze verify --man=no chrony.service 2>&1");
        assert_eq!(
            out, "",
            "chrony.service (+ ezk drop-in) on {}",
            lab.hosts[i].name
        );
    }
    for i in [LB_MASTER, LB_BACKUP] {
        let out = lab.sh(
            i,
            "systemd-analyze verify --man=no haproxy.service keepalived.service 2>&1",
        );
        assert_eq!(out, "", "haproxy/keepalived units on {}", lab.hosts[i].name);
        lab.sh(
            i,
            "haproxy -c -q -f /etc/haproxy/haproxy.cfg && keepalived --config-test",
        );
    }

    // Second runs change nothing; plans show nothing.
    for step in ["01", "10"] {
        let r = setup_ok(&lab, step, &[]);
        println!("  timing: {step} re-run {:.1}s (5-host lab)", r.secs);
        let hosts = if step == "10" { &lb_ips } else { &ips };
        assert_nothing_changed(&r, hosts);
        let p = setup_ok(&lab, step, &["--plan"]);
        for ip in hosts {
            assert_eq!(
                p.plan(ip),
                Vec::<String>::new(),
                "--plan {step} after a run on {ip}"
            );
        }
    }
    // A variable change: the plan shows exactly that line of haproxy.cfg and the reload (the
    // one-shot that reloads haproxy: open connections survive).
    let cfg_before = lab.sh(LB_MASTER, "sha256sum /etc/haproxy/haproxy.cfg");
    let pid_before = lab.sh(LB_MASTER, "systemctl show -p MainPID --value haproxy");
    let p = setup_ok(&lab, "10", &["--plan", "-e", "EX_LB_MAXCONN=3000"]);
    for ip in &lb_ips {
        let (diff, actions) = p.plan_split(ip, "ex-lb");
        assert_eq!(
            diff,
            [
                "[ex-lb]     -    maxconn 4000",
                "[ex-lb]     +    maxconn 3000"
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(
            actions,
            [
                "[ex-lb] changed /etc/haproxy/haproxy.cfg",
                "[ex-lb] restart ezk-ex-lb-reload (haproxy config)"
            ],
            "{:#?}",
            p.plan(ip)
        );
    }
    assert_eq!(
        lab.sh(LB_MASTER, "sha256sum /etc/haproxy/haproxy.cfg"),
        cfg_before,
        "--plan changed haproxy.cfg"
    );
    assert_eq!(
        lab.sh(LB_MASTER, "systemctl show -p MainPID --value haproxy"),
        pid_before,
        "--plan reloaded haproxy"
    );

    // A stand-in apiserver on every master's SECURE_PORT: it answers with the host's name.
    for i in MASTERS {
        lab.sh(
            i,
            &format!("systemd-run --quiet --unit=ezk-test-apiserver socat TCP-LISTEN:{SECURE_PORT},fork,reuseaddr EXEC:/bin/hostname"),
        );
    }
    assert!(
        holds_vip(&lab, LB_MASTER),
        "the LB_ROLE=master host does not hold the VIP"
    );
    assert!(!holds_vip(&lab, LB_BACKUP), "the backup holds the VIP too");
    assert_vip_reaches_every_master(&lab, 20);

    // The LB dies on the VIP holder: keepalived's check (every 1 s, fall 2) drops its priority
    // below the backup's, which takes the VIP over; the VIP keeps forwarding.
    lab.sh(LB_MASTER, "systemctl stop haproxy");
    let start = Instant::now();
    while !holds_vip(&lab, LB_BACKUP) || holds_vip(&lab, LB_MASTER) {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the VIP did not move to the backup within 8 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  timing: VIP moved to the backup {:.1}s after haproxy stopped",
        start.elapsed().as_secs_f32()
    );
    assert_vip_reaches_every_master(&lab, 10);

    // Switching the LB to nginx (ezk's own l4lb.service): haproxy is stopped first (it holds
    // the port), the VIP forwards through l4lb, the unit verifies, a re-run changes nothing.
    let nginx = ["-e", "EX_LB_IMPL=nginx"];
    let r = setup_ok(&lab, "10", &nginx);
    println!("  timing: 10 switching to nginx {:.1}s", r.secs);
    for i in [LB_MASTER, LB_BACKUP] {
        assert_eq!(lab.sh(i, "systemctl is-active l4lb"), "active");
        assert_eq!(lab.sh(i, "systemctl is-active haproxy || true"), "inactive");
        assert_eq!(lab.sh(i, "systemctl is-enabled haproxy || true"), "disabled");
        let out = lab.sh(i, "systemd-analyze verify --man=no /etc/systemd/system/l4lb.service 2>&1");
        assert_eq!(out, "", "l4lb.service on {}", lab.hosts[i].name);
    }
    assert_vip_reaches_every_master(&lab, 20);
    assert_nothing_changed(&setup_ok(&lab, "10", &nginx), &lb_ips);

    // destroy: the VIP is released and nothing answers on the LB port; every LB unit is
    // stopped and disabled, ezk's l4lb unit and the keepalived config are gone; time sync stays.
    let out = lab.ezk(&["destroy", &lab.name, "--yes"]);
    assert!(out.status.success(), "destroy failed: {}", crate::steps_support::text(&out));
    for i in [LB_MASTER, LB_BACKUP] {
        assert!(!holds_vip(&lab, i), "{} holds the VIP after destroy", lab.hosts[i].name);
        for unit in ["keepalived", "haproxy", "l4lb"] {
            assert_eq!(lab.sh(i, &format!("systemctl is-active {unit} || true")), "inactive");
            assert_ne!(lab.sh(i, &format!("systemctl is-enabled {unit} 2>&1 || true")), "enabled");
        }
        assert_eq!(lab.sh(i, "systemctl show -p LoadState --value l4lb"), "not-found");
        lab.sh(i, "! test -e /etc/l4lb && ! test -e /etc/keepalived/keepalived.conf");
        assert_eq!(lab.sh(i, "systemctl is-active chrony"), "active");
    }
    assert!(
        through_vip(&lab.vip(), EX_APISERVER_PORT).is_err(),
        "the VIP still forwards after destroy"
    );

    let left = lab.down_and_check();
    assert!(left.is_empty(), "5-host lab left behind: {left:?}");
}
