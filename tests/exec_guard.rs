//! The guard and the fact parser with scripted facts (no host): what gets skipped, changed,
//! warned about or refused, and what `--plan` says about it. Each case: tasks + the gather
//! output a host would print → the decisions and plan lines.

use ezk::exec::report::plan_lines::describe;
use ezk::exec::gather::{FactError, parse_facts};
use ezk::exec::decide::{Change, Verdict, decide_role, pending_handlers};
use ezk::exec::apply::{apply_script, parse_results};
use ezk::exec::desired::desired_state;
use ezk::plan::action::{Action, Content, FileSpec, Task, UnitState, WaitTarget};
use sha2::{Digest, Sha256};

fn task(name: &str, action: Action, notify: &[&str]) -> Task {
    Task { name: name.into(), origin: "roles/x/tasks.yml:1".into(), action, notify: notify.iter().map(|s| s.to_string()).collect() }
}

fn file(path: &str, content: &str, mode: u32, secret: bool) -> Action {
    Action::File(FileSpec { path: path.into(), content: Content::Inline(content.as_bytes().to_vec()), mode, owner: "root".into(), group: "root".into(), secret })
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
fn same_content_different_mode_is_a_mode_change_only() {
    let tasks = vec![task("conf", file("/etc/a.conf", "x=1\n", 0o600, false), &[])];
    let w = desired_state(&tasks).unwrap();
    let facts = parse_facts(&format!("{}{}@@end\n", f_line("f", "644", "/etc/a.conf"), h_line("x=1\n", "/etc/a.conf")), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[0].verdict, Verdict::Change(vec![Change::Mode { from: 0o644, to: 0o600 }]));
    assert_eq!(describe(&tasks[0], &w[0], &d[0]), vec!["mode 0644→0600 /etc/a.conf"]);
    // The apply script changes the mode in place and streams no content.
    let a = apply_script(&tasks, &w, &d, &[]);
    assert!(a.stdin.is_empty());
    assert!(a.script.contains("chmod 0600 /etc/a.conf"), "{}", a.script);
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
fn notified_restart_only_when_notifier_changed_and_reload_only_for_unit_files() {
    let tasks = vec![
        task("conf", file("/etc/etcd.conf", "new\n", 0o644, false), &["etcd"]),
        task("unit", file("/etc/systemd/system/etcd.service", "[Service]\n", 0o644, false), &["etcd"]),
        task("reload", Action::DaemonReload, &[]),
        task("svc", Action::Service { unit: "etcd".into(), enabled: true, state: UnitState::Started }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let unit = "/etc/systemd/system/etcd.service";
    let files = |conf: &str| format!("{}{}{}{}", f_line("f", "644", "/etc/etcd.conf"), h_line(conf, "/etc/etcd.conf"), f_line("f", "644", unit), h_line("[Service]\n", unit));
    let running = "@@u ActiveState=active\n@@u UnitFileState=enabled\n";
    // Config changed, unit file the same, service running and enabled.
    let out = format!("{}{running}@@end\n", files("old\n"));
    let d = decide_role(&tasks, &w, &parse_facts(&out, "", &tasks).unwrap());
    assert_eq!(d[2].verdict, Verdict::Ok, "daemon-reload without a unit change");
    assert_eq!(d[3].verdict, Verdict::Change(vec![Change::Restart { by: "conf".into() }]));
    assert_eq!(describe(&tasks[3], &w[3], &d[3]), vec!["restart etcd (conf)"]);
    // Nothing changed: no restart, nothing to apply.
    let out = format!("{}{running}@@end\n", files("new\n"));
    let d = decide_role(&tasks, &w, &parse_facts(&out, "", &tasks).unwrap());
    assert!(d.iter().all(|x| x.verdict == Verdict::Ok), "{d:?}");
    // Unit file changed, service stopped: reload, enable is fine, start (no extra restart).
    let out = format!("{}{}@@u ActiveState=inactive\n@@u UnitFileState=disabled\n@@end\n", f_line("f", "644", "/etc/etcd.conf"), h_line("new\n", "/etc/etcd.conf"));
    let facts = parse_facts(&out, "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[2].verdict, Verdict::Change(vec![Change::DaemonReload]));
    assert_eq!(d[3].verdict, Verdict::Change(vec![Change::Enable, Change::Start]));
    let a = apply_script(&tasks, &w, &d, &pending_handlers(&tasks, &d, &facts));
    assert!(a.script.contains("systemctl daemon-reload"));
    assert!(!a.script.contains("systemctl restart etcd"), "started units are not restarted too:\n{}", a.script);
    // One reload for the unit file and the enable (each costs 0.1-0.4 s on a host): enable
    // without its implicit reload, then reload, then start.
    let body = ezk::exec::apply::body(&a.script);
    let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{body}"));
    assert_eq!(body.matches("systemctl daemon-reload").count(), 1, "{body}");
    assert!(at("systemctl enable --no-reload etcd") < at("systemctl daemon-reload"), "{body}");
    assert!(at("systemctl daemon-reload") < at("systemctl start etcd"), "{body}");
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
        task("init", Action::Command { cmd: "init".into(), creates: Some("/var/lib/x".into()), unless: None }, &[]),
        task("always", Action::Command { cmd: "echo".into(), creates: None, unless: None }, &[]),
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

#[test]
fn file_contents_travel_on_stdin_never_in_the_script() {
    // The script is a command-line argument (visible in `ps` on the host, and logged with -v).
    let tasks = vec![task("key", file("/etc/k.pem", "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n", 0o600, true), &[])];
    let w = desired_state(&tasks).unwrap();
    let d = decide_role(&tasks, &w, &parse_facts("@@end\n", "", &tasks).unwrap());
    assert_eq!(d[0].verdict, Verdict::Change(vec![Change::NewFile { size: 40 }]));
    let a = apply_script(&tasks, &w, &d, &[]);
    assert!(!a.script.contains("SECRETBYTES"));
    assert_eq!(a.stdin.len(), 1);
    assert!(a.script.contains(&format!("ezk_put 0 /etc/k.pem 40 {} 0600 root root", w[0].sha256().unwrap())), "{}", a.script);
}

#[test]
fn state_restarted_always_restarts_and_reports_changed() {
    let tasks = vec![task("svc", Action::Service { unit: "chrony".into(), enabled: true, state: UnitState::Restarted }, &[])];
    let w = desired_state(&tasks).unwrap();
    let d = decide_role(&tasks, &w, &parse_facts("@@u ActiveState=active\n@@u UnitFileState=enabled\n@@end\n", "", &tasks).unwrap());
    assert_eq!(d[0].verdict, Verdict::Change(vec![Change::Restart { by: "state: restarted".into() }]));
    let a = apply_script(&tasks, &w, &d, &[]);
    assert!(a.script.contains("systemctl restart chrony"), "{}", a.script);
    assert!(a.script.contains("echo '@@r 0 changed'"), "{}", a.script);
}

/// Regression: a restart decided inside the apply script died with it. An apply killed after a
/// notifying file landed but before the restart left the service on its old config forever:
/// the next gather found the file right and nothing changed. Now a marker on the host (written
/// before the change, removed after the restart) makes the guard plan the restart anyway.
#[test]
fn restart_owed_by_an_interrupted_run_is_planned_though_nothing_changed() {
    use ezk::exec::gather::gather_script;
    use ezk::exec::pending::{INTERRUPTED, PENDING_DIR};
    let unit = "/etc/systemd/system/etcd.service";
    let tasks = vec![
        task("conf", file("/etc/etcd.conf", "new\n", 0o644, false), &["etcd"]),
        task("unit", file(unit, "[Service]\n", 0o644, false), &["etcd"]),
        task("reload", Action::DaemonReload, &[]),
        task("svc", Action::Service { unit: "etcd".into(), enabled: true, state: UnitState::Started }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    // The markers are read by the one gather (no extra round trip).
    let gs = gather_script(&tasks, &w, false, &Default::default());
    assert!(gs.contains(&format!("{PENDING_DIR}/*")), "{gs}");
    let same = format!("{}{}{}{}@@u ActiveState=active\n@@u UnitFileState=enabled\n", f_line("f", "644", "/etc/etcd.conf"), h_line("new\n", "/etc/etcd.conf"), f_line("f", "644", unit), h_line("[Service]\n", unit));

    // Files right, markers for etcd and for a reload: reload, then restart.
    let facts = parse_facts(&format!("{same}@@p etcd\n@@p _daemon-reload\n@@end\n"), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[0].verdict, Verdict::Ok);
    assert_eq!(d[2].verdict, Verdict::Change(vec![Change::DaemonReload]));
    assert_eq!(d[3].verdict, Verdict::Change(vec![Change::Restart { by: INTERRUPTED.into() }]));
    assert_eq!(describe(&tasks[3], &w[3], &d[3]), vec![format!("restart etcd ({INTERRUPTED})")]);
    assert!(pending_handlers(&tasks, &d, &facts).is_empty());
    let a = apply_script(&tasks, &w, &d, &[]);
    let body = ezk::exec::apply::body(&a.script);
    let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{body}"));
    // The flag starts raised (no task changes to raise it); the marker goes after the restart.
    assert!(at("N0=1") < at("systemctl daemon-reload"), "{body}");
    assert!(at("systemctl daemon-reload") < at("systemctl restart etcd"), "{body}");
    assert!(at("systemctl restart etcd") < at(&format!("rm -f -- {PENDING_DIR}/etcd")), "{body}");
    assert!(!body.contains("ezk_pend") && a.stdin.is_empty(), "{body}");

    // A marker of a unit this role does not notify is not its business.
    let facts = parse_facts(&format!("{same}@@p other.service\n@@end\n"), "", &tasks).unwrap();
    assert!(decide_role(&tasks, &w, &facts).iter().all(|x| x.verdict == Verdict::Ok));

    // A handler-only unit (no service task): restarted at the tail, the apply still runs.
    let tasks = vec![task("lb", file("/etc/lb.conf", "a\n", 0o644, false), &["kube-lb"])];
    let w = desired_state(&tasks).unwrap();
    let facts = parse_facts(&format!("{}{}@@p kube-lb\n@@end\n", f_line("f", "644", "/etc/lb.conf"), h_line("a\n", "/etc/lb.conf")), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[0].verdict, Verdict::Ok);
    let h = pending_handlers(&tasks, &d, &facts);
    assert_eq!(h, vec![("kube-lb".to_string(), INTERRUPTED.to_string())]);
    let a = apply_script(&tasks, &w, &d, &h);
    let body = ezk::exec::apply::body(&a.script);
    assert!(body.contains("N0=1\n") && body.contains("systemctl restart kube-lb"), "{body}");
    assert!(body.find("systemctl restart kube-lb") < body.find(&format!("rm -f -- {PENDING_DIR}/kube-lb")), "{body}");
}

#[test]
fn marker_is_written_before_a_notifying_change_lands() {
    use ezk::exec::pending::PENDING_DIR;
    let unit = "/etc/systemd/system/etcd.service";
    let tasks = vec![
        task("conf", file("/etc/etcd.conf", "new\n", 0o644, false), &["etcd"]),
        task("unit", file(unit, "[Service]\n", 0o644, false), &["etcd"]),
        task("reload", Action::DaemonReload, &[]),
        task("svc", Action::Service { unit: "etcd".into(), enabled: true, state: UnitState::Started }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let out = format!("{}{}{}@@u ActiveState=active\n@@u UnitFileState=enabled\n@@end\n", f_line("f", "644", "/etc/etcd.conf"), h_line("old\n", "/etc/etcd.conf"), f_line("f", "644", unit));
    let facts = parse_facts(&out, "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    let a = apply_script(&tasks, &w, &d, &pending_handlers(&tasks, &d, &facts));
    let body = ezk::exec::apply::body(&a.script);
    let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{body}"));
    assert!(at("ezk_put 0 ") < at("N0=1\n"), "nothing owed from before: the flag rises after the change: {body}");
    // etcd's marker once, before the first notifying file; the unit file owes a reload too.
    assert!(at("ezk_pend 0 etcd\n") < at("ezk_put 0 "), "{body}");
    assert!(at("ezk_pend 1 _daemon-reload\n") < at("ezk_put 1 "), "{body}");
    assert!(at("systemctl daemon-reload") < at(&format!("rm -f -- {PENDING_DIR}/_daemon-reload")), "{body}");
    assert!(at("systemctl restart etcd") < at(&format!("rm -f -- {PENDING_DIR}/etcd")), "{body}");
}

/// Regression: removing a drop-in (the chrony role does when CHRONY_SET_CLOCK turns true) left
/// the old drop-in loaded, because only written unit files called for a daemon-reload.
#[test]
fn removed_drop_in_reloads_systemd_before_the_restart() {
    let dropin = "/etc/systemd/system/chrony.service.d/10-ezk-no-clock.conf";
    let tasks = vec![
        task("drop-in removed", Action::Absent { path: dropin.into() }, &["chrony"]),
        task("reload", Action::DaemonReload, &[]),
        task("svc", Action::Service { unit: "chrony".into(), enabled: true, state: UnitState::Started }, &[]),
    ];
    let w = desired_state(&tasks).unwrap();
    let running = "@@u ActiveState=active\n@@u UnitFileState=enabled\n";
    let facts = parse_facts(&format!("{}{running}@@end\n", f_line("f", "644", dropin)), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert_eq!(d[0].verdict, Verdict::Change(vec![Change::Remove]));
    assert_eq!(d[1].verdict, Verdict::Change(vec![Change::DaemonReload]));
    let a = apply_script(&tasks, &w, &d, &pending_handlers(&tasks, &d, &facts));
    let body = ezk::exec::apply::body(&a.script);
    let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{body}"));
    assert!(at("systemctl daemon-reload") < at("systemctl restart chrony"), "{body}");
    // Already gone: nothing to reload, nothing to restart.
    let facts = parse_facts(&format!("{running}@@end\n"), "", &tasks).unwrap();
    let d = decide_role(&tasks, &w, &facts);
    assert!(d.iter().all(|x| x.verdict == Verdict::Ok), "{d:?}");
}
