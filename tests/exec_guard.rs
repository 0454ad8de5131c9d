//! Decide and the fact parser with scripted facts (no host): what gets skipped, changed,
//! warned about or refused, and what `--plan` says about it. Each case: tasks + the gather
//! output a host would print → the decisions and plan lines. Cases about the apply script
//! (what runs, in which order, what travels on stdin) are fixtures: see
//! `exec_guard_fixtures.rs` and `tests/fixtures/exec-guard/`.

use ezk::exec::apply::{apply_script, parse_results};
use ezk::exec::decide::{Change, Verdict, decide_role, pending_handlers};
use ezk::exec::desired::desired_state;
use ezk::exec::gather::{FactError, parse_facts};
use ezk::exec::report::plan_lines::describe;
use ezk::plan::action::{Action, Content, FileSpec, Task, WaitTarget};
use sha2::{Digest, Sha256};

fn task(name: &str, action: Action, notify: &[&str]) -> Task {
    Task { name: name.into(), origin: "roles/x/tasks.yml:1".into(), action, notify: notify.iter().map(|s| s.to_string()).collect() }
}

fn file(path: &str, content: &str, mode: u32, secret: bool) -> Action {
    Action::File(FileSpec { path: path.into(), content: Content::Inline(content.as_bytes().into()), mode, owner: "root".into(), group: "root".into(), secret })
}

/// Gather lines for a path: `find -printf` (kind, mode, owner, group, link target, path).
fn f_line(kind: &str, mode: &str, path: &str) -> String {
    format!("@@f\t{kind}\t{mode}\troot\troot\t\t{path}\n")
}

/// Gather line for a file hash (`sha256sum` output).
fn h_line(content: &str, path: &str) -> String {
    format!("@@h {}  {path}\n", sha(content))
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                o.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

#[test]
fn identical_file_is_ok_and_needs_no_apply() {
    let tasks = vec![task("conf", file("/etc/a.conf", "x=1\n", 0o644, false), &["svc"])];
    let w = desired_state(&tasks).unwrap();
    let facts = parse_facts(&format!("{}{}@@end\n", f_line("f", "644", "/etc/a.conf"), h_line("x=1\n", "/etc/a.conf")), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[0].verdict, Verdict::Ok);
    assert!(!d[0].needs_apply());
    assert!(pending_handlers(&tasks, &d, &facts).is_empty(), "unchanged file notified");
}

#[test]
fn text_diff_shown_secret_masked() {
    let tasks = vec![
        task("conf", file("/etc/a.conf", "a\nport=2\n", 0o644, false), &[]),
        task("key", file("/etc/a.key", "NEWKEY\n", 0o600, true), &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let out = format!(
        "{}{}@@c 0 {}\n{}{}@@end\n",
        f_line("f", "644", "/etc/a.conf"),
        h_line("a\nport=1\n", "/etc/a.conf"),
        b64("a\nport=1\n"),
        f_line("f", "600", "/etc/a.key"),
        h_line("OLDKEY\n", "/etc/a.key")
    );
    let facts = parse_facts(&out, "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(
        describe(&tasks[0], &w[0], &d[0]),
        vec!["changed /etc/a.conf", "    @@ -1,2 +1,2 @@", "     a", "    -port=1", "    +port=2"]
    );
    assert_eq!(describe(&tasks[1], &w[1], &d[1]), vec!["changed /etc/a.key: secret content changed"]);
}

#[test]
fn sysctl_unknown_or_read_only_keys_are_warnings_not_changes() {
    let entries = vec![("net.ipv4.ip_forward".to_string(), "1".to_string()), ("kernel.pid_max".to_string(), "4194303".to_string()), ("vm.nope".to_string(), "1".to_string())];
    let tasks = vec![task("sysctl", Action::Sysctl { file: "/etc/sysctl.d/95.conf".into(), entries: entries.clone() }, &[])];
    let w = desired_state(&tasks).unwrap();
    let file_sha = w[0].sha256().unwrap().to_string();
    let path = "/etc/sysctl.d/95.conf";
    let out = format!(
        "@@f\tf\t644\troot\troot\t\t{path}\n@@h {file_sha}  {path}\n@@s net.ipv4.ip_forward = 1\n@@s kernel.pid_max = 32768\n@@sw net.ipv4.ip_forward\n@@end\n"
    );
    let d = decide_role(&tasks, &w, &parse_facts(&out, "", &tasks).unwrap());
    assert_eq!(d[0].verdict, Verdict::Ok);
    assert_eq!(d[0].warnings.len(), 2, "{:?}", d[0].warnings);
    assert!(!d[0].needs_apply(), "a read-only key must not force an apply every run");
}

#[test]
fn command_guards_and_wait_probes() {
    let tasks = vec![
        task("init", Action::Command { cmd: "init".into(), creates: Some("/var/lib/x".into()), unless: None, unless_slow: false }, &[]),
        task("always", Action::Command { cmd: "echo".into(), creates: None, unless: None, unless_slow: false }, &[]),
        task("wait", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: 2379 }, timeout_secs: 30, diagnose: None }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let d = decide_role(&tasks, &w, &parse_facts("@@g 0 1\n@@w 2 1\n@@end\n", "", &tasks).unwrap());
    assert!(matches!(d[0].verdict, Verdict::Skip(_)));
    assert_eq!(d[1].verdict, Verdict::Change(vec![Change::Run]));
    assert_eq!(d[2].verdict, Verdict::Ok);
    let d = decide_role(&tasks, &w, &parse_facts("@@g 0 0\n@@w 2 0\n@@end\n", "", &tasks).unwrap());
    assert_eq!(d[0].verdict, Verdict::Change(vec![Change::Run]));
    assert_eq!(d[2].verdict, Verdict::Wait);
}

/// Guards are gathered in a role's first round trip, before its files go up: a guard met then
/// that names a file an earlier task of the role changes (kube-master's RBAC apply behind
/// `kubectl diff -f <the manifest it writes>`) must not skip its command on that stale answer.
/// The apply checks the guard again, after the upload.
#[test]
fn a_guard_naming_a_file_changed_before_it_is_checked_again_in_the_apply() {
    let m = "/etc/kubernetes/rbac.yaml";
    let tasks = vec![
        task("manifest", file(m, "kind: ClusterRole # v2\n", 0o644, false), &[]),
        task("applied", Action::Command { cmd: format!("kubectl apply -f {m}").into(), creates: None, unless: Some(format!("kubectl diff -f {m}").into()), unless_slow: false }, &[]),
        task("other", Action::Command { cmd: "init".into(), creates: Some("/var/lib/x".into()), unless: None, unless_slow: false }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let gathered = |content: &str| format!("{}{}@@g 1 1\n@@g 2 1\n@@end\n", f_line("f", "644", m), h_line(content, m));
    // The manifest changes: the apply runs the command unless the guard, checked again, holds.
    let d = decide_role(&tasks, &w, &parse_facts(&gathered("kind: ClusterRole # v1\n"), "", &tasks).unwrap());
    assert_eq!(d[1].verdict, Verdict::Change(vec![Change::Recheck { path: m.into() }]));
    assert_eq!(describe(&tasks[1], &w[1], &d[1]), vec![format!("run unless its guard still holds once {m} is changed: kubectl apply -f {m}")]);
    // A guard that names no changed file keeps its answer.
    assert!(matches!(d[2].verdict, Verdict::Skip(_)), "{:?}", d[2].verdict);
    let script = apply_script(&tasks, &w, &d, &[]).script;
    assert!(script.contains(&format!("kubectl diff -f {m}")), "{script}");
    assert!(script.contains("'@@r 1 skipped'"), "the apply checks the guard again:\n{script}");
    assert!(!script.contains("'@@r 2 "), "{script}");
    // The manifest as wanted: the gathered answer stands.
    let d = decide_role(&tasks, &w, &parse_facts(&gathered("kind: ClusterRole # v2\n"), "", &tasks).unwrap());
    assert!(d.iter().all(|d| !d.needs_apply()), "{d:?}");
}

#[test]
fn directory_where_a_file_is_wanted_fails_before_touching_anything() {
    let tasks = vec![task("conf", file("/etc/a.conf", "x\n", 0o644, false), &[])];
    let w = desired_state(&tasks).unwrap();
    let d = decide_role(&tasks, &w, &parse_facts(&format!("{}@@end\n", f_line("d", "755", "/etc/a.conf")), "", &tasks).unwrap());
    assert!(matches!(&d[0].verdict, Verdict::Fail(m) if m.contains("not a regular file")), "{d:?}");
}

#[test]
fn offline_packages_are_verified_not_installed() {
    let tasks = vec![task("pkgs", Action::Package { names: vec!["conntrack".into(), "ipset".into()], offline: true }, &[])];
    let w = desired_state(&tasks).unwrap();
    let d = decide_role(&tasks, &w, &parse_facts("@@k conntrack ii \n@@k ipset un \n@@end\n", "", &tasks).unwrap());
    assert!(matches!(&d[0].verdict, Verdict::Fail(m) if m.contains("ipset") && !m.contains("conntrack")), "{d:?}");
}

#[test]
fn truncated_or_garbled_gather_output_is_an_error() {
    assert!(matches!(parse_facts("@@g 0 1\n", "broken pipe", &[]), Err(FactError::Truncated(e)) if e == "broken pipe"));
    assert!(matches!(parse_facts("@@g x 1\n@@end\n", "", &[]), Err(FactError::BadLine { line: 1, .. })));
    assert!(matches!(parse_facts("@@f\tf\tbad\troot\troot\t\t/x\n@@end\n", "", &[]), Err(FactError::BadLine { line: 1, .. })));
    // Noise from login scripts is ignored; a path find did not list does not exist.
    let tasks = vec![task("gone", Action::Absent { path: "/x".into() }, &[])];
    let f = parse_facts("Welcome!\n@@end\n", "", &tasks).unwrap();
    assert_eq!(f[&0].path.as_ref().unwrap().kind, ezk::exec::gather::PathKind::None);
}

#[test]
fn result_markers_parse() {
    let r = parse_results("@@r 0 changed\n@@x 1 sysctl a: refused\n@@r 1 ok\n@@r 2 failed command exited 3\n@@o 2 boom\n");
    assert_eq!(r.tasks[&0].status, "changed");
    assert_eq!(r.tasks[&1].warnings, vec!["sysctl a: refused"]);
    assert_eq!(r.tasks[&2].message, "command exited 3");
    assert_eq!(r.tasks[&2].output, vec!["boom"]);
    assert!(!r.done);
}


/// A no-op gather of installed packages starts no `dpkg-query` once dpkg's database has the
/// signature recorded while they were all installed; any other signature asks dpkg again.
/// Runs the real gather script with `sh` against this machine's own dpkg database, with a
/// `dpkg-query` first on PATH that logs each call and runs the real one (a test double that
/// only counts).
#[test]
fn installed_packages_are_not_queried_again_while_dpkg_is_unchanged() {
    use ezk::exec::gather::checksums::Checksums;
    use ezk::exec::gather::gather_script;
    if !std::path::Path::new("/var/lib/dpkg/status").exists() {
        eprintln!("no dpkg database on this machine: nothing to check");
        return;
    }
    let tasks = vec![task("pkgs", Action::Package { names: vec!["dpkg".into(), "coreutils".into()], offline: true }, &[])];
    let w = desired_state(&tasks).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let shim = dir.path().join("dpkg-query");
    std::fs::write(&shim, format!("#!/bin/sh\necho call >> {}\nexec /usr/bin/dpkg-query \"$@\"\n", log.display())).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let run = |sums: &Checksums| {
        let out = std::process::Command::new("sh").arg("-c").arg(gather_script(&tasks, &w, false, sums)).env("PATH", &path).output().unwrap();
        let facts = parse_facts(&String::from_utf8_lossy(&out.stdout), &String::from_utf8_lossy(&out.stderr), &tasks).unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
        (facts, calls)
    };
    let mut sums = Checksums::default();
    let (first, calls) = run(&sums);
    assert_eq!(first[&0].packages, vec![("dpkg".to_string(), true), ("coreutils".to_string(), true)]);
    assert_eq!(calls, 1, "the first gather asks dpkg");
    assert!(first[&0].packages_sig.is_some(), "dpkg's database signature: {:?}", first[&0]);
    sums.learn(&tasks, &w, &first);
    let (second, calls) = run(&sums);
    assert_eq!(second[&0].packages, first[&0].packages);
    assert_eq!(calls, 1, "the second gather asked dpkg again");
    // The same record under another signature (dpkg's database changed since): asked again.
    let file = dir.path().join("sums");
    sums.save(&file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    // The record's first field is the signature (device:inode:...): another inode.
    std::fs::write(&file, text.replacen(':', ":9", 1)).unwrap();
    let changed = Checksums::load(&file);
    assert_ne!(changed, sums);
    let (third, calls) = run(&changed);
    assert_eq!(third[&0].packages, first[&0].packages);
    assert_eq!(calls, 2, "a changed database was not asked");
    // Recorded only while every package is installed.
    let tasks2 = vec![task("pkgs", Action::Package { names: vec!["dpkg".into(), "ipset".into()], offline: true }, &[])];
    let w2 = desired_state(&tasks2).unwrap();
    let db = "@@now 2000.5\n@@f\tf\t644\troot\troot\t\t/var/lib/dpkg/status\n@@i\t1:2:3:4:5\t/var/lib/dpkg/status\n\
              @@f\td\t755\troot\troot\t\t/var/lib/dpkg/updates\n@@i\t1:7:3:4:5\t/var/lib/dpkg/updates\n";
    let mut rec = Checksums::default();
    rec.learn(&tasks2, &w2, &parse_facts(&format!("{db}@@k dpkg ii \n@@k ipset ii \n@@end\n"), "", &tasks2).unwrap());
    assert_ne!(rec, Checksums::default(), "both installed, a signature: recorded");
    rec.learn(&tasks2, &w2, &parse_facts(&format!("{db}@@k dpkg ii \n@@k ipset rc \n@@end\n"), "", &tasks2).unwrap());
    assert_eq!(rec, Checksums::default(), "one removed: the record is forgotten");
}

/// A host's roles gathered together (a step's shared round trip) start one `find` between
/// them, whatever the number of roles, and each role reads back exactly the facts its own
/// gather would have given. Runs the real scripts with `sh` against files in a temp dir, with
/// a `find` first on PATH that logs each call and runs the real one.
#[test]
fn a_shared_gather_finds_every_path_at_once_and_each_role_gets_its_own_facts() {
    use ezk::exec::gather::checksums::Checksums;
    use ezk::exec::gather::{gather_script, gather_script_many, parse_facts_many};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("a.conf"), "a\n").unwrap();
    std::fs::write(p("b.conf"), "old\n").unwrap();
    std::fs::create_dir(p("d")).unwrap();
    let log = dir.path().join("calls");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = ["/usr/bin/find", "/bin/find"].into_iter().find(|f| std::path::Path::new(f).exists()).expect("find");
    std::fs::write(bin.join("find"), format!("#!/bin/sh\necho call >> {}\nexec {real} \"$@\"\n", log.display())).unwrap();
    std::fs::set_permissions(bin.join("find"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let roles = [
        vec![
            task("a", file(&p("a.conf"), "a\n", 0o644, false), &[]),
            task("d", Action::Directory { path: p("d"), mode: 0o755, owner: "root".into(), group: "root".into() }, &[]),
            task("guard", Action::Command { cmd: "x".into(), creates: None, unless: Some(format!("grep -q a {}", p("a.conf")).into()), unless_slow: false }, &[]),
        ],
        vec![task("pkgs", Action::Package { names: vec!["dpkg".into()], offline: true }, &[])],
        vec![
            task("b", file(&p("b.conf"), "new\n", 0o644, false), &[]),
            task("gone", Action::Absent { path: p("gone") }, &[]),
            task("a again", file(&p("a.conf"), "a\n", 0o644, false), &[]),
        ],
    ];
    let wants: Vec<_> = roles.iter().map(|t| desired_state(t).unwrap()).collect();
    let run = |script: &str| {
        let _ = std::fs::remove_file(&log);
        let out = std::process::Command::new("sh").arg("-c").arg(script).env("PATH", &path).output().unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), calls)
    };
    let sums = Checksums::default();
    let list: Vec<_> = roles.iter().zip(&wants).map(|(t, w)| (t.as_slice(), w.as_slice())).collect();
    let (stdout, stderr, calls) = run(&gather_script_many(&list, false, &sums));
    assert_eq!(calls, 1, "one find for {} roles", roles.len());
    let tasks: Vec<&[Task]> = roles.iter().map(Vec::as_slice).collect();
    let shared = parse_facts_many(&stdout, &stderr, &tasks);
    for ((t, w), got) in roles.iter().zip(&wants).zip(shared) {
        let (out, err, calls) = run(&gather_script(t, w, false, &sums));
        assert!(calls <= 1);
        let mut alone = parse_facts(&out, &err, t).unwrap();
        let mut got = got.unwrap();
        // The clock is the gather's own.
        for f in alone.values_mut().chain(got.values_mut()) {
            f.host_clock = None;
        }
        assert_eq!(got, alone, "{stdout}");
    }
    // A section cut short fails that role and those after it, not those before.
    let cut = stdout.rsplit_once("@@end").unwrap().0;
    let r = parse_facts_many(cut, "gone", &tasks);
    assert!(r[0].is_ok() && r[1].is_ok() && matches!(&r[2], Err(FactError::Truncated(e)) if e == "gone"), "{r:?}");
}

/// Only guards marked `unless_slow` (and wait probes) go to the background, and only when
/// there are two or more of them: a cheap guard (a read of a file) runs in its place, not as
/// a background job that would cost a fork of its own on every gather.
#[test]
fn only_slow_guards_run_as_background_jobs() {
    use ezk::exec::gather::{gather_body, gather_script};
    let cmd = |unless: &str, slow: bool| Action::Command { cmd: "x".into(), creates: None, unless: Some(unless.into()), unless_slow: slow };
    let tasks = vec![
        task("swap", cmd("! { read -r _ && read -r _; } < /proc/swaps", false), &[]),
        task("fstab", cmd("! grep -q swap /etc/fstab", false), &[]),
        task("hostname", cmd("test \"$(hostname)\" = a", false), &[]),
        task("label", cmd("kubectl get node a", true), &[]),
        task("api", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port: 6443 }, timeout_secs: 5, diagnose: None }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let script = gather_script(&tasks, &w, false, &Default::default());
    let body = gather_body(&script);
    let background: Vec<&str> = body.lines().filter(|l| l.ends_with(" &")).collect();
    assert_eq!(background.len(), 2, "{body}");
    assert!(background[0].contains("'@@g 3 1'") && background[1].contains("'@@w 4 1'"), "{body}");
    assert_eq!(body.lines().filter(|l| l.starts_with("if ") && !l.ends_with(" &")).count(), 3, "{body}");
    // Cheap guards alone: none in the background.
    let cheap = &tasks[..3];
    let script = gather_script(cheap, &w[..3], false, &Default::default());
    assert!(!gather_body(&script).contains(" &\n") && !gather_body(&script).contains("wait\n"), "{script}");
}

/// The roles' guards that ask the Kubernetes API (kubectl) are the ones marked `unless_slow`,
/// so they still run at the same time; no other guard of the roles is (each would cost every
/// gather a background job).
#[test]
fn the_roles_mark_exactly_their_kubectl_guards_slow() {
    let roles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("roles");
    let mut slow = 0;
    for e in std::fs::read_dir(&roles).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("tasks.yml")) else { continue };
        let tasks: Vec<serde_yaml::Value> = serde_yaml::from_str(&text).unwrap_or_default();
        for t in &tasks {
            let Some(c) = t.get("command") else { continue };
            let Some(unless) = c.get("unless").and_then(|u| u.as_str()) else { continue };
            let marked = c.get("unless_slow").and_then(|s| s.as_bool()) == Some(true);
            assert_eq!(marked, unless.contains("kubectl"), "{}: {unless}", e.path().display());
            slow += marked as usize;
        }
    }
    assert!(slow >= 7, "{slow}");
}
