//! The apply script: ONE POSIX sh program per host per role, built from the guard's decisions.
//! Changed file contents follow on stdin in task order; each lands in a temp file in its target
//! directory, is checked (size, and sha256 of the bytes received), fsynced, given its
//! mode/owner, then renamed over the target — so a target is always the old or the new
//! content, never partial. Then, in task order, the other actions. Every task reports back with a marker line that `parse_results`
//! reads. Restarts are gated at run time by what actually changed; before a change that owes a
//! restart (or a daemon-reload), a durable marker goes on the host, and only the successful
//! restart removes it (`pending`), so a run killed in between leaves the restart to the next.

use std::collections::BTreeMap;

use super::facts::probe_cmd;
use super::guard::{touches_unit, Change, Decision, Verdict};
use super::pending::{clear_cmd, owed_units, pend_line, PENDING_DIR, RELOAD_MARKER};
use super::transport::{sh_quote, StdinPart};
use super::want::Want;
use crate::plan::action::{Action, Task};

const PRELUDE: &str = r#"set -u
umask 077
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
W=$(mktemp -d /tmp/.ezk-run.XXXXXX) || { echo "@@r 0 failed cannot create a work dir in /tmp"; exit 1; }
: > "$W/tmps"; : > "$W/o"
ezk_cleanup() { while IFS= read -r t; do rm -f -- "$t"; done < "$W/tmps"; rm -rf -- "$W"; }
trap ezk_cleanup EXIT
trap 'exit 129' HUP INT TERM PIPE
EZK_UNITS=0
EZK_T=0
ezk_t() { if [ "$EZK_T" = 1 ]; then echo "@@t $(date +%s%N) $*"; fi; }
ezk_fail() { echo "@@r $1 failed $2"; tail -n 40 "$W/o" | sed "s/^/@@o $1 /"; exit 1; }
ezk_warn() { echo "@@x $1 $2"; }
ezk_put() { # idx path size sha mode owner group
  case $2 in */*) d=${2%/*}; b=${2##*/};; *) d=.; b=$2;; esac; [ -n "$d" ] || d=/
  [ -d "$d" ] || mkdir -p -- "$d" || ezk_fail "$1" "cannot create directory $d"
  t="$d/.ezk-tmp.$b.$$"
  echo "$t" >> "$W/tmps"
  ezk_t "$1" upload
  # Hashed as it arrives (no second read of the file); the size check below catches a short write.
  s=$(head -c "$3" | tee -- "$t" | sha256sum)
  [ -f "$t" ] || ezk_fail "$1" "cannot write $t"
  ezk_t "$1" check
  n=$(wc -c < "$t"); [ "$n" -eq "$3" ] || ezk_fail "$1" "upload of $2 truncated ($n of $3 bytes)"
  [ "${s%% *}" = "$4" ] || ezk_fail "$1" "checksum mismatch after upload of $2"
  ezk_t "$1" fsync
  chown "$6:$7" "$t" && chmod "$5" "$t" || ezk_fail "$1" "cannot set owner/mode on $2"
  sync -- "$t" 2>/dev/null || sync
  ezk_t "$1" rename
  mv -f -- "$t" "$2" || ezk_fail "$1" "cannot rename into $2"
  sync -- "$d" 2>/dev/null || true
}
ezk_pend() { # idx marker... : "restart owed" markers, on disk before the change that owes them
  i=$1; shift
  [ -d "$EZK_P" ] || mkdir -p -- "$EZK_P" || ezk_fail "$i" "cannot create $EZK_P"
  for m in "$@"; do : > "$EZK_P/$m" || ezk_fail "$i" "cannot write $EZK_P/$m"; set -- "$@" "$EZK_P/$m"; shift; done
  sync -- "$@" "$EZK_P" "${EZK_P%/*}" 2>/dev/null || sync
}
ezk_unit_fail() { # idx unit message: the unit's own journal tail goes with the error
  journalctl -u "$2" -n 20 --no-pager -o short-precise >> "$W/o" 2>&1; ezk_fail "$1" "$3"
}
ezk_nap() { # poll_count : wait_for's pause, growing with the count (fractions: coreutils, busybox)
  if [ "$1" -lt 10 ]; then p=0.1; elif [ "$1" -lt 20 ]; then p=0.3; else p=1; fi
  sleep "$p" 2>/dev/null || sleep 1
}
ezk_run() { # idx cmd... : run with output captured for failure reports
  i=$1; shift; : > "$W/o"; "$@" </dev/null >"$W/o" 2>&1
}
"#;

/// The part of an apply script after the fixed helper functions (what `-v` shows).
pub fn body(script: &str) -> &str {
    script.strip_prefix(PRELUDE).unwrap_or(script)
}

/// A generated apply: the script and its stdin, in order.
pub struct ApplyScript {
    pub script: String,
    pub stdin: Vec<StdinPart>,
    /// Handler restarts appended after the tasks: (result index, unit).
    pub handlers: Vec<(usize, String)>,
}

fn mode_s(m: u32) -> String {
    format!("{m:04o}")
}

fn put(i: usize, path: &str, want: &Want, mode: u32, owner: &str, group: &str, stdin: &mut Vec<StdinPart>) -> String {
    let Want::File { sha256, size, .. } = want else { return String::new() };
    stdin.push(want.stdin_part().expect("file want has bytes"));
    format!(
        "ezk_put {i} {} {size} {sha256} {} {} {}\n",
        sh_quote(path),
        mode_s(mode),
        sh_quote(owner),
        sh_quote(group)
    )
}

#[allow(clippy::too_many_arguments)]
fn file_steps(i: usize, path: &str, changes: &[Change], want: &Want, mode: u32, owner: &str, group: &str, stdin: &mut Vec<StdinPart>) -> String {
    let content = changes.iter().any(|c| matches!(c, Change::NewFile { .. } | Change::Content { .. }));
    if content {
        return put(i, path, want, mode, owner, group, stdin);
    }
    let mut s = String::new();
    let p = sh_quote(path);
    for c in changes {
        match c {
            Change::Mode { to, .. } => s.push_str(&format!("chmod {} {p} || ezk_fail {i} 'chmod failed'\n", mode_s(*to))),
            Change::Owner { to, .. } => s.push_str(&format!("chown {} {p} || ezk_fail {i} 'chown failed'\n", sh_quote(to))),
            _ => {}
        }
    }
    s
}

/// Build the apply script. `notify_ids` maps each notified unit to a shell flag number.
pub fn apply_script(tasks: &[Task], wants: &[Want], decisions: &[Decision], handlers: &[(String, String)]) -> ApplyScript {
    let mut s = String::from(PRELUDE);
    let mut stdin = Vec::new();
    let mut flags: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for u in &t.notify {
            let n = flags.len();
            flags.entry(u.clone()).or_insert(n);
        }
    }
    let rm = clear_cmd(RELOAD_MARKER);
    s.push_str(&format!("EZK_P={}\n", sh_quote(PENDING_DIR)));
    // Restarts an interrupted run owes (the guard planned them): their flags start raised.
    // `marked`: units whose marker may exist now, to be removed once their restart is done.
    let mut marked = owed_units(tasks, decisions, handlers);
    for u in &marked {
        s.push_str(&format!("N{}=1\n", flags[u]));
    }
    // Stale temp files from a run that was killed mid-upload (the trap could not run).
    let mut dirs: Vec<String> = tasks
        .iter()
        .filter_map(|t| match &t.action {
            Action::File(f) => Some(f.path.rsplit_once('/').map(|x| x.0).unwrap_or(".").to_string()),
            _ => None,
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        s.push_str(&format!("rm -f -- {}/.ezk-tmp.* 2>/dev/null\n", sh_quote(if d.is_empty() { "/" } else { d })));
    }
    for (i, (task, d)) in tasks.iter().zip(decisions).enumerate() {
        let changes = d.changes();
        let mut body = String::new();
        let mut always_changed = !changes.is_empty();
        // Markers for what this task's change will owe, written before it (once per unit
        // until its restart point; a unit file owes a daemon-reload every time).
        let owes: Vec<String> = if changes.is_empty() { Vec::new() } else { task.notify.iter().filter(|u| !marked.contains(*u)).cloned().collect() };
        let unit_file = !changes.is_empty() && touches_unit(&task.action);
        let pend = pend_line(i, &owes, unit_file);
        match (&task.action, &d.verdict) {
            (_, Verdict::Fail(_)) | (_, Verdict::Skip(_)) => continue,
            (Action::WaitFor { target, timeout_secs, diagnose }, _) => {
                let diag = diagnose
                    .as_ref()
                    .map(|c| format!("sh -c {} </dev/null >\"$W/o\" 2>&1; ", sh_quote(c)))
                    .unwrap_or_default();
                // Whole seconds: `-gt` makes the wait at least the timeout, never a second short.
                // Polls every 0.1 s for the first second, then 0.3 s, then 1 s: most waits end
                // within a second or two (a VIP, a started service), and a whole-second poll
                // would add half a second to each on average.
                body.push_str(&format!(
                    "e=$(( $(date +%s) + {timeout_secs} )); n=0\nuntil {}; do if [ \"$(date +%s)\" -gt \"$e\" ]; then {diag}ezk_fail {i} 'timed out after {timeout_secs}s waiting'; fi; ezk_nap $n; n=$((n+1)); done\n",
                    probe_cmd(target)
                ));
                always_changed = false;
            }
            (_, Verdict::Ok) if !matches!(task.action, Action::Service { .. }) => continue,
            (Action::File(f), _) => body.push_str(&file_steps(i, &f.path, changes, &wants[i], f.mode, &f.owner, &f.group, &mut stdin)),
            (Action::Directory { path, mode, owner, group }, _) => {
                let p = sh_quote(path);
                for c in changes {
                    match c {
                        Change::CreateDir => body.push_str(&format!(
                            "mkdir -p -- {p} && chmod {} {p} && chown {} {p} || ezk_fail {i} 'cannot create directory'\n",
                            mode_s(*mode),
                            sh_quote(&format!("{owner}:{group}"))
                        )),
                        Change::Mode { to, .. } => body.push_str(&format!("chmod {} {p} || ezk_fail {i} 'chmod failed'\n", mode_s(*to))),
                        Change::Owner { to, .. } => body.push_str(&format!("chown {} {p} || ezk_fail {i} 'chown failed'\n", sh_quote(to))),
                        _ => {}
                    }
                }
            }
            (Action::Link { path, target }, _) => body.push_str(&format!(
                "mkdir -p -- \"$(dirname -- {p})\" && ln -sfn -- {} {p} || ezk_fail {i} 'cannot create link'\n",
                sh_quote(target),
                p = sh_quote(path)
            )),
            (Action::Absent { path }, _) => body.push_str(&format!("rm -rf -- {} || ezk_fail {i} 'cannot remove'\n", sh_quote(path))),
            // Refused keys/modules are warnings: the task is "changed" only if something took.
            (Action::Sysctl { file, .. }, _) => {
                let put = file_steps(i, file, changes, &wants[i], 0o644, "root", "root", &mut stdin);
                body.push_str(&format!("c=0\n{put}{}", if put.is_empty() { "" } else { "c=1\n" }));
                for c in changes {
                    if let Change::SysctlValue { key, to, .. } = c {
                        let kv = sh_quote(&format!("{key}={to}"));
                        body.push_str(&format!("if sysctl -w {kv} >/dev/null 2>&1; then c=1; else ezk_warn {i} {}; fi\n", sh_quote(&format!("sysctl {key}: the kernel refused {to}"))));
                    }
                }
                body.push_str(&changed_if_c(i, task, &flags));
                always_changed = false;
            }
            (Action::Modprobe { file, .. }, _) => {
                let put = file_steps(i, file, changes, &wants[i], 0o644, "root", "root", &mut stdin);
                body.push_str(&format!("c=0\n{put}{}", if put.is_empty() { "" } else { "c=1\n" }));
                for c in changes {
                    if let Change::LoadModule(m) = c {
                        body.push_str(&format!("if modprobe {} >/dev/null 2>&1; then c=1; else ezk_warn {i} {}; fi\n", sh_quote(m), sh_quote(&format!("module {m}: modprobe failed"))));
                    }
                }
                body.push_str(&changed_if_c(i, task, &flags));
                always_changed = false;
            }
            (Action::Package { .. }, _) => {
                for c in changes {
                    if let Change::Install(names) = c {
                        let n: Vec<String> = names.iter().map(|x| sh_quote(x)).collect();
                        let n = n.join(" ");
                        // apt: keep a host's edited conffiles (no dpkg prompt); lists that are
                        // missing or stale (a fresh host) get one `apt-get update` and a retry.
                        body.push_str(&format!(
                            "if command -v apt-get >/dev/null 2>&1; then A='apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold'; ezk_run {i} $A {n} || {{ ezk_run {i} apt-get update -q && ezk_run {i} $A {n}; }}; else ezk_run {i} yum install -y -q {n}; fi || ezk_fail {i} 'package install failed'\n"
                        ));
                    }
                }
            }
            (Action::Service { unit, .. }, _) => {
                let u = sh_quote(unit);
                // `systemctl enable` reloads systemd by itself, and a changed unit file needs a
                // reload too: enable without it, then reload once (~0.1-0.4 s each on a host).
                for c in changes {
                    let cmd = match c {
                        Change::Enable => "enable",
                        Change::Disable => "disable",
                        _ => continue,
                    };
                    let msg = sh_quote(&format!("systemctl {cmd} {unit} failed"));
                    body.push_str(&format!("ezk_run {i} systemctl {cmd} --no-reload {u} || ezk_fail {i} {msg}\nEZK_UNITS=1\n"));
                }
                body.push_str(&format!("if [ \"$EZK_UNITS\" = 1 ]; then ezk_run {i} systemctl daemon-reload || ezk_fail {i} 'daemon-reload failed'; EZK_UNITS=0; {rm}; fi\n"));
                let mut started = false;
                for c in changes {
                    let cmd = match c {
                        Change::Start => {
                            started = true;
                            "start"
                        }
                        Change::Stop => "stop",
                        Change::Restart { by } if by.starts_with("state:") => "restart",
                        _ => continue,
                    };
                    let msg = sh_quote(&format!("systemctl {cmd} {unit} failed"));
                    body.push_str(&format!("ezk_run {i} systemctl {cmd} {u} || ezk_unit_fail {i} {u} {msg}\n"));
                }
                // Only a notified restart is decided at run time; everything else is certain.
                always_changed = changes.iter().any(|c| !matches!(c, Change::Restart { by } if !by.starts_with("state:")));
                body.push_str("c=0\n");
                if let Some(n) = flags.get(unit) {
                    if !started {
                        // A notified restart happens only if a notifying task really changed.
                        body.push_str(&format!(
                            "if [ \"${{N{n}:-0}}\" = 1 ]; then ezk_run {i} systemctl restart {u} || ezk_unit_fail {i} {u} {}; c=1; fi\n",
                            sh_quote(&format!("systemctl restart {unit} failed"))
                        ));
                    }
                    body.push_str(&format!("N{n}=0\n"));
                    // Restarted (or freshly started, or nothing owed after all): settled.
                    if marked.remove(unit) || started {
                        body.push_str(&format!("{}\n", clear_cmd(unit)));
                    }
                }
                if !always_changed {
                    body.push_str(&format!("if [ $c = 1 ]; then echo '@@r {i} changed'; else echo '@@r {i} ok'; fi\n"));
                }
            }
            // Right before a service (where the planner puts it), the service task reloads,
            // after its own `enable`: one reload for both.
            // A reload owed by an interrupted run (no unit file changed now) raises the flag.
            (Action::DaemonReload, _) if matches!(tasks.get(i + 1).map(|t| &t.action), Some(Action::Service { .. })) => {
                if !changes.is_empty() {
                    body.push_str("EZK_UNITS=1\n");
                }
            }
            (Action::DaemonReload, _) => body.push_str(&format!(
                "{}if [ \"$EZK_UNITS\" = 1 ]; then ezk_run {i} systemctl daemon-reload || ezk_fail {i} 'daemon-reload failed'; EZK_UNITS=0; {rm}; fi\n",
                if changes.is_empty() { "" } else { "EZK_UNITS=1\n" }
            )),
            (Action::Command { cmd, creates, unless }, _) => {
                // Guards re-checked here: an earlier task of this run may have satisfied them.
                let mut conds = Vec::new();
                if let Some(c) = creates {
                    conds.push(format!("[ -e {} ]", sh_quote(c)));
                }
                if let Some(u) = unless {
                    conds.push(format!("sh -c {} >/dev/null 2>&1 </dev/null", sh_quote(u)));
                }
                let run = format!("ezk_run {i} sh -c {} || ezk_fail {i} \"command exited $?\"\n", sh_quote(cmd));
                if conds.is_empty() {
                    body.push_str(&run);
                } else {
                    body.push_str(&format!("if {}; then echo '@@r {i} skipped'; else\n{run}", conds.join(" || ")));
                    body.push_str(&mark_changed(i, task, &flags));
                    body.push_str("fi\n");
                    s.push_str(&format!("# {i}: {}\nezk_t {i}\n{pend}", task.name.replace('\n', " ")));
                    marked.extend(owes);
                    s.push_str(&body);
                    continue;
                }
            }
        }
        s.push_str(&format!("# {i}: {}\nezk_t {i}\n{pend}", task.name.replace('\n', " ")));
        marked.extend(owes);
        s.push_str(&body);
        if touches_unit(&task.action) && !changes.is_empty() {
            s.push_str("EZK_UNITS=1\n");
        }
        if always_changed {
            s.push_str(&mark_changed(i, task, &flags));
        } else if matches!(task.action, Action::WaitFor { .. } | Action::DaemonReload) {
            let c = if matches!(task.action, Action::DaemonReload) && !changes.is_empty() { "changed" } else { "ok" };
            s.push_str(&format!("echo '@@r {i} {c}'\n"));
        }
    }
    let mut hs = Vec::new();
    for (k, (unit, _by)) in handlers.iter().enumerate() {
        let i = tasks.len() + k;
        let n = flags[unit];
        let u = sh_quote(unit);
        s.push_str(&format!(
            "ezk_t {i}\nif [ \"$EZK_UNITS\" = 1 ]; then systemctl daemon-reload && {rm}; EZK_UNITS=0; fi\nif [ \"${{N{n}:-0}}\" = 1 ]; then ezk_run {i} systemctl restart {u} || ezk_unit_fail {i} {u} {}; echo '@@r {i} changed'; fi\n",
            sh_quote(&format!("systemctl restart {unit} failed"))
        ));
        if marked.remove(unit) {
            s.push_str(&format!("{}\n", clear_cmd(unit)));
        }
        hs.push((i, unit.clone()));
    }
    s.push_str("ezk_t end\necho @@done\n");
    ApplyScript { script: s, stdin, handlers: hs }
}

/// Report changed (and raise notify flags) when the step set `c=1`, else ok.
fn changed_if_c(i: usize, task: &Task, flags: &BTreeMap<String, usize>) -> String {
    let mut s = format!("if [ $c = 1 ]; then echo '@@r {i} changed'; ");
    for u in &task.notify {
        s.push_str(&format!("N{}=1; ", flags[u]));
    }
    s.push_str(&format!("else echo '@@r {i} ok'; fi\n"));
    s
}

fn mark_changed(i: usize, task: &Task, flags: &BTreeMap<String, usize>) -> String {
    let mut s = format!("echo '@@r {i} changed'\n");
    for u in &task.notify {
        s.push_str(&format!("N{}=1\n", flags[u]));
    }
    s
}

/// The same script, reporting a timestamp as each task (and each stage of an upload: upload,
/// check, fsync, rename) begins: `-vv` shows where an apply spends its time. Costs one `date` per mark.
pub fn traced(script: &str) -> String {
    match script.strip_prefix(PRELUDE) {
        Some(rest) => format!("{}EZK_T=1\n{rest}", PRELUDE),
        None => script.to_string(),
    }
}

/// Durations between the trace marks of a traced apply's output: (mark, seconds until the
/// next mark), in order. A mark is a task index, optionally with an upload stage.
pub fn parse_trace(stdout: &str) -> Vec<(String, f64)> {
    let marks: Vec<(u128, &str)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("@@t "))
        .filter_map(|l| {
            let (ns, what) = l.split_once(' ')?;
            Some((ns.parse().ok()?, what))
        })
        .collect();
    marks.windows(2).map(|w| (w[0].1.to_string(), (w[1].0.saturating_sub(w[0].0)) as f64 / 1e9)).collect()
}

/// What the host reported for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub status: String,
    pub message: String,
    pub warnings: Vec<String>,
    pub output: Vec<String>,
}

/// Apply output, parsed (pure).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyResults {
    pub tasks: BTreeMap<usize, TaskReport>,
    /// The script reached its end.
    pub done: bool,
}

/// Parse the markers of an apply run.
pub fn parse_results(stdout: &str) -> ApplyResults {
    let mut r = ApplyResults::default();
    for line in stdout.lines() {
        if line == "@@done" {
            r.done = true;
            continue;
        }
        let mut it = line.splitn(3, ' ');
        let (Some(tag), Some(idx)) = (it.next(), it.next().and_then(|x| x.parse::<usize>().ok())) else { continue };
        let rest = it.next().unwrap_or("").to_string();
        let e = || TaskReport { status: String::new(), message: String::new(), warnings: vec![], output: vec![] };
        match tag {
            "@@r" => {
                let t = r.tasks.entry(idx).or_insert_with(e);
                let (st, msg) = rest.split_once(' ').unwrap_or((&rest, ""));
                t.status = st.to_string();
                t.message = msg.to_string();
            }
            "@@x" => r.tasks.entry(idx).or_insert_with(e).warnings.push(rest),
            "@@o" => r.tasks.entry(idx).or_insert_with(e).output.push(rest),
            _ => {}
        }
    }
    r
}
