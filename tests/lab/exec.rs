//! The executor on real systemd hosts: `ezk::exec::run_step` over SSH to the lab, a role that
//! templates files, installs a unit and starts it; no-op re-runs; `--plan` diffs; a connection
//! killed mid-upload; a host that went away before the run.

use std::process::{Command, Stdio};
use std::time::Duration;

use ezk::exec::{Options, run_step};
use ezk::exec::Connection;
use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, StepPlan, Task, UnitState, WaitTarget, Wave};
use ezk::ui::recap::Recap;
use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::support::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "exec::unit_role_converges_then_noop_then_exact_plan", run: unit_role_converges_then_noop_then_exact_plan },
    Test { name: "exec::killed_mid_upload_never_partial", run: killed_mid_upload_never_partial },
    Test { name: "exec::stopped_host_unreachable_others_complete", run: stopped_host_unreachable_others_complete },
    Test { name: "exec::non_root_user_with_become_uses_sudo", run: non_root_user_with_become_uses_sudo },
    Test { name: "exec::restart_owed_by_a_killed_apply_happens_next_run", run: restart_owed_by_a_killed_apply_happens_next_run },
];

const DIR: &str = "/opt/ezk-demo";
const UNIT: &str = "ezk-demo.service";

pub fn conns(lab: &Lab) -> IndexMap<String, Connection> {
    lab.hosts
        .iter()
        .map(|h| {
            let c = Connection { address: h.ip.clone(), port: 22, user: "root".into(), key_file: Some(lab.key()), become_root: false, jump: None };
            (h.name.clone(), c)
        })
        .collect()
}

fn t(name: &str, action: Action, notify: &[&str]) -> Task {
    Task { name: name.into(), origin: format!("roles/demo/tasks.yml ({name})"), action, notify: notify.iter().map(|s| s.to_string()).collect() }
}

fn f(path: &str, content: &str, mode: u32, secret: bool) -> Action {
    Action::File(FileSpec { path: path.into(), content: Content::Inline(content.as_bytes().into()), mode, owner: "root".into(), group: "root".into(), secret })
}

/// The demo role: 14 tasks (files, a secret, a unit, sysctl, modprobe, service, guards, waits).
pub fn demo_role(host: &str, greeting: &str) -> HostRolePlan {
    let unit = format!(
        "[Unit]\nDescription=ezk demo\n\n[Service]\nEnvironmentFile={DIR}/demo.conf\nExecStart=/bin/sh -c 'echo \"$GREETING\"; exec sleep infinity'\n\n[Install]\nWantedBy=multi-user.target\n"
    );
    let tasks = vec![
        t("dir", Action::Directory { path: DIR.into(), mode: 0o755, owner: "root".into(), group: "root".into() }, &[]),
        t("config", f(&format!("{DIR}/demo.conf"), &format!("# demo\nHOST={host}\nGREETING={greeting}\nLEVEL=info\n"), 0o644, false), &[UNIT]),
        t("token", f(&format!("{DIR}/token"), &format!("secret-{greeting}\n"), 0o600, true), &[UNIT]),
        t("unit", f(&format!("/etc/systemd/system/{UNIT}"), &unit, 0o644, false), &[UNIT]),
        t("link", Action::Link { path: format!("{DIR}/current.conf"), target: format!("{DIR}/demo.conf") }, &[]),
        t("no old", Action::Absent { path: format!("{DIR}/old") }, &[]),
        t(
            "sysctl",
            Action::Sysctl {
                file: "/etc/sysctl.d/95-ezk-demo.conf".into(),
                // net.* is per network namespace (settable in a lab host); kernel.pid_max is not.
                entries: vec![("net.ipv4.tcp_keepalive_time".into(), "600".into()), ("kernel.pid_max".into(), "4194303".into())],
            },
            &[],
        ),
        t("modules", Action::Modprobe { file: "/etc/modules-load.d/ezk-demo.conf".into(), modules: vec!["br_netfilter".into()] }, &[]),
        t("reload", Action::DaemonReload, &[]),
        t("service", Action::Service { unit: UNIT.into(), enabled: true, state: UnitState::Started, last_if: None }, &[]),
        t("active", Action::WaitFor { target: WaitTarget::Command { cmd: format!("systemctl is-active -q {UNIT}") }, timeout_secs: 20, diagnose: Some(format!("journalctl -u {UNIT} -n 20 --no-pager")) }, &[]),
        t("init once", Action::Command { cmd: format!("date > {DIR}/initialized").into(), creates: Some(format!("{DIR}/initialized")), unless: None, unless_slow: false }, &[]),
        t("motd", Action::Command { cmd: "echo ezk-demo >> /etc/motd".into(), creates: None, unless: Some("grep -q ezk-demo /etc/motd".into()), unless_slow: false }, &[]),
        t("sshd up", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: 22 }, timeout_secs: 5, diagnose: None }, &[]),
    ];
    HostRolePlan { host: host.into(), role: "demo".into(), tasks }
}

pub fn step(lab: &Lab, greeting: &str) -> StepPlan {
    StepPlan {
        needs_nodes: false,
        step: "demo".into(),
        waves: vec![Wave { roles: vec!["demo".into()], hosts: lab.hosts.iter().map(|h| demo_role(&h.name, greeting)).collect(), serial: Default::default() }],
    }
}

fn opts(plan_only: bool) -> Options {
    Options { plan_only, progress: Some(false), json: true, ..Options::default() }
}

fn json(r: &Recap) -> serde_json::Value {
    serde_json::from_str(&r.to_json()).unwrap()
}

fn unit_role_converges_then_noop_then_exact_plan(lab: &Lab) {
    let conns = conns(lab);
    let cd = lab.cluster_dir();
    let r1 = run_step(&cd, &step(lab, "hello"), &conns, &opts(false)).unwrap();
    let j = json(&r1);
    assert_eq!(r1.exit_code(), 0, "{}", r1.to_json());
    for (i, h) in lab.hosts.iter().enumerate() {
        let hr = &j["hosts"][&h.name];
        assert!(hr["changed"].as_u64().unwrap() >= 10, "{hr}");
        assert!(hr["round_trips_by_role"]["demo"].as_u64().unwrap() <= 3, "14 tasks, {hr}");
        assert_eq!(lab.sh(i, &format!("systemctl is-active {UNIT}")), "active");
        assert_eq!(lab.sh(i, &format!("systemctl is-enabled {UNIT}")), "enabled");
        assert_eq!(lab.sh(i, &format!("stat -c %a {DIR}/token")), "600");
        assert_eq!(lab.sh(i, "grep -c ezk-demo /etc/motd"), "1");
    }

    let r2 = run_step(&cd, &step(lab, "hello"), &conns, &opts(false)).unwrap();
    let j = json(&r2);
    for h in &lab.hosts {
        assert_eq!(j["hosts"][&h.name]["changed"], 0, "second run changed something: {}", r2.to_json());
        assert_eq!(j["hosts"][&h.name]["failed"], 0);
        assert_eq!(j["hosts"][&h.name]["round_trips"], 1, "{}", r2.to_json());
    }

    let pid_before = lab.sh(0, &format!("systemctl show -p MainPID --value {UNIT}"));
    let conf_sha = lab.sh(0, &format!("sha256sum {DIR}/demo.conf"));
    let rp = run_step(&cd, &step(lab, "bye"), &conns, &opts(true)).unwrap();
    for h in &lab.hosts {
        let lines = &rp.plan[&h.name];
        let diff: Vec<&str> = lines.iter().filter(|l| l.starts_with("[demo]     -") || l.starts_with("[demo]     +")).map(|s| s.as_str()).collect();
        assert_eq!(diff, vec!["[demo]     -GREETING=hello", "[demo]     +GREETING=bye"], "{lines:#?}");
        let changes: Vec<&String> = lines.iter().filter(|l| !l.starts_with("[demo]     ") && !l.contains("warning:")).collect();
        assert_eq!(
            changes,
            vec![
                &format!("[demo] changed {DIR}/demo.conf"),
                &format!("[demo] changed {DIR}/token: secret content changed"),
                &format!("[demo] restart {UNIT} (config, token)"),
            ],
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.contains("secret-")), "secret printed");
    }
    assert_eq!(lab.sh(0, &format!("sha256sum {DIR}/demo.conf")), conf_sha, "--plan changed a file");
    assert_eq!(lab.sh(0, &format!("systemctl show -p MainPID --value {UNIT}")), pid_before, "--plan restarted");

    let r3 = run_step(&cd, &step(lab, "bye"), &conns, &opts(false)).unwrap();
    assert_eq!(r3.exit_code(), 0, "{}", r3.to_json());
    for h in &lab.hosts {
        // config + token + the notified restart
        assert_eq!(r3.hosts[&h.name].changed, 3, "{}", r3.to_json());
    }
    assert_ne!(lab.sh(0, &format!("systemctl show -p MainPID --value {UNIT}")), pid_before, "notified restart did not happen");
    let r4 = run_step(&cd, &step(lab, "bye"), &conns, &opts(false)).unwrap();
    assert_eq!(r4.total_changed(), 0, "{}", r4.to_json());
}

/// Pids of this machine's ssh masters to `ip` (the openssh crate runs `ssh -M ... <ip>`).
fn masters_to(ip: &str) -> Vec<String> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.ends_with("ssh")) && args.iter().any(|a| a == "-M") && args.last().is_some_and(|a| a == ip) {
            pids.push(name);
        }
    }
    pids
}

fn killed_mid_upload_never_partial(lab: &Lab) {
    let host = &lab.hosts[0];
    let conns: IndexMap<String, Connection> = conns(lab).into_iter().take(1).collect();
    let target = format!("{DIR}/big/blob");
    lab.sh(0, &format!("mkdir -p {DIR}/big && echo old > {target}"));
    let old_sha = lab.sh(0, &format!("sha256sum {target} | cut -d' ' -f1"));
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("blob");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut block = vec![7u8; 1 << 20];
        for i in 0..256u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            w.write_all(&block).unwrap();
        }
    }
    let new_sha = hex::encode(Sha256::digest(std::fs::read(&local).unwrap()));
    let plan = StepPlan {
        needs_nodes: false,
        step: "blob".into(),
        waves: vec![Wave {
            roles: vec!["blob".into()],
            hosts: vec![HostRolePlan {
                host: host.name.clone(),
                role: "blob".into(),
                tasks: vec![t("blob", Action::File(FileSpec { path: target.clone(), content: Content::Local { path: local.clone(), sha256: new_sha.clone() }, mode: 0o644, owner: "root".into(), group: "root".into(), secret: false }), &[])],
            }],
            serial: Default::default(),
        }],
    };
    // A watcher on the host says when a temp file holds part of the upload; then the master dies.
    let mut watcher = lab
        .ssh_cmd(0)
        .arg(format!("for i in $(seq 1 3000); do find {DIR}/big -name '.ezk-tmp.*' -size +8M | grep -q . && {{ echo partial; exit 0; }}; sleep 0.01; done; exit 1"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ip = host.ip.clone();
    let killer = std::thread::spawn(move || {
        let ok = watcher.wait().unwrap().success();
        if ok {
            for pid in masters_to(&ip) {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
        ok
    });
    let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts(false)).unwrap();
    assert!(killer.join().unwrap(), "never saw a partial temp file: upload too fast?");
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    let sha = lab.sh(0, &format!("sha256sum {target} | cut -d' ' -f1"));
    assert!(sha == old_sha || sha == new_sha, "partial target after the kill");
    let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(lab.sh(0, &format!("sha256sum {target} | cut -d' ' -f1")), new_sha);
    assert_eq!(lab.sh(0, &format!("ls -A {DIR}/big")), "blob", "temp files left");
    lab.sh(0, &format!("rm -rf {DIR}/big"));
}

/// Puts a host's bridge-side link back up even when the test panics.
struct LinkDown(String);
impl Drop for LinkDown {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "set", &self.0, "up"]).status();
    }
}

fn stopped_host_unreachable_others_complete(lab: &Lab) {
    let n = lab.hosts.len();
    let link = format!("vb-ez{}-{}", lab.index, n);
    assert!(Command::new("ip").args(["link", "set", &link, "down"]).status().unwrap().success());
    let _restore = LinkDown(link);
    let role = |h: &str| HostRolePlan {
        host: h.into(),
        role: "mark".into(),
        tasks: vec![t("mark", f("/opt/ezk-mark", &format!("{h}\n"), 0o644, false), &[])],
    };
    let plan = StepPlan { needs_nodes: false, step: "mark".into(), waves: vec![Wave { roles: vec!["mark".into()], hosts: lab.hosts.iter().map(|h| role(&h.name)).collect(), serial: Default::default() }] };
    let o = Options { connect_timeout: Duration::from_secs(3), connect_attempts: 1, ..opts(false) };
    let r = run_step(&lab.cluster_dir(), &plan, &conns(lab), &o).unwrap();
    let j = json(&r);
    let down = &lab.hosts[n - 1].name;
    assert_eq!(j["hosts"][down]["unreachable"], 1, "{}", r.to_json());
    for h in &lab.hosts[..n - 1] {
        assert_eq!(j["hosts"][&h.name]["changed"], 1, "{}", r.to_json());
    }
    assert_ne!(r.exit_code(), 0);
    ezk::exec::lock::lock_cluster(&lab.cluster_dir()).expect("lock released");
    drop(_restore);
    for i in 0..n - 1 {
        lab.sh(i, "rm -f /opt/ezk-mark");
    }
}

fn non_root_user_with_become_uses_sudo(lab: &Lab) {
    lab.sh(
        1,
        "id deployer >/dev/null 2>&1 || useradd -m -s /bin/sh deployer; \
         install -d -o deployer -m 700 /home/deployer/.ssh; \
         install -o deployer -m 600 /root/.ssh/authorized_keys /home/deployer/.ssh/authorized_keys; \
         echo 'deployer ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deployer; chmod 440 /etc/sudoers.d/deployer",
    );
    let h = &lab.hosts[1];
    let conn = |become_root| Connection { address: h.ip.clone(), port: 22, user: "deployer".into(), key_file: Some(lab.key()), become_root, jump: None };
    let plan = StepPlan {
        needs_nodes: false,
        step: "become".into(),
        waves: vec![Wave {
            roles: vec!["become".into()],
            hosts: vec![HostRolePlan { host: h.name.clone(), role: "become".into(), tasks: vec![t("root file", f("/etc/ezk-become.conf", "as root\n", 0o640, false), &[])] }],
            serial: Default::default(),
        }],
    };
    // Without become: the user cannot write /etc; the host fails, nothing is written.
    let conns: IndexMap<String, Connection> = [(h.name.clone(), conn(false))].into_iter().collect();
    let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.hosts[&h.name].failed, 1, "{}", r.to_json());
    assert_eq!(lab.ssh(1, "test -e /etc/ezk-become.conf").status.code(), Some(1));
    // With become: sudo, and the file is root's.
    let conns: IndexMap<String, Connection> = [(h.name.clone(), conn(true))].into_iter().collect();
    let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(lab.sh(1, "stat -c '%U:%G %a' /etc/ezk-become.conf"), "root:root 640");
    let r = run_step(&lab.cluster_dir(), &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.total_changed(), 0, "{}", r.to_json());
    lab.sh(1, "rm -f /etc/ezk-become.conf /etc/sudoers.d/deployer; userdel -r deployer 2>/dev/null; true");
}

const PEND_DIR: &str = "/opt/ezk-pend";
const PEND_UNIT: &str = "ezk-pend.service";

/// A unit whose config and unit file notify it; `kill`: a command after both files that
/// SIGKILLs the apply script itself (once: `creates`), between the files landing and the
/// daemon-reload and restart they owe.
fn pend_role(host: &str, greeting: &str, kill: bool) -> HostRolePlan {
    let unit = format!("[Unit]\nDescription=ezk pend {greeting}\n\n[Service]\nEnvironmentFile={PEND_DIR}/pend.conf\nExecStart=/bin/sh -c 'echo \"$GREETING\"; exec sleep infinity'\n");
    let mut tasks = vec![
        t("dir", Action::Directory { path: PEND_DIR.into(), mode: 0o755, owner: "root".into(), group: "root".into() }, &[]),
        t("config", f(&format!("{PEND_DIR}/pend.conf"), &format!("GREETING={greeting}\n"), 0o644, false), &[PEND_UNIT]),
        t("unit", f(&format!("/etc/systemd/system/{PEND_UNIT}"), &unit, 0o644, false), &[PEND_UNIT]),
    ];
    if kill {
        let cmd = format!("touch {PEND_DIR}/killed; kill -9 $PPID");
        tasks.push(t("die", Action::Command { cmd: cmd.into(), creates: Some(format!("{PEND_DIR}/killed")), unless: None, unless_slow: false }, &[]));
    }
    tasks.push(t("reload", Action::DaemonReload, &[]));
    tasks.push(t("service", Action::Service { unit: PEND_UNIT.into(), enabled: true, state: UnitState::Started, last_if: None }, &[]));
    HostRolePlan { host: host.into(), role: "pend".into(), tasks }
}

/// Regression: the restart a changed file owes lived only in the running apply script. Killed
/// after the file landed and before the restart, the next run found the file right, changed
/// nothing, and the service kept its old config for good.
fn restart_owed_by_a_killed_apply_happens_next_run(lab: &Lab) {
    let h = &lab.hosts[2];
    let conns: IndexMap<String, Connection> = conns(lab).into_iter().filter(|(n, _)| n == &h.name).collect();
    let plan = |greeting: &str, kill: bool| StepPlan {
        needs_nodes: false,
        step: "pend".into(),
        waves: vec![Wave { roles: vec!["pend".into()], hosts: vec![pend_role(&h.name, greeting, kill)], serial: Default::default() }],
    };
    let cd = lab.cluster_dir();
    let main_pid = || lab.sh(2, &format!("systemctl show -p MainPID --value {PEND_UNIT}"));
    let greeting_seen = || lab.sh(2, &format!("tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value {PEND_UNIT})/environ | grep GREETING"));
    let marker = |name: &str| lab.ssh(2, &format!("test -e /var/lib/ezk/pending-restart/{name}")).status.success();

    let r = run_step(&cd, &plan("one", false), &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    let pid1 = main_pid();
    assert_eq!(greeting_seen(), "GREETING=one");
    assert!(!marker(PEND_UNIT) && !marker("_daemon-reload"), "markers left after a complete run");

    // The apply dies after both files landed: no reload, no restart, the markers stay.
    let r = run_step(&cd, &plan("two", true), &conns, &opts(false)).unwrap();
    assert_ne!(r.exit_code(), 0, "the apply was to be killed: {}", r.to_json());
    assert_eq!(lab.sh(2, &format!("cat {PEND_DIR}/pend.conf")), "GREETING=two");
    assert_eq!(main_pid(), pid1, "restarted although the apply died first");
    assert_eq!(greeting_seen(), "GREETING=one");
    assert_eq!(lab.sh(2, &format!("systemctl show -p NeedDaemonReload --value {PEND_UNIT}")), "yes");
    assert!(marker(PEND_UNIT) && marker("_daemon-reload"), "no marker survived the kill");

    // --plan: every file is right, yet the owed reload and restart are shown.
    let rp = run_step(&cd, &plan("two", true), &conns, &opts(true)).unwrap();
    assert_eq!(
        rp.plan[&h.name],
        vec!["[pend] systemctl daemon-reload".to_string(), format!("[pend] restart {PEND_UNIT} (owed by an interrupted run)")],
        "{}",
        rp.to_json()
    );
    assert_eq!(main_pid(), pid1, "--plan restarted");

    // The next run pays the debt: reload + restart, in the usual two round trips.
    let r = run_step(&cd, &plan("two", true), &conns, &opts(false)).unwrap();
    let j = json(&r);
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(j["hosts"][&h.name]["changed"], 2, "{}", r.to_json());
    assert_eq!(j["hosts"][&h.name]["round_trips"], 2, "{}", r.to_json());
    assert_ne!(main_pid(), pid1, "the owed restart did not happen");
    assert_eq!(greeting_seen(), "GREETING=two", "the service still runs the old config");
    assert_eq!(lab.sh(2, &format!("systemctl show -p NeedDaemonReload --value {PEND_UNIT}")), "no");
    assert!(!marker(PEND_UNIT) && !marker("_daemon-reload"), "markers left after the restart");

    // And then nothing is owed: no change, one round trip.
    let pid3 = main_pid();
    let r = run_step(&cd, &plan("two", true), &conns, &opts(false)).unwrap();
    assert_eq!(r.total_changed(), 0, "{}", r.to_json());
    assert_eq!(json(&r)["hosts"][&h.name]["round_trips"], 1, "{}", r.to_json());
    assert_eq!(main_pid(), pid3);

    lab.sh(2, &format!("systemctl disable --now {PEND_UNIT}; rm -rf {PEND_DIR} /etc/systemd/system/{PEND_UNIT}; systemctl daemon-reload"));
}
