//! Apply, round trip 2 of the pipeline: ONE POSIX sh program per host per role, built from the
//! decisions (`decide`). Changed file contents follow on stdin in task order; each lands in a
//! temp file in its target directory, is checked (size, and sha256 of the bytes received),
//! fsynced, given its mode/owner, then renamed over the target — so a target is always the old
//! or the new content, never partial. Then, in task order, the other actions. Every task
//! reports back with a marker line that `parse_results` reads. Restarts are gated at run time
//! by what actually changed; before a change that owes a restart (or a daemon-reload), a
//! durable marker goes on the host, and only the successful restart removes it (`pending`), so
//! a run killed in between leaves the restart to the next.
//!
//! This file walks the tasks and writes what every task shares (its header, the restart-owed
//! marker, its result line); one emitter per action kind writes the task's own steps:
//! `files` (file, directory, link, absent), `kernel` (sysctl, modprobe), `packages`, `units`
//! (service, daemon-reload, handler restarts), `commands` (command, wait_for).

mod commands;
mod files;
mod kernel;
mod packages;
mod units;

use std::collections::{BTreeMap, BTreeSet};

use super::decide::{Decision, Verdict, touches_unit};
use super::desired::Desired;
use super::pending::{PENDING_DIR, RELOAD_MARKER, clear_cmd, owed_units, pend_line};
use super::transport::{StdinPart, sh_quote};
use crate::plan::action::{Action, Task};

const PRELUDE: &str = r#"set -u
umask 077
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
W=$(mktemp -d /tmp/.ezk-run.XXXXXX) || { echo "@@r 0 failed cannot create a work dir in /tmp"; exit 1; }
: > "$W/tmps"; : > "$W/o"; : > "$W/staged"
ezk_cleanup() { while IFS= read -r t; do rm -f -- "$t"; done < "$W/tmps"; rm -rf -- "$W"; }
trap ezk_cleanup EXIT
trap 'exit 129' HUP INT TERM PIPE
EZK_UNITS=0
EZK_T=0
ezk_t() { if [ "$EZK_T" = 1 ]; then echo "@@t $(date +%s%N) $*"; fi; }
# SHA-256 of stdin, hex first: OpenSSL's where the host has it (it uses the CPU's SHA
# instructions: ~8x coreutils' sha256sum, which hashing every uploaded binary made a large part
# of a first run's CPU), else coreutils'.
if command -v openssl >/dev/null 2>&1; then ezk_sha() { openssl dgst -sha256 -r; }; else ezk_sha() { sha256sum; }; fi
ezk_fail() { echo "@@r $1 failed $2"; tail -n 40 "$W/o" | sed "s/^/@@o $1 /"; exit 1; }
ezk_warn() { echo "@@x $1 $2"; }
# Files that belong together (a certificate and its key, consecutive puts of one role) are put
# as a set: each is staged (uploaded, checked, fsynced; `ezk_put ... 1`), and `ezk_commit`
# renames them all once the last has arrived. A session cut mid-set leaves every target old: a
# running daemon that re-reads its files (etcd reloads its certificate at each TLS handshake)
# never sees a new certificate beside an old key.
ezk_commit() { # idx
  while IFS= read -r i && IFS= read -r t && IFS= read -r p; do
    ezk_t "$i" rename
    mv -f -- "$t" "$p" || ezk_fail "$i" "cannot rename into $p"
    sync -- "${p%/*}" 2>/dev/null || true
  done < "$W/staged"
  : > "$W/staged"
}
ezk_put() { # idx path size sha mode owner group [stage]
  case $2 in */*) d=${2%/*}; b=${2##*/};; *) d=.; b=$2;; esac; [ -n "$d" ] || d=/
  [ -d "$d" ] || mkdir -p -- "$d" || ezk_fail "$1" "cannot create directory $d"
  t="$d/.ezk-tmp.$b.$$"
  echo "$t" >> "$W/tmps"
  ezk_t "$1" upload
  # Hashed as it arrives (no second read of the file); the size check below catches a short
  # write. tee goes on reading after a write error (a full disk), so later files stay in step.
  s=$(head -c "$3" | tee -- "$t" 2>"$W/e" | ezk_sha)
  [ -f "$t" ] || ezk_fail "$1" "cannot write $t"
  ezk_t "$1" check
  n=$(wc -c < "$t"); [ "$n" -eq "$3" ] || ezk_short "$1" "$2" "$n" "$3" "$d"
  [ "${s%% *}" = "$4" ] || ezk_fail "$1" "checksum mismatch after upload of $2"
  ezk_t "$1" fsync
  chown "$6:$7" "$t" && chmod "$5" "$t" || ezk_fail "$1" "cannot set owner/mode on $2"
  sync -- "$t" 2>/dev/null || sync
  if [ "${8:-0}" = 1 ]; then printf '%s\n%s\n%s\n' "$1" "$t" "$2" >> "$W/staged"; return 0; fi
  ezk_t "$1" rename
  mv -f -- "$t" "$2" || ezk_fail "$1" "cannot rename into $2"
  sync -- "$d" 2>/dev/null || true
}
ezk_short() { # idx path got size dir : a short upload, with its cause
  if [ -s "$W/e" ]; then
    e=$(sed -n '1s/.*: //p' "$W/e"); a=$(df -Ph -- "$5" 2>/dev/null | awk 'NR==2 {print $4 " free of " $2 " on " $6}')
    ezk_fail "$1" "cannot write $2 ($3 of $4 bytes written): $e${a:+ ($a)}; the old file is unchanged"
  fi
  ezk_fail "$1" "upload of $2 truncated ($3 of $4 bytes): the connection ended early; the old file is unchanged"
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

/// What every emitter may read or update while the script is built.
struct Ctx<'a> {
    /// The shell flag number of each notified unit: `N<n>=1` once a notifying task changed.
    flags: &'a BTreeMap<String, usize>,
    /// Units whose restart-owed marker may exist now, to be removed once their restart is done.
    marked: BTreeSet<String>,
    /// The changed files' bytes, in task order.
    stdin: Vec<StdinPart>,
    /// The command removing the daemon-reload marker.
    rm_reload: String,
    /// The current task's put is staged, part of a set renamed together (`ezk_commit`).
    stage: bool,
}

/// Whether task `t` puts a file's content (new or changed) under decision `d`.
fn puts_content(t: &Task, d: &Decision) -> bool {
    matches!(t.action, Action::File(_)) && matches!(&d.verdict, Verdict::Change(cs) if files::changes_content(cs))
}

/// One task's own steps, and how its result line is written.
struct Steps {
    body: String,
    outcome: Outcome,
}

enum Outcome {
    /// The steps change something whenever they run: `@@r <i> changed`, and the task's notify
    /// flags raised.
    Changed,
    /// The steps print their own result line (changed only if something took).
    Own,
    /// The steps change nothing (a wait): `@@r <i> ok`.
    Ok,
}

impl Steps {
    fn changed(body: String) -> Steps {
        Steps { body, outcome: Outcome::Changed }
    }
    fn own(body: String) -> Steps {
        Steps { body, outcome: Outcome::Own }
    }
}

fn mode_s(m: u32) -> String {
    format!("{m:04o}")
}

/// Build the apply script of a role's tasks from their decisions; `handlers` are the restarts
/// due after the last task (`decide::pending_handlers`).
pub fn apply_script(tasks: &[Task], desired: &[Desired], decisions: &[Decision], handlers: &[(String, String)]) -> ApplyScript {
    let mut s = String::from(PRELUDE);
    let mut flags: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for u in &t.notify {
            let n = flags.len();
            flags.entry(u.clone()).or_insert(n);
        }
    }
    // Restarts an interrupted run owes (decided already): their flags start raised.
    let mut cx = Ctx {
        flags: &flags,
        marked: owed_units(tasks, decisions, handlers),
        stdin: Vec::new(),
        rm_reload: clear_cmd(RELOAD_MARKER),
        stage: false,
    };
    s.push_str(&format!("EZK_P={}\n", sh_quote(PENDING_DIR)));
    for u in &cx.marked {
        s.push_str(&format!("N{}=1\n", flags[u]));
    }
    s.push_str(&files::sweep_stale_temps(tasks));
    // Consecutive content puts form a set, staged then renamed together (`ezk_commit`).
    let puts: Vec<bool> = tasks.iter().zip(decisions).map(|(t, d)| puts_content(t, d)).collect();
    let in_set = |i: usize| puts[i] && (puts.get(i + 1) == Some(&true) || (i > 0 && puts[i - 1]));
    for (i, (task, d)) in tasks.iter().zip(decisions).enumerate() {
        cx.stage = in_set(i);
        let changes = d.changes();
        // Markers for what this task's change will owe, written before it (once per unit
        // until its restart point; a unit file owes a daemon-reload every time).
        let owes: Vec<String> = if changes.is_empty() { Vec::new() } else { task.notify.iter().filter(|u| !cx.marked.contains(*u)).cloned().collect() };
        let unit_file = !changes.is_empty() && touches_unit(&task.action);
        let pend = pend_line(i, &owes, unit_file);
        let Some(steps) = emit(&mut cx, i, task, d, &desired[i], tasks.get(i + 1)) else { continue };
        s.push_str(&format!("# {i}: {}\nezk_t {i}\n{pend}", task.name.replace('\n', " ")));
        cx.marked.extend(owes);
        s.push_str(&steps.body);
        if unit_file {
            s.push_str("EZK_UNITS=1\n");
        }
        if cx.stage && puts.get(i + 1) != Some(&true) {
            s.push_str(&format!("ezk_commit {i}\n"));
        }
        match steps.outcome {
            Outcome::Changed => s.push_str(&mark_changed(i, task, &flags)),
            Outcome::Ok => s.push_str(&format!("echo '@@r {i} ok'\n")),
            Outcome::Own => {}
        }
    }
    let mut hs = Vec::new();
    for (k, (unit, _by)) in handlers.iter().enumerate() {
        let i = tasks.len() + k;
        s.push_str(&units::handler(&mut cx, i, unit));
        hs.push((i, unit.clone()));
    }
    s.push_str("ezk_t end\necho @@done\n");
    ApplyScript { script: s, stdin: cx.stdin, handlers: hs }
}

/// The steps of task `i` for its decision, from its action kind's emitter; None when the task
/// has nothing to do (already right, refused, or skipped by its guard). `next`: the task
/// after it (a daemon-reload right before a service leaves the reload to the service).
fn emit(cx: &mut Ctx, i: usize, task: &Task, d: &Decision, want: &Desired, next: Option<&Task>) -> Option<Steps> {
    let changes = d.changes();
    Some(match (&task.action, &d.verdict) {
        (_, Verdict::Fail(_)) | (_, Verdict::Skip(_)) => return None,
        // A wait runs even when its target answered at gather time (it may stop answering).
        (Action::WaitFor { target, timeout_secs, diagnose }, _) => commands::wait_for(i, target, *timeout_secs, diagnose.as_deref()),
        // A service's notified restart is decided at run time, so it always has steps.
        (_, Verdict::Ok) if !matches!(task.action, Action::Service { .. }) => return None,
        (Action::File(f), _) => Steps::changed(files::file(cx, i, &f.path, changes, want, f.mode, &f.owner, &f.group)),
        (Action::Directory { path, mode, owner, group }, _) => Steps::changed(files::directory(i, path, *mode, owner, group, changes)),
        (Action::Link { path, target }, _) => Steps::changed(files::link(i, path, target)),
        (Action::Absent { path }, _) => Steps::changed(files::absent(i, path)),
        (Action::Sysctl { file, .. }, _) => kernel::sysctl(cx, i, task, file, changes, want),
        (Action::Modprobe { file, .. }, _) => kernel::modprobe(cx, i, task, file, changes, want),
        (Action::Package { .. }, _) => Steps::changed(packages::install(i, changes)),
        (Action::Service { unit, .. }, _) => units::service(cx, i, unit, changes),
        (Action::DaemonReload, _) => Steps::changed(units::daemon_reload(cx, i, changes, next)),
        (Action::Command { cmd, creates, unless, .. }, _) => commands::command(cx, i, task, cmd, creates.as_deref(), unless.as_deref()),
    })
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

/// Report changed and raise the task's notify flags.
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
