//! Faults injected on purpose into runs on the real lab hosts: an SSH session killed on the host
//! mid-upload, a host rebooted mid-step, a disk that fills during an upload, ezk itself killed
//! (SIGKILL) mid-run, two `ezk setup` runs at once, a host whose clock is hours behind. Each
//! must end with nothing lost, no half-written file (temp + rename), a message naming the host
//! and the cause, and a re-run that converges to what a clean run gives. (The SSH master killed
//! on this machine mid-upload and an apply killed before its owed restart are in `exec`; the
//! control-plane faults are in `faults_kube`.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ezk::exec::{Connection, Options, run_step};
use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, StepPlan, Task, UnitState, Wave};
use ezk::ui::recap::Recap;
use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::exec::conns;
use crate::steps_support::{assert_cluster_healthy, ensure_etcd_cluster, etcd_ips, setup, setup_ok, text};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "faults::sshd_session_killed_mid_upload_old_or_new_never_partial", run: sshd_session_killed_mid_upload_old_or_new_never_partial },
    Test { name: "faults::disk_full_during_upload_names_host_and_cause", run: disk_full_during_upload_names_host_and_cause },
    Test { name: "faults::host_rebooted_mid_step_next_run_finishes", run: host_rebooted_mid_step_next_run_finishes },
    Test { name: "faults::ezk_killed_mid_run_lock_stale_next_run_finishes", run: ezk_killed_mid_run_lock_stale_next_run_finishes },
    Test { name: "faults::second_setup_at_once_is_refused_naming_the_first", run: second_setup_at_once_is_refused_naming_the_first },
    Test { name: "faults::host_clock_hours_behind_is_refused_with_why", run: host_clock_hours_behind_is_refused_with_why },
];

fn task(name: &str, action: Action, notify: &[&str]) -> Task {
    Task { name: name.into(), origin: format!("faults ({name})"), action, notify: notify.iter().map(|s| s.to_string()).collect() }
}

fn inline(path: &str, content: &str) -> Action {
    Action::File(FileSpec { path: path.into(), content: Content::Inline(content.as_bytes().into()), mode: 0o644, owner: "root".into(), group: "root".into(), secret: false })
}

fn one_host(step: &str, host: &str, tasks: Vec<Task>) -> StepPlan {
    StepPlan {
        needs_nodes: false,
        step: step.into(),
        waves: vec![Wave { roles: vec![step.into()], hosts: vec![HostRolePlan { host: host.into(), role: step.into(), tasks }], serial: Default::default() }],
    }
}

fn conn_of(lab: &Lab, i: usize) -> IndexMap<String, Connection> {
    conns(lab).into_iter().filter(|(n, _)| n == &lab.hosts[i].name).collect()
}

fn opts() -> Options {
    Options { progress: Some(false), json: true, ..Options::default() }
}

/// A local file of `mb` MiB (each MiB numbered, so no two are alike) and its sha256.
fn blob(dir: &Path, mb: u32) -> (PathBuf, String) {
    use std::io::Write;
    let local = dir.join("blob");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
    let mut block = vec![7u8; 1 << 20];
    for i in 0..mb {
        block[..4].copy_from_slice(&i.to_le_bytes());
        w.write_all(&block).unwrap();
    }
    drop(w);
    let sha = hex::encode(Sha256::digest(std::fs::read(&local).unwrap()));
    (local, sha)
}

fn blob_task(target: &str, local: &Path, sha: &str) -> Task {
    task(
        "blob",
        Action::File(FileSpec { path: target.into(), content: Content::Local { path: local.to_path_buf(), sha256: sha.into() }, mode: 0o644, owner: "root".into(), group: "root".into(), secret: false }),
        &[],
    )
}

fn errors(r: &Recap, host: &str) -> String {
    r.hosts.get(host).map(|h| h.errors.join("\n")).unwrap_or_default()
}

fn sha_on(lab: &Lab, i: usize, path: &str) -> String {
    lab.sh(i, &format!("sha256sum {path} | cut -d' ' -f1"))
}

/// Temp files ezk's uploads use, anywhere below `dir` on host `i` (none may outlive a run).
fn temps(lab: &Lab, i: usize, dir: &str) -> String {
    lab.sh(i, &format!("find {dir} /tmp -maxdepth 2 \\( -name '.ezk-tmp.*' -o -name '.ezk-run.*' -o -name '.ezk-put.*' \\) 2>/dev/null | sort"))
}

/// The SSH session on the host is killed (its sshd process, from the host side) while a 256 MiB
/// binary streams into a temp file: the target is the old file or the new, never a part; the
/// temp file goes; the message names the host; the next run puts the file whole.
fn sshd_session_killed_mid_upload_old_or_new_never_partial(lab: &Lab) {
    let (i, host) = (0, lab.hosts[0].name.clone());
    let dir = "/opt/ezk-fault-ssh";
    let target = format!("{dir}/blob");
    lab.sh(i, &format!("mkdir -p {dir} && echo old > {target}"));
    let old = sha_on(lab, i, &target);
    let work = tempfile::tempdir().unwrap();
    let (local, new) = blob(work.path(), 256);
    let plan = one_host("blob", &host, vec![blob_task(&target, &local, &new)]);
    // On the host: once a temp file holds 8 MiB of the upload, the sshd serving the `tee` that
    // writes it is killed (the first sshd above it: the connection's own process).
    let mut killer = lab
        .ssh_cmd(i)
        .arg(format!(
            "for n in $(seq 1 3000); do \
               if find {dir} -name '.ezk-tmp.*' -size +8M | grep -q .; then \
                 for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = tee ] || continue; \
                   q=${{p#/proc/}}; while [ \"$q\" -gt 1 ]; do \
                     if [ \"$(cat /proc/$q/comm)\" = sshd ]; then kill -9 $q; echo killed $q; exit 0; fi; \
                     q=$(sed 's/.*) //' /proc/$q/stat | cut -d' ' -f2); done; done; \
               fi; sleep 0.01; done; exit 1"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    let killed = killer.wait().unwrap().success();
    assert!(killed, "the upload was never seen mid-way: {}", r.to_json());
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    // The error is the host's (the recap and the printed line are per host) and says why.
    let e = errors(&r, &host);
    println!("  the run said: {host}: {e}");
    assert!(e.contains("connection") || e.contains("session"), "the message does not say the connection broke: {e}");
    let sha = sha_on(lab, i, &target);
    assert!(sha == old || sha == new, "a partial target after the kill");
    // The script on the host saw its input end (or its session hang up) and removed its temp.
    let start = Instant::now();
    while !temps(lab, i, dir).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(temps(lab, i, dir), "", "temp files left after the kill");
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(sha_on(lab, i, &target), new);
    assert_eq!(lab.sh(i, &format!("ls -A {dir}")), "blob");
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.total_changed(), 0, "{}", r.to_json());
    lab.sh(i, &format!("rm -rf {dir}"));
}

/// Unmounts the small filesystem of the disk-full test even when it fails.
struct Unmount<'a>(&'a Lab, usize, &'static str);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = self.0.ssh(self.1, &format!("umount {0} 2>/dev/null; rm -rf {0}", self.2));
    }
}

/// The target directory is a 12 MiB filesystem and a 32 MiB binary is put there: the upload
/// stops at a full disk; the run says which host, which file and why (no space left, how much
/// there is); the old file stays, the partial temp file is removed (the space is free again);
/// a file of the same role in another directory is untouched. With room made, the next run
/// puts it whole, and a run after that changes nothing.
fn disk_full_during_upload_names_host_and_cause(lab: &Lab) {
    let (i, host) = (1, lab.hosts[1].name.clone());
    let dir = "/opt/ezk-fault-full";
    let target = format!("{dir}/blob");
    lab.sh(i, &format!("mkdir -p {dir} && mount -t tmpfs -o size=12m ezk-fault-full {dir} && echo old > {target}"));
    let _unmount = Unmount(lab, i, dir);
    let old = sha_on(lab, i, &target);
    let free_before = lab.sh(i, &format!("df -P {dir} | awk 'NR==2 {{print $4}}'"));
    let work = tempfile::tempdir().unwrap();
    let (local, new) = blob(work.path(), 32);
    let after = "/opt/ezk-fault-after.conf";
    let plan = one_host("full", &host, vec![blob_task(&target, &local, &new), task("after", inline(after, "after\n"), &[])]);
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.exit_code(), 2, "{}", r.to_json());
    assert_eq!(r.hosts[&host].failed, 1, "{}", r.to_json());
    let e = errors(&r, &host);
    assert!(e.contains(&format!("cannot write {target}")) && e.contains("No space left on device"), "the cause is not named: {e}");
    assert!(e.contains("free of") && e.contains(dir), "no free space figure: {e}");
    assert_eq!(sha_on(lab, i, &target), old, "the old file was not kept");
    assert_eq!(temps(lab, i, dir), "", "the partial temp file was left");
    assert_eq!(lab.sh(i, &format!("df -P {dir} | awk 'NR==2 {{print $4}}'")), free_before, "the space is not free again");
    assert_eq!(lab.ssh(i, &format!("test -e {after}")).status.code(), Some(1), "the host went on after a failed task");
    // Room made: the same plan converges.
    lab.sh(i, &format!("mount -o remount,size=64m {dir}"));
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(sha_on(lab, i, &target), new);
    assert_eq!(lab.sh(i, &format!("cat {after}")), "after");
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.total_changed(), 0, "{}", r.to_json());
    drop(_unmount);
    lab.sh(i, &format!("rm -f {after}"));
}

const RB_DIR: &str = "/opt/ezk-fault-reboot";
const RB_UNIT: &str = "ezk-fault-reboot.service";

/// A role whose config and unit notify a service, then a slow command (the first time only:
/// it leaves `started` behind), then the reload and the service.
fn reboot_role(host: &str) -> HostRolePlan {
    let unit = format!("[Unit]\nDescription=ezk fault reboot\n\n[Service]\nEnvironmentFile={RB_DIR}/svc.conf\nExecStart=/bin/sh -c 'exec sleep infinity'\n\n[Install]\nWantedBy=multi-user.target\n");
    let slow = format!("test -e {RB_DIR}/started || {{ touch {RB_DIR}/started; sync; sleep 120; }}; touch {RB_DIR}/done");
    let tasks = vec![
        task("dir", Action::Directory { path: RB_DIR.into(), mode: 0o755, owner: "root".into(), group: "root".into() }, &[]),
        task("config", inline(&format!("{RB_DIR}/svc.conf"), "GREETING=rebooted\n"), &[RB_UNIT]),
        task("unit", inline(&format!("/etc/systemd/system/{RB_UNIT}"), &unit), &[RB_UNIT]),
        task("slow", Action::Command { cmd: slow.into(), creates: Some(format!("{RB_DIR}/done")), unless: None, unless_slow: false }, &[]),
        task("reload", Action::DaemonReload, &[]),
        task("service", Action::Service { unit: RB_UNIT.into(), enabled: true, state: UnitState::Started, last_if: None }, &[]),
    ];
    HostRolePlan { host: host.into(), role: "reboot".into(), tasks }
}

/// The host reboots (`ezk lab reboot`: a clean shutdown, a boot on the same disk) while a step's
/// apply runs, after its files landed and before the reload and start they owe: the run names
/// the host and says the connection was lost; the files are whole; the owed reload and start
/// are on the host's disk (markers) and the next run does them; a run after that changes
/// nothing.
fn host_rebooted_mid_step_next_run_finishes(lab: &Lab) {
    let (i, host) = (1, lab.hosts[1].name.clone());
    let plan = StepPlan {
        needs_nodes: false,
        step: "reboot".into(),
        waves: vec![Wave { roles: vec!["reboot".into()], hosts: vec![reboot_role(&host)], serial: Default::default() }],
    };
    let ezk_home = lab.home.clone();
    let (lab_name, host_name) = (lab.name.clone(), host.clone());
    let mut watcher = lab
        .ssh_cmd(i)
        .arg(format!("for n in $(seq 1 600); do [ -e {RB_DIR}/started ] && exit 0; sleep 0.1; done; exit 1"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let rebooter = std::thread::spawn(move || {
        if !watcher.wait().unwrap().success() {
            return Err("the slow task never started".to_string());
        }
        let start = Instant::now();
        let out = crate::common::ezk::command(&ezk_home).args(["lab", "reboot", &lab_name, &host_name]).stdin(Stdio::null()).output().unwrap();
        if !out.status.success() {
            return Err(format!("ezk lab reboot failed: {}", text(&out)));
        }
        Ok(start.elapsed().as_secs_f32())
    });
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    let secs = rebooter.join().unwrap().unwrap_or_else(|e| panic!("{e}\n{}", r.to_json()));
    println!("  timing: ezk lab reboot {secs:.1}s");
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    let e = errors(&r, &host);
    println!("  the run said: {host}: {e}");
    assert!(e.contains("rebooting") || e.contains("connection") || e.contains("session"), "the cause is not named: {e}");
    // Back up: booted again (a new boot id), the files whole, the debts on disk.
    assert_eq!(lab.sh(i, &format!("cat {RB_DIR}/svc.conf")), "GREETING=rebooted");
    assert!(lab.sh(i, &format!("cat /etc/systemd/system/{RB_UNIT}")).ends_with("WantedBy=multi-user.target"));
    assert_eq!(temps(lab, i, RB_DIR), "");
    assert_eq!(lab.sh(i, "ls /var/lib/ezk/pending-restart/ | LC_ALL=C sort | tr '\\n' ' '"), format!("_daemon-reload {RB_UNIT}"), "the owed reload/restart did not survive the reboot");
    assert!(!lab.ssh(i, &format!("systemctl is-active -q {RB_UNIT}")).status.success(), "started although the run died first");
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(lab.sh(i, &format!("systemctl is-active {RB_UNIT}")), "active");
    assert_eq!(lab.sh(i, &format!("systemctl is-enabled {RB_UNIT}")), "enabled");
    assert_eq!(lab.sh(i, "ls -A /var/lib/ezk/pending-restart/ 2>/dev/null | wc -l"), "0", "markers left");
    let r = run_step(&lab.cluster_dir(), &plan, &conn_of(lab, i), &opts()).unwrap();
    assert_eq!(r.total_changed(), 0, "{}", r.to_json());
    lab.sh(i, &format!("systemctl disable --now {RB_UNIT}; rm -rf {RB_DIR} /etc/systemd/system/{RB_UNIT}; systemctl daemon-reload"));
    // The lab's etcd member on that host came back with it.
    if lab.ssh(0, "systemctl is-active -q etcd").status.success() {
        assert_cluster_healthy(lab, &lab.hosts[0].ip, &etcd_ips(lab), 60);
    }
}

/// `ezk --home <home> <args> --json`, started (not waited for), output piped.
fn spawn_ezk(lab: &Lab, args: &[&str]) -> Child {
    crate::common::ezk::command(&lab.home).args(args).arg("--json").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ezk starts")
}

fn lock_text(lab: &Lab) -> String {
    std::fs::read_to_string(lab.cluster_dir().join(".lock")).unwrap_or_default()
}

/// Processes on this machine that are SSH masters started by ezk process `pid` (by their run
/// config, `-F <tmp>/ezk-ssh-<pid>-<n>.conf`).
fn masters_of(pid: u32) -> Vec<u32> {
    let prefix = std::env::temp_dir().join(format!("ezk-ssh-{pid}-")).to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a == "-M") && args.windows(2).any(|w| w[0] == "-F" && w[1].starts_with(&prefix)) {
            out.push(p);
        }
    }
    out
}

fn kill(sig: &str, pid: u32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// ezk itself is SIGKILLed while `setup 02` rewrites the etcd unit file on the first host (it
/// drifted) and owes etcd a reload and a restart: the lock file still names the killed run (pid,
/// machine, command); the next run recognises it as stale, says so, ends the SSH masters the
/// killed run left, finishes what was owed (the reload and restart: the unit on disk is the one
/// etcd runs), and a run after that changes nothing; a normal end leaves no holder record.
fn ezk_killed_mid_run_lock_stale_next_run_finishes(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let unit = "/etc/systemd/system/etcd.service";
    let clean = sha_on(lab, 0, unit);
    lab.sh(0, &format!("echo '# drift' >> {unit}"));
    // On the host: the moment a restart-owed marker appears, say so (the apply has begun).
    let mut watcher = lab
        .ssh_cmd(0)
        .arg("for n in $(seq 1 6000); do [ -n \"$(ls -A /var/lib/ezk/pending-restart 2>/dev/null)\" ] && exit 0; sleep 0.01; done; exit 1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let child = spawn_ezk(lab, &["setup", &lab.name, "02"]);
    let pid = child.id();
    let seen = watcher.wait().unwrap().success();
    kill("KILL", pid);
    let out = child.wait_with_output().unwrap();
    assert!(seen, "the apply never began: {}", text(&out));
    assert_eq!(out.status.code(), None, "ezk ended before the kill: {}", text(&out));
    let record = lock_text(lab);
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(record.starts_with(&format!("{pid} {machine} ")) && record.contains(&format!("setup {} 02", lab.name)), "lock record: {record:?}");
    let left = masters_of(pid);
    let owed = lab.sh(0, "ls -A /var/lib/ezk/pending-restart 2>/dev/null | tr '\\n' ' '");
    println!("  the killed run left {} ssh master(s) and, on the host, owed: [{owed}]", left.len());
    // The file on the host is one or the other, never a part.
    let now = sha_on(lab, 0, unit);
    let drifted = lab.sh(0, &format!("tail -n1 {unit}")) == "# drift";
    assert!(now == clean || drifted, "the unit file is neither the old nor the new one");

    let r = setup(lab, "02", &[]);
    assert_eq!(r.code, 0, "{}", r.output);
    assert!(
        r.output.contains(&format!("the last run on this cluster did not finish (pid {pid} on {machine}")),
        "the stale lock is not reported:\n{}",
        r.output
    );
    assert_eq!(masters_of(pid), Vec::<u32>::new(), "the killed run's ssh masters are still there");
    let conf_left: Vec<_> = std::fs::read_dir(std::env::temp_dir()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&format!("ezk-ssh-{pid}-"))).collect();
    assert!(conf_left.is_empty(), "the killed run's ssh configs are still there");
    assert_eq!(sha_on(lab, 0, unit), clean);
    assert_eq!(lab.sh(0, "systemctl show -p NeedDaemonReload --value etcd"), "no");
    assert_eq!(lab.sh(0, "ls -A /var/lib/ezk/pending-restart/ 2>/dev/null | wc -l"), "0", "a debt was left");
    // etcd runs the restored unit: it (re)started after the unit file landed.
    let started = lab.sh(0, "date -d \"$(systemctl show -p ActiveEnterTimestamp --value etcd)\" +%s").parse::<i64>().unwrap();
    let written = lab.sh(0, &format!("stat -c %Y {unit}")).parse::<i64>().unwrap();
    assert!(started >= written, "etcd was not restarted after its unit changed ({started} < {written})");
    assert_cluster_healthy(lab, &lab.hosts[0].ip, &etcd_ips(lab), 60);
    assert_eq!(lock_text(lab), "", "a normal end left a holder record");
    let r = setup_ok(lab, "02", &[]);
    for ip in etcd_ips(lab) {
        assert_eq!(r.count(&ip, "changed"), 0, "{}", r.output);
    }
    assert!(!r.output.contains("did not finish"), "{}", r.output);
}

/// Two `ezk setup` runs on one cluster at once: while the first holds the cluster (stopped with
/// SIGSTOP, so it surely does), the second is refused at once, naming the first (pid, machine,
/// since when, its command), and touches no host; the first, resumed, finishes normally.
fn second_setup_at_once_is_refused_naming_the_first(lab: &Lab) {
    ensure_etcd_cluster(lab);
    let first = spawn_ezk(lab, &["setup", &lab.name, "02"]);
    let pid = first.id();
    let start = Instant::now();
    while !lock_text(lab).starts_with(&format!("{pid} ")) {
        assert!(start.elapsed() < Duration::from_secs(60), "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill("STOP", pid);
    let logs_before = std::fs::read_dir(lab.cluster_dir().join("logs")).map(|d| d.count()).unwrap_or(0);
    let t = Instant::now();
    let second = lab.ezk(&["setup", &lab.name, "02", "--json"]);
    let secs = t.elapsed().as_secs_f32();
    kill("CONT", pid);
    let msg = text(&second);
    assert_ne!(second.status.code(), Some(0), "the second run was not refused: {msg}");
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(msg.contains(&format!("another ezk run is in progress on this cluster: pid {pid} on {machine} since ")), "{msg}");
    assert!(msg.contains(&format!("setup {} 02", lab.name)) && msg.contains("wait for it to finish"), "{msg}");
    assert!(secs < 10.0, "refused only after {secs:.1}s");
    let logs_after = std::fs::read_dir(lab.cluster_dir().join("logs")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(logs_after, logs_before, "the refused run wrote a run log (it started a run)");
    let out: Output = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the first run did not finish: {}", text(&out));
    assert_eq!(lock_text(lab), "");
    // Now the second may run, and finds nothing to do.
    let r = setup_ok(lab, "02", &[]);
    for ip in etcd_ips(lab) {
        assert_eq!(r.count(&ip, "changed"), 0, "{}", r.output);
    }
}

/// libfaketime on this machine (Debian's `libfaketime`, installed by tests/deps.sh).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const HOST_FAKETIME: &str = "/usr/local/lib/ezk-fault/libfaketime.so.1";

/// Takes a host's clock skew off again even when the test fails.
struct Unskew<'a>(&'a Lab, usize);
impl Drop for Unskew<'_> {
    fn drop(&mut self) {
        let _ = self.0.ssh(self.1, "sed -i '/^# ezk-fault-skew/,$d' /etc/environment; rm -rf /usr/local/lib/ezk-fault");
    }
}

/// Make every new SSH session on host `i` (and what it runs) see a clock `offset` off (`-3h`):
/// libfaketime preloaded through pam_env's /etc/environment. The machine's clock (which the
/// lab hosts share) is not touched; systemd's services on the host keep the real time.
fn skew(lab: &Lab, i: usize, offset: &str) {
    lab.sh(
        i,
        &format!(
            "sed -i '/^# ezk-fault-skew/,$d' /etc/environment; \
             printf '# ezk-fault-skew\\nLD_PRELOAD={HOST_FAKETIME}\\nFAKETIME={offset}\\nDONT_FAKE_MONOTONIC=1\\n' >> /etc/environment"
        ),
    );
}

/// How far host `i`'s clock (as an SSH session there sees it) is from this machine's, seconds.
fn host_offset(lab: &Lab, i: usize) -> i64 {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let before = now();
    let host: i64 = lab.sh(i, "date +%s").parse().unwrap();
    host - (before + now()) / 2
}

/// A host whose clock is hours behind. ezk's certificates are valid from one hour before they
/// were issued, so a host half an hour behind accepts them (`openssl verify` under that clock
/// says OK) and a run there is clean; on a host three hours behind `openssl verify` says "not
/// yet valid", and `setup 02` refuses that host before changing anything, saying which
/// certificate, from when, what the host's clock reads, and the fix; the other hosts finish.
/// With the clock right again, the run is the clean run: nothing to change.
///
/// How the host sees another time: the lab hosts share this machine's kernel clock (a time
/// namespace offsets only the monotonic and boot clocks), so the host's SSH sessions preload
/// libfaketime (pam_env, /etc/environment): `date`, the shell ezk runs, and `openssl verify`
/// there all read the skewed clock. etcd (Go: no libc clock) keeps the real time.
fn host_clock_hours_behind_is_refused_with_why(lab: &Lab) {
    assert!(Path::new(FAKETIME_LIB).exists(), "{FAKETIME_LIB} missing: install libfaketime (bash tests/deps.sh)");
    ensure_etcd_cluster(lab);
    let i = 2;
    let ip = lab.hosts[i].ip.clone();
    let lib = std::fs::read(FAKETIME_LIB).unwrap();
    let mut put = lab.ssh_cmd(i).arg(format!("mkdir -p {d} && cat > {HOST_FAKETIME}", d = Path::new(HOST_FAKETIME).parent().unwrap().display())).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(put.stdin.as_mut().unwrap(), &lib).unwrap();
    drop(put.stdin.take());
    assert!(put.wait().unwrap().success());
    let _unskew = Unskew(lab, i);
    let cert = lab.sh(i, "systemctl cat etcd | grep -o -- '--cert-file=[^ ]*' | head -n1 | cut -d= -f2");
    let ca = lab.sh(i, "systemctl cat etcd | grep -o -- '--trusted-ca-file=[^ ]*' | head -n1 | cut -d= -f2");
    let verify = format!("openssl verify -CAfile {ca} {cert} 2>&1");
    let files_before = lab.sh(i, &format!("sha256sum {cert} {ca}"));
    // The skew reaches a process through pam_env, read when an SSH session logs in: a master
    // kept from an earlier run logged in before it, so these runs open fresh sessions. (A real
    // clock that is off is off for every session.)
    let fresh = ["--ssh-persist", "0"];

    // Half an hour behind: within the backdated hour.
    skew(lab, i, "-30m");
    let off = host_offset(lab, i);
    assert!((-1860..=-1740).contains(&off), "the host's clock is {off}s off, not -30m");
    assert!(lab.sh(i, &verify).ends_with(": OK"), "{}", lab.sh(i, &verify));
    let r = setup(lab, "02", &fresh);
    assert_eq!(r.code, 0, "a host 30 min behind was refused:\n{}", r.output);

    // Three hours behind.
    skew(lab, i, "-3h");
    let off = host_offset(lab, i);
    assert!((-10860..=-10740).contains(&off), "the host's clock is {off}s off, not -3h");
    let v = lab.ssh(i, &verify);
    let v = text(&v);
    assert!(v.contains("not yet valid"), "openssl on the skewed host: {v}");
    let r = setup(lab, "02", &fresh);
    assert_eq!(r.code, 2, "{}", r.output);
    let e = r.recap["hosts"][&ip]["errors"].to_string();
    println!("  the run said: {e}");
    for want in [cert.as_str(), "but this host's clock reads", "behind): it would be refused here as not yet valid", "Set the host's clock"] {
        assert!(e.contains(want), "missing {want:?} in: {e}");
    }
    assert_eq!(r.count(&ip, "changed"), 0, "{}", r.output);
    for other in etcd_ips(lab).iter().filter(|x| **x != ip) {
        assert_eq!(r.count(other, "failed"), 0, "{}", r.output);
    }
    assert_eq!(lab.sh(i, &format!("sha256sum {cert} {ca}")), files_before, "a refused host was changed");

    // The clock set right: the clean run's result.
    drop(_unskew);
    assert!(host_offset(lab, i).abs() < 60);
    let r = setup_ok(lab, "02", &fresh);
    for ip in etcd_ips(lab) {
        assert_eq!(r.count(&ip, "changed"), 0, "{}", r.output);
    }
    assert_cluster_healthy(lab, &lab.hosts[0].ip, &etcd_ips(lab), 60);
}
