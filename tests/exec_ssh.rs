//! The executor end to end over real SSH: a real sshd on 127.0.0.1 (child process, own host
//! key), the real openssh transport, real remote shell scripts. "Hosts" are inventory names
//! that reach that sshd; each writes under its own directory so they do not collide.

mod sshd;

use std::path::{Path, PathBuf};

use ezk::exec::{Options, run_step};
use ezk::exec::Connection;
use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, StepPlan, Task, WaitTarget, Wave};
use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use sshd::Sshd;

fn task(name: &str, action: Action) -> Task {
    Task { name: name.into(), origin: format!("roles/app/tasks.yml:{name}"), action, notify: vec![] }
}

fn file(path: &Path, content: Content, mode: u32, secret: bool) -> Action {
    Action::File(FileSpec {
        path: path.display().to_string(),
        content,
        mode,
        owner: "root".into(),
        group: "root".into(),
        secret,
    })
}

/// A role of 12 tasks for one host rooted at `base/<host>`; `port` is the config value that
/// the "template" carries (the var a later test changes).
fn app_role(base: &Path, host: &str, port: u16, local_bin: &Path, sshd_port: u16) -> HostRolePlan {
    let h = base.join(host);
    let conf = format!("# app config\nname = {host}\nlisten = 0.0.0.0\nport = {port}\nlog = info\n");
    let bin_sha = hex::encode(Sha256::digest(std::fs::read(local_bin).unwrap()));
    let tasks = vec![
        task("etc dir", Action::Directory { path: h.join("etc").display().to_string(), mode: 0o755, owner: "root".into(), group: "root".into() }),
        task("bin dir", Action::Directory { path: h.join("bin").display().to_string(), mode: 0o755, owner: "root".into(), group: "root".into() }),
        task("data dir", Action::Directory { path: h.join("data").display().to_string(), mode: 0o700, owner: "root".into(), group: "root".into() }),
        task("app.conf", file(&h.join("etc/app.conf"), Content::Inline(conf.into_bytes().into()), 0o644, false)),
        task("app.env", file(&h.join("etc/app.env"), Content::Inline(format!("TOKEN=s3cret-{port}\n").into_bytes().into()), 0o600, true)),
        task("extra.conf", file(&h.join("etc/extra.conf"), Content::Inline(b"a = 1\nb = 2\n".as_slice().into()), 0o640, false)),
        task("binary", file(&h.join("bin/app"), Content::Local { path: local_bin.to_path_buf(), sha256: bin_sha }, 0o755, false)),
        task("link", Action::Link { path: h.join("bin/app-current").display().to_string(), target: h.join("bin/app").display().to_string() }),
        task("old gone", Action::Absent { path: h.join("old.txt").display().to_string() }),
        task("init once", Action::Command { cmd: format!("echo init > {}", h.join("data/marker").display()).into(), creates: Some(h.join("data/marker").display().to_string()), unless: None, unless_slow: false }),
        task("flag", Action::Command { cmd: format!("touch {}", h.join("data/flag").display()).into(), creates: None, unless: Some(format!("test -f {}", h.join("data/flag").display()).into()), unless_slow: false }),
        task("sshd answers", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: sshd_port }, timeout_secs: 5, diagnose: None }),
    ];
    HostRolePlan { host: host.into(), role: "app".into(), tasks }
}

struct Setup {
    _work: tempfile::TempDir,
    base: PathBuf,
    cluster: PathBuf,
    bin: PathBuf,
}

fn setup(sshds: &[&Sshd]) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("hosts");
    let cluster = work.path().join("clusters/test");
    std::fs::create_dir_all(&cluster).unwrap();
    let kh: String = sshds.iter().map(|s| s.known_hosts_line()).collect();
    std::fs::write(cluster.join("known_hosts"), kh).unwrap();
    let bin = work.path().join("app-bin");
    std::fs::write(&bin, b"#!/bin/sh\necho app\n".repeat(100)).unwrap();
    Setup { base, cluster, bin, _work: work }
}

fn step(roles: Vec<HostRolePlan>) -> StepPlan {
    StepPlan { needs_nodes: false, step: "test".into(), waves: vec![Wave { roles: vec!["app".into()], hosts: roles, serial: Default::default() }] }
}

fn opts(plan_only: bool) -> Options {
    Options { plan_only, progress: Some(false), json: true, connect_attempts: 1, ..Options::default() }
}

/// A port on 127.0.0.1 that accepts every connection and drops it, for wait probes. Probing
/// the test's sshd instead makes it fork a pre-auth child per probe, and under load sshd's
/// MaxStartups refuses some of them: the probe then fails for a reason the role is not about.
fn answering_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    port
}

fn sha_of(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn json(recap: &ezk::ui::recap::Recap) -> serde_json::Value {
    serde_json::from_str(&recap.to_json()).unwrap()
}

#[test]
fn converges_on_three_hosts_in_few_round_trips_and_plan_shows_exact_diff() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let hosts = ["h1", "h2", "h3"];
    let conns: IndexMap<String, Connection> = hosts.iter().map(|h| (h.to_string(), server.connection())).collect();
    let answers = answering_port();
    let plan = |port| step(hosts.iter().map(|h| app_role(&s.base, h, port, &s.bin, answers)).collect());
    std::fs::create_dir_all(s.base.join("h1")).unwrap();
    std::fs::write(s.base.join("h1/old.txt"), "stale").unwrap();

    let r1 = run_step(&s.cluster, &plan(8080), &conns, &opts(false)).unwrap();
    let j1 = json(&r1);
    assert_eq!(r1.exit_code(), 0, "{}", r1.to_json());
    for h in hosts {
        let hr = &j1["hosts"][h];
        assert!(hr["changed"].as_u64().unwrap() >= 10, "{h}: {hr}");
        assert_eq!(hr["failed"], 0);
        // 12 tasks, and still: one gather + one apply.
        assert!(hr["round_trips_by_role"]["app"].as_u64().unwrap() <= 3, "{hr}");
        assert_eq!(hr["round_trips_by_role"]["app"], 2, "{hr}");
    }
    assert!(!s.base.join("h1/old.txt").exists());
    assert_eq!(std::fs::read_to_string(s.base.join("h2/data/marker")).unwrap(), "init\n");
    let env = s.base.join("h3/etc/app.env");
    assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_link(s.base.join("h3/bin/app-current")).unwrap(), s.base.join("h3/bin/app"));
    let log = r1.log.clone().unwrap();
    assert!(log.starts_with(s.cluster.join("logs")) && log.exists());

    // Second run: nothing to do, one round trip per host (the gather).
    let r2 = run_step(&s.cluster, &plan(8080), &conns, &opts(false)).unwrap();
    let j2 = json(&r2);
    for h in hosts {
        assert_eq!(j2["hosts"][h]["changed"], 0, "{}", r2.to_json());
        assert_eq!(j2["hosts"][h]["round_trips"], 1, "{}", r2.to_json());
    }

    // A var change: --plan shows exactly the changed line, masks the secret, applies nothing.
    let before = sha_of(&s.base.join("h1/etc/app.conf"));
    let rp = run_step(&s.cluster, &plan(9090), &conns, &opts(true)).unwrap();
    let lines = &rp.plan["h1"];
    let conf = s.base.join("h1/etc/app.conf").display().to_string();
    let env1 = s.base.join("h1/etc/app.env").display().to_string();
    let changed: Vec<&String> = lines.iter().filter(|l| l.contains("    -") || l.contains("    +")).collect();
    assert_eq!(changed, vec!["[app]     -port = 8080", "[app]     +port = 9090"], "{lines:#?}");
    assert!(lines.contains(&format!("[app] changed {conf}")), "{lines:#?}");
    assert!(lines.contains(&format!("[app] changed {env1}: secret content changed")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("s3cret")), "secret printed: {lines:#?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("[app] changed")).count(), 2, "{lines:#?}");
    assert_eq!(sha_of(&s.base.join("h1/etc/app.conf")), before, "plan mode changed a file");
    assert_eq!(rp.hosts["h1"].changed, 2);

    // Applying it, then planning again: nothing left to do.
    let r3 = run_step(&s.cluster, &plan(9090), &conns, &opts(false)).unwrap();
    assert_eq!(r3.hosts["h2"].changed, 2, "{}", r3.to_json());
    let rp2 = run_step(&s.cluster, &plan(9090), &conns, &opts(true)).unwrap();
    assert!(rp2.plan.values().all(|l| l.is_empty()), "{:#?}", rp2.plan);
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn unreachable_host_is_reported_others_complete_lock_released() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let mut conns: IndexMap<String, Connection> = IndexMap::new();
    conns.insert("up1".into(), server.connection());
    conns.insert("down".into(), Connection { port: sshd::free_port(), ..server.connection() });
    conns.insert("up2".into(), server.connection());
    let plan = step(conns.keys().map(|h| app_role(&s.base, h, 1, &s.bin, answering_port())).collect());
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    let j = json(&r);
    assert_eq!(j["hosts"]["down"]["unreachable"], 1, "{}", r.to_json());
    assert_eq!(j["hosts"]["down"]["changed"], 0);
    assert!(j["hosts"]["up1"]["changed"].as_u64().unwrap() >= 10);
    assert!(j["hosts"]["up2"]["changed"].as_u64().unwrap() >= 10);
    assert_ne!(r.exit_code(), 0);
    ezk::exec::lock::lock_cluster(&s.cluster).expect("lock released after the run");
}

#[test]
fn second_concurrent_run_is_refused_by_the_lock() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h".to_string(), server.connection())].into_iter().collect();
    let _held = ezk::exec::lock::lock_cluster(&s.cluster).unwrap();
    let err = run_step(&s.cluster, &step(vec![app_role(&s.base, "h", 1, &s.bin, answering_port())]), &conns, &opts(false)).unwrap_err();
    assert!(err.to_string().contains("another ezk run is in progress"), "{err}");
    assert!(!s.base.join("h").exists(), "a refused run touched the host");
}

/// One host whose key is not accepted refuses the whole run: the host whose key is fine gets
/// nothing either (connections are all opened before the first change).
#[test]
fn one_refused_host_key_refuses_the_whole_run() {
    let good = Sshd::start(None);
    let unknown = Sshd::start(Some(&good.client_key));
    let s = setup(&[&good]);
    let conns: IndexMap<String, Connection> =
        [("good".to_string(), good.connection()), ("unknown".to_string(), unknown.connection())].into_iter().collect();
    let plan = step(vec![app_role(&s.base, "good", 1, &s.bin, good.port), app_role(&s.base, "unknown", 1, &s.bin, unknown.port)]);
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 2, "{}", r.to_json());
    assert_eq!(r.hosts["unknown"].unreachable, 1, "{}", r.to_json());
    assert_eq!((r.hosts["good"].changed, r.hosts["good"].skipped), (0, 12), "{}", r.to_json());
    assert_eq!(r.refused.as_deref(), Some("run refused: the host key of unknown was not accepted (see above); nothing was changed on any host"));
    assert!(!s.base.join("good").exists() && !s.base.join("unknown").exists(), "a refused run touched a host");
    // Plan mode refuses the same way: nothing gathered, nothing described.
    let r = run_step(&s.cluster, &plan, &conns, &opts(true)).unwrap();
    assert!(r.refused.is_some() && r.plan["good"].is_empty(), "{}", r.to_json());
}

#[test]
fn unknown_host_key_is_refused_unless_accepted_explicitly() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    std::fs::remove_file(s.cluster.join("known_hosts")).unwrap();
    let conns: IndexMap<String, Connection> = [("h".to_string(), server.connection())].into_iter().collect();
    let plan = step(vec![app_role(&s.base, "h", 1, &s.bin, answering_port())]);
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.hosts["h"].unreachable, 1, "{}", r.to_json());
    let kh = s.cluster.join("known_hosts");
    let want = format!("host key unknown: no key for [127.0.0.1]:{} in {} or ~/.ssh/known_hosts", server.port, kh.display());
    assert!(r.hosts["h"].errors[0].contains(&want), "{:?}", r.hosts["h"].errors);
    assert!(r.hosts["h"].errors[0].contains("--accept-new-host-keys"), "{:?}", r.hosts["h"].errors);
    assert!(!s.base.join("h").exists());
    let accept = Options { accept_new_host_keys: true, ..opts(false) };
    let r = run_step(&s.cluster, &plan, &conns, &accept).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    // Recorded in the cluster's known_hosts, so the next strict run passes.
    // (ssh may hash the host name, so only the key is checked.)
    let key = server.known_hosts_line().split_whitespace().nth(2).unwrap().to_string();
    assert!(std::fs::read_to_string(s.cluster.join("known_hosts")).unwrap().contains(&key));
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
}

/// Pids of ssh master processes for `port` (the openssh crate starts `ssh -M ... -p PORT`).
fn ssh_masters(port: u16) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.ends_with("ssh"))
            && args.iter().any(|a| a == "-M")
            && args.windows(2).any(|w| w[0] == "-p" && w[1] == port.to_string())
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn connection_killed_mid_upload_leaves_old_or_new_never_partial() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h".to_string(), server.connection())].into_iter().collect();
    // First install: small content.
    let big_dir = s.base.join("h/big");
    std::fs::create_dir_all(&big_dir).unwrap();
    let target = big_dir.join("blob");
    std::fs::write(&target, b"old content\n").unwrap();
    let old_sha = sha_of(&target);
    // New content: 192 MiB from a local file, so the upload takes a while.
    let local = s.base.parent().unwrap().join("blob-new");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..192u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            f.write_all(&block).unwrap();
        }
    }
    let new_sha = sha_of(&local);
    let plan = step(vec![HostRolePlan {
        host: "h".into(),
        role: "app".into(),
        tasks: vec![task("blob", file(&target, Content::Local { path: local.clone(), sha256: new_sha.clone() }, 0o644, false))],
    }]);
    let killer = {
        let big_dir = big_dir.clone();
        let port = server.port;
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while t0.elapsed() < std::time::Duration::from_secs(30) {
                let partial = std::fs::read_dir(&big_dir).unwrap().flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(".ezk-tmp.") && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
                });
                if partial {
                    for pid in ssh_masters(port) {
                        unsafe_kill(pid);
                    }
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            false
        })
    };
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert!(killer.join().unwrap(), "upload finished before the kill; make the file bigger");
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    let sha = sha_of(&target);
    assert!(sha == old_sha || sha == new_sha, "partial file on the host");
    // Re-run converges, and no temp file is left behind.
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert_eq!(sha_of(&target), new_sha);
    let left: Vec<_> = std::fs::read_dir(&big_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

fn unsafe_kill(pid: i32) {
    // `kill -9 <pid>`: the test owns this ssh process (started by this test's run).
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
}

#[test]
fn failed_host_stops_and_does_nothing_in_later_waves() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = ["good", "bad"].iter().map(|h| (h.to_string(), server.connection())).collect();
    let w1 = |h: &str| HostRolePlan {
        host: h.into(),
        role: "first".into(),
        tasks: vec![
            task("dir", Action::Directory { path: s.base.join(h).display().to_string(), mode: 0o755, owner: "root".into(), group: "root".into() }),
            task("maybe fail", Action::Command { cmd: if h == "bad" { "echo broken >&2; exit 3".into() } else { "true".into() }, creates: None, unless: None, unless_slow: false }),
            task("after", file(&s.base.join(h).join("after"), Content::Inline(b"x".as_slice().into()), 0o644, false)),
        ],
    };
    let w2 = |h: &str| HostRolePlan {
        host: h.into(),
        role: "second".into(),
        tasks: vec![task("second", file(&s.base.join(h).join("second"), Content::Inline(b"y".as_slice().into()), 0o644, false))],
    };
    let plan = StepPlan {
        needs_nodes: false,
        step: "two".into(),
        waves: vec![
            Wave { roles: vec!["first".into()], hosts: vec![w1("good"), w1("bad")], serial: Default::default() },
            Wave { roles: vec!["second".into()], hosts: vec![w2("good"), w2("bad")], serial: Default::default() },
        ],
    };
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_ne!(r.exit_code(), 0);
    let bad = &r.hosts["bad"];
    assert_eq!(bad.failed, 1, "{}", r.to_json());
    assert!(bad.errors[0].contains("maybe fail") && bad.errors[0].contains("broken"), "{:?}", bad.errors);
    assert!(!s.base.join("bad/after").exists(), "failed host went on with its role");
    assert!(!s.base.join("bad/second").exists(), "failed host ran a later wave");
    assert!(s.base.join("good/second").exists());
    assert_eq!(r.hosts["good"].failed, 0);
}

/// A step's roles share one gather per host: a no-op step is one round trip per host, later
/// waves included, unless a later role asks a command or waits for something (those gather in
/// their own wave). Facts gathered ahead are dropped once anything was applied anywhere: a
/// later wave then sees what the earlier one changed, on its own host and on another.
#[test]
fn a_no_op_step_is_one_gather_per_host_and_an_apply_makes_later_waves_look_again() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = ["h1", "h2"].iter().map(|h| (h.to_string(), server.connection())).collect();
    let p = |rel: &str| s.base.join(rel).display().to_string();
    let role = |h: &str, role: &str, tasks: Vec<Task>| HostRolePlan { host: h.into(), role: role.into(), tasks };
    let dir = |path: String| task("dir", Action::Directory { path, mode: 0o755, owner: "root".into(), group: "root".into() });
    // Wave 1: h1 writes its `ready`; h2 only has a directory, made before the run (no change).
    // Wave 2: each host appends to its log unless h1's `ready` exists (a `creates` guard: read
    // ahead). Wave 3, h1 only: a wait probe (not read ahead).
    std::fs::create_dir_all(s.base.join("h2/d")).unwrap();
    let plan = StepPlan {
        needs_nodes: false,
        step: "ahead".into(),
        waves: vec![
            Wave {
                roles: vec!["first".into(), "second".into()],
                hosts: vec![
                    role("h1", "first", vec![dir(p("h1")), task("ready", file(&s.base.join("h1/ready"), Content::Inline(b"1".as_slice().into()), 0o644, false))]),
                    role("h1", "second", vec![dir(p("h1/d"))]),
                    role("h2", "second", vec![dir(p("h2/d"))]),
                ],
                serial: Default::default(),
            },
            Wave {
                roles: vec!["later".into()],
                hosts: ["h1", "h2"]
                    .iter()
                    .map(|h| role(h, "later", vec![task("log", Action::Command { cmd: format!("echo ran >> {}", p(&format!("{h}/log"))).into(), creates: Some(p("h1/ready")), unless: None, unless_slow: false })]))
                    .collect(),
                serial: Default::default(),
            },
            Wave {
                roles: vec!["probe".into()],
                hosts: vec![role("h1", "probe", vec![task("sshd answers", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: answering_port() }, timeout_secs: 5, diagnose: None })])],
                serial: Default::default(),
            },
        ],
    };
    let r1 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r1.exit_code(), 0, "{}", r1.to_json());
    assert!(s.base.join("h1/ready").exists());
    for h in ["h1", "h2"] {
        assert!(!s.base.join(h).join("log").exists(), "{h}: wave 2 used facts from before wave 1 made h1/ready: {}", r1.to_json());
    }

    let r2 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    let j2 = json(&r2);
    assert_eq!(r2.exit_code(), 0, "{}", r2.to_json());
    for h in ["h1", "h2"] {
        assert_eq!(j2["hosts"][h]["changed"], 0, "{}", r2.to_json());
    }
    // h1: one gather for first, second and later, one for the wait probe; h2: one in all.
    assert_eq!(j2["hosts"]["h1"]["round_trips"], 2, "{}", r2.to_json());
    assert_eq!(j2["hosts"]["h2"]["round_trips"], 1, "{}", r2.to_json());
    assert!(!s.base.join("h1/log").exists() && !s.base.join("h2/log").exists());

    // Plan mode reads ahead too, and shows the same nothing.
    let rp = run_step(&s.cluster, &plan, &conns, &opts(true)).unwrap();
    assert_eq!(rp.hosts["h2"].round_trips, 1, "{}", rp.to_json());
    assert_eq!(rp.hosts["h1"].changed + rp.hosts["h2"].changed, 0, "{}", rp.to_json());

    // Stale facts would miss a change: h1's first role removes `own` and `shared`, which
    // h1's second role (same wave, after it) and h2's later role (next wave) write. Both were
    // gathered before the removal, and both must write again.
    let put = |rel: &str, body: &'static [u8]| task(rel, file(&s.base.join(rel), Content::Inline(body.into()), 0o644, false));
    let flip = StepPlan {
        needs_nodes: false,
        step: "flip".into(),
        waves: vec![
            Wave {
                roles: vec!["first".into(), "second".into()],
                hosts: vec![
                    role("h1", "first", vec![task("own", Action::Absent { path: p("h1/own") }), task("shared", Action::Absent { path: p("h1/shared") })]),
                    role("h1", "second", vec![put("h1/own", b"o")]),
                    role("h2", "second", vec![dir(p("h2/d"))]),
                ],
                serial: Default::default(),
            },
            Wave { roles: vec!["later".into()], hosts: vec![role("h2", "later", vec![put("h1/shared", b"s")])], serial: Default::default() },
        ],
    };
    std::fs::write(s.base.join("h1/own"), "o").unwrap();
    std::fs::write(s.base.join("h1/shared"), "s").unwrap();
    let r3 = run_step(&s.cluster, &flip, &conns, &opts(false)).unwrap();
    assert_eq!(r3.exit_code(), 0, "{}", r3.to_json());
    assert_eq!(std::fs::read_to_string(s.base.join("h1/own")).ok().as_deref(), Some("o"), "same host, same wave: {}", r3.to_json());
    assert_eq!(std::fs::read_to_string(s.base.join("h1/shared")).ok().as_deref(), Some("s"), "another host, later wave: {}", r3.to_json());
}

#[test]
fn concurrent_commands_on_one_host_stay_below_max_sessions() {
    use ezk::exec::ssh::{SshConnector, SshOptions};
    use ezk::exec::transport::{Connector, Transport};
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = SshConnector::new(SshOptions { known_hosts: vec![s.cluster.join("known_hosts")], ..SshOptions::default() });
        let t = std::sync::Arc::new(c.connect("h", &server.connection()).await.unwrap());
        // 25 commands at once on one master: sshd allows 10 sessions; the transport queues.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..25 {
            let t = t.clone();
            set.spawn(async move { t.run(&format!("sleep 0.2; echo {i}"), vec![], std::time::Duration::from_secs(30)).await });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            let out = r.unwrap().expect("no session refused");
            assert_eq!(out.code, 0);
            n += 1;
        }
        assert_eq!(n, 25);
        assert_eq!(t.round_trips(), 25);
    });
}

#[test]
fn wait_for_timeout_fails_the_host_with_diagnose_output() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h".to_string(), server.connection())].into_iter().collect();
    let closed = sshd::free_port();
    let plan = step(vec![HostRolePlan {
        host: "h".into(),
        role: "app".into(),
        tasks: vec![
            task("wait", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: closed }, timeout_secs: 2, diagnose: Some("echo why-it-failed".into()) }),
            task("after", file(&s.base.join("after"), Content::Inline(b"x".as_slice().into()), 0o644, false)),
        ],
    }]);
    let t0 = std::time::Instant::now();
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert!(t0.elapsed() >= std::time::Duration::from_secs(2), "did not wait");
    assert_eq!(r.hosts["h"].failed, 1, "{}", r.to_json());
    let err = &r.hosts["h"].errors[0];
    assert!(err.contains("timed out after 2s") && err.contains("why-it-failed"), "{err}");
    assert!(!s.base.join("after").exists(), "went on after a failed wait");
}

#[test]
fn an_over_limit_channel_is_reported_as_max_sessions() {
    use ezk::exec::ssh::{SshConnector, SshOptions};
    use ezk::exec::transport::{Connector, Transport, TransportError};
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The cap lifted above sshd's MaxSessions 10: the refusal must be named, not vague.
        let opts = SshOptions { known_hosts: vec![s.cluster.join("known_hosts")], channels_per_host: 30, ..SshOptions::default() };
        let t = std::sync::Arc::new(SshConnector::new(opts).connect("h", &server.connection()).await.unwrap());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let t = t.clone();
            set.spawn(async move { t.run("sleep 0.5", vec![], std::time::Duration::from_secs(30)).await });
        }
        let mut refused = 0;
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(_) => {}
                Err(e @ TransportError::TooManySessions { .. }) => {
                    assert!(e.to_string().contains("MaxSessions"), "{e}");
                    refused += 1;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(refused > 0, "sshd accepted more than MaxSessions channels?");
    });
}

#[test]
fn jump_host_is_used_and_its_key_checked_strictly() {
    let jump = Sshd::start(None);
    let target = Sshd::start(Some(&jump.client_key));
    let s = setup(&[&jump, &target]);
    let conns: IndexMap<String, Connection> = [("h".to_string(), target.connection())].into_iter().collect();
    let plan = step(vec![HostRolePlan {
        host: "h".into(),
        role: "app".into(),
        tasks: vec![task("via jump", file(&s.base.join("via-jump"), Content::Inline(b"j\n".as_slice().into()), 0o644, false))],
    }]);
    let o = Options { jump_hosts: vec![format!("root@127.0.0.1:{}", jump.port)], ..opts(false) };
    let r = run_step(&s.cluster, &plan, &conns, &o).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert!(s.base.join("via-jump").exists());
    let jump_log = std::fs::read_to_string(jump.dir.path().join("sshd.log")).unwrap();
    assert!(jump_log.contains("Accepted publickey for root"), "the jump host was not used:\n{jump_log}");
    // The same bastion named by the host itself (inventory's ansible_ssh_common_args →
    // Connection::jump), with no run-wide --jump: used too.
    let per_host: IndexMap<String, Connection> =
        [("h".to_string(), Connection { jump: Some(format!("root@127.0.0.1:{}", jump.port)), ..target.connection() })]
            .into_iter()
            .collect();
    std::fs::remove_file(s.base.join("via-jump")).unwrap();
    let before = std::fs::read_to_string(jump.dir.path().join("sshd.log")).unwrap().matches("Accepted publickey").count();
    let r = run_step(&s.cluster, &plan, &per_host, &opts(false)).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    assert!(s.base.join("via-jump").exists());
    let after = std::fs::read_to_string(jump.dir.path().join("sshd.log")).unwrap().matches("Accepted publickey").count();
    assert!(after > before, "the host's own jump host was not used");
    // The jump hop checks host keys as strictly as the target: unknown jump key → refused.
    let only_target = target.known_hosts_line();
    std::fs::write(s.cluster.join("known_hosts"), only_target).unwrap();
    let r = run_step(&s.cluster, &plan, &conns, &o).unwrap();
    assert_eq!(r.hosts["h"].unreachable, 1, "{}", r.to_json());
}

#[test]
fn run_log_is_a_timeline_and_vv_times_each_upload_stage() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h1".to_string(), server.connection())].into_iter().collect();
    let plan = step(vec![app_role(&s.base, "h1", 8080, &s.bin, answering_port())]);
    let r = run_step(&s.cluster, &plan, &conns, &Options { verbose: 2, ..opts(false) }).unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_json());
    let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
    // Events carry the time since the start; connect, gather and apply are timed per host.
    assert!(log.lines().nth(1).is_some_and(|l| l.starts_with("+0.")), "{log}");
    for phase in ["h1 connect ", "h1 [app] gather ", "h1 [app] apply "] {
        assert!(log.lines().any(|l| l.contains(phase) && l.ends_with(" ms")), "no {phase:?} in:\n{log}");
    }
    // -vv: each stage of the binary's upload (task 6), each with its duration.
    for stage in ["upload", "check", "fsync", "rename"] {
        let want = format!("h1 [app]   6 binary: {stage} ");
        assert!(log.lines().any(|l| l.contains(&want) && l.ends_with(" ms")), "no {want:?} in:\n{log}");
    }
    // Without -vv the script carries no marks (no `date` per task).
    let r2 = run_step(&s.cluster, &step(vec![app_role(&s.base, "h1", 9090, &s.bin, answering_port())]), &conns, &opts(false)).unwrap();
    let log2 = std::fs::read_to_string(r2.log.as_ref().unwrap()).unwrap();
    assert!(!log2.contains(": upload "), "{log2}");
}

#[test]
fn bytes_that_do_not_match_the_planned_sha256_never_land() {
    // The local file changed between planning and upload: the host hashes what it received,
    // refuses it, and leaves the old target and no temp file behind.
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h1".to_string(), server.connection())].into_iter().collect();
    let dir = s.base.join("h1");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("app");
    std::fs::write(&target, "old\n").unwrap();
    let planned = hex::encode(Sha256::digest(b"what was planned\n"));
    let t = task("binary", file(&target, Content::Local { path: s.bin.clone(), sha256: planned }, 0o755, false));
    let plan = step(vec![HostRolePlan { host: "h1".into(), role: "app".into(), tasks: vec![t] }]);
    let r = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_ne!(r.exit_code(), 0, "{}", r.to_json());
    assert!(r.hosts["h1"].errors.iter().any(|e| e.contains("checksum mismatch")), "{}", r.to_json());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("app")], "temp file left behind");
}

#[test]
fn known_checksums_spare_rehashing_yet_any_write_is_seen() {
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = [("h1".to_string(), server.connection())].into_iter().collect();
    let plan = step(vec![app_role(&s.base, "h1", 8080, &s.bin, answering_port())]);
    let bin = s.base.join("h1/bin/app");
    let r1 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r1.exit_code(), 0, "{}", r1.to_json());
    // Files changed within the last second are never recorded (coarse timestamps); let the
    // first run's writes age past that, then a no-op run records their sums.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r2 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r2.hosts["h1"].changed, 0, "{}", r2.to_json());
    let sums = std::fs::read_to_string(s.cluster.join("cache/h1.sums")).unwrap();
    let bin_sha = sha_of(&s.bin);
    assert!(sums.contains(&format!("\t{bin_sha}\t{}\n", bin.display())), "{sums}");

    // Third run: the host echoes the recorded sum instead of hashing; still nothing to do.
    let r3 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r3.hosts["h1"].changed, 0, "{}", r3.to_json());
    assert_eq!(r3.hosts["h1"].round_trips, 1);
    let log3 = std::fs::read_to_string(r3.log.as_ref().unwrap()).unwrap();
    assert!(log3.contains(&format!("'@@h {bin_sha}  {}'", bin.display())), "{log3}");

    // Same size, mtime put back: only the ctime tells, and that is enough.
    let old_mtime = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    std::fs::File::options().write(true).open(&bin).unwrap().set_modified(old_mtime).unwrap();
    let r4 = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap();
    assert_eq!(r4.hosts["h1"].changed, 1, "the rewritten binary must be put back: {}", r4.to_json());
    assert_eq!(sha_of(&bin), bin_sha);
}

#[test]
fn a_binary_not_downloaded_yet_is_planned_and_never_applied() {
    // `ezk setup --plan` before `ezk download`: the plan says what will be installed; a host
    // that already has the file the manifest pins shows nothing to do; a run is refused before
    // any connection.
    let server = Sshd::start(None);
    let s = setup(&[&server]);
    let conns: IndexMap<String, Connection> = ["h1", "h2"].iter().map(|h| (h.to_string(), server.connection())).collect();
    let bytes = b"kube-apiserver 1.31.2 as released\n";
    let have = s.base.join("h2/kube-apiserver");
    std::fs::create_dir_all(s.base.join("h1")).unwrap();
    std::fs::create_dir_all(have.parent().unwrap()).unwrap();
    std::fs::write(&have, bytes).unwrap();
    std::fs::set_permissions(&have, std::fs::Permissions::from_mode(0o755)).unwrap();
    let content = Content::NotDownloaded {
        name: "kube-apiserver".into(),
        version: "1.31.2".into(),
        sha256: Some(hex::encode(Sha256::digest(bytes))),
        fetch: "ezk download --k8s-ver 1.31.2 --only kube-apiserver".into(),
    };
    let plan = step(
        ["h1", "h2"]
            .iter()
            .map(|h| {
                let t = task("binary", file(&s.base.join(h).join("kube-apiserver"), content.clone(), 0o755, false));
                HostRolePlan { host: h.to_string(), role: "app".into(), tasks: vec![t] }
            })
            .collect(),
    );
    let rp = run_step(&s.cluster, &plan, &conns, &opts(true)).unwrap();
    let want = s.base.join("h1/kube-apiserver").display().to_string();
    assert_eq!(rp.plan["h1"], vec![format!("[app] new {want}: will install kube-apiserver 1.31.2 (not downloaded yet)")], "{:#?}", rp.plan);
    assert!(rp.plan["h2"].is_empty(), "{:#?}", rp.plan);

    let err = run_step(&s.cluster, &plan, &conns, &opts(false)).unwrap_err().to_string();
    assert!(err.contains("nothing was changed on any host"), "{err}");
    assert!(err.contains("kube-apiserver 1.31.2: ezk download --k8s-ver 1.31.2 --only kube-apiserver"), "{err}");
    assert!(!s.base.join("h1/kube-apiserver").exists());
}
