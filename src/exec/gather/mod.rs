//! Gather, round trip 1 of the pipeline: what a host has now, for every target of one role (or
//! of several roles of a host at once, [`gather_script_many`]), read in ONE command. The gather script is assembled from one part per fact kind, and its
//! output is marker lines that the pure parser of each kind reads back; the result is one
//! `TaskFacts` per task index. No decision is made here (that is `decide`).
//!
//! Fact kinds, one file each: `paths` (find + one hash of the files, with `checksums` sparing unchanged
//! files), `content` (plan mode: a differing text file's current bytes), `kernel` (sysctl,
//! modules), `packages`, `units`, `probes` (command guards, wait_for targets), `markers`
//! (restarts an interrupted run owes). `host_files` is the same idea for reports: files read
//! back from many hosts, one command each (`ezk certs`).

pub mod checksums;
mod content;
pub mod host_files;
mod kernel;
mod markers;
mod packages;
mod paths;
pub mod probes;
mod units;

use std::collections::BTreeMap;

use checksums::Checksums;
pub use content::decode_b64;
pub use kernel::{ModuleState, SysctlFact};
pub use paths::{PathFact, PathKind};

use super::desired::Desired;
use super::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// Everything gathered for one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub path: Option<PathFact>,
    /// Current content of a changed, diffable text file (plan mode only).
    pub content: Option<Vec<u8>>,
    pub sysctl: Vec<SysctlFact>,
    pub modules: Vec<(String, ModuleState)>,
    /// Package → installed?
    pub packages: Vec<(String, bool)>,
    /// Package tasks: the signature of dpkg's database ("status|updates"), when both were
    /// found and are not racy (what `checksums` records the packages' answer under).
    pub packages_sig: Option<String>,
    /// `systemctl is-enabled` / `is-active` words.
    pub unit: Option<(String, String)>,
    /// `creates`/`unless` guard already satisfied (and, in the probe a host about to restart
    /// runs, a service's `restart_last_if`).
    pub guard_met: Option<bool>,
    /// One-shot probe of a wait_for target succeeded.
    pub probe_ok: Option<bool>,
    /// Units this task notifies whose restart an earlier apply owed but never did (it died
    /// between changing a file and restarting): their markers are on the host.
    pub pending_restarts: Vec<String>,
    /// A `daemon_reload` task: a unit file landed but no daemon-reload followed (marker).
    pub pending_reload: bool,
    /// The host's clock (unix seconds) when gathered, for tasks with a path (a certificate
    /// must be valid by the clock of the host it goes to).
    pub host_clock: Option<i64>,
}

/// Facts of a whole role on one host, by task index.
pub type Facts = BTreeMap<usize, TaskFacts>;

// Few processes per gather: one `find` for every path (of every role it serves), one hash (`ezk_shas`) for every file, one
// `sysctl`, one `dpkg-query`, one `systemctl show`; per-item work uses shell builtins (not
// `read` of /proc/sys files: dash reads a byte at a time, and a sysctl file read at an offset
// past 0 is empty, so dash would see "2" of "2466255"). On a
// loaded deploy machine with hundreds of hosts, forks are what a no-op run costs. The helpers:
// `ezk_c` for `content`, `ezk_m` for `kernel` modules.
const GATHER_PRELUDE: &str = r#"export LC_ALL=C
# SHA-256 of stdin (`ezk_sha`) or of files (`ezk_shas PATH...`, lines "HEX *PATH" or "HEX  PATH"):
# OpenSSL's where the host has it (the CPU's SHA instructions, ~8x coreutils'), else coreutils'.
if command -v openssl >/dev/null 2>&1; then
  ezk_sha() { openssl dgst -sha256 -r; }; ezk_shas() { openssl dgst -sha256 -r "$@"; }
else
  ezk_sha() { sha256sum; }; ezk_shas() { sha256sum -- "$@"; }
fi
ezk_c() { # idx path want_sha : plan mode, current content of a differing text file
  [ -f "$2" ] && [ ! -L "$2" ] || return 0
  s=$(ezk_sha < "$2" | cut -d' ' -f1)
  if [ "$s" != "$3" ]; then printf '@@c %s ' "$1"; base64 -w0 < "$2"; echo; fi
}
# A module not loaded can only come from /lib/modules (modprobe reads nothing else): on a host
# without it (a container, as lab hosts are) no `modprobe` process is started to learn so.
# Each line of $2 with the prefix $1 (a command's output taken with $(...): no `| sed` process).
ezk_p() {
  [ -n "$2" ] || return 0
  while IFS= read -r ezk_l; do printf '%s %s\n' "$1" "$ezk_l"; done <<EZK_EOF
$2
EZK_EOF
}
ezk_m() { # module
  if [ -d "/sys/module/$1" ]; then s=loaded
  elif [ -d /lib/modules ] && modprobe -n -q "$1" 2>/dev/null; then s=available
  else s=unavailable; fi
  echo "@@m $1 $s"
}
"#;

/// The part of a gather script after the fixed helper functions (what `-v` shows).
pub fn gather_body(script: &str) -> &str {
    script.strip_prefix(GATHER_PRELUDE).unwrap_or(script)
}

/// The host path a task manages, if any.
pub(crate) fn task_path(task: &Task) -> Option<&str> {
    match &task.action {
        Action::File(f) => Some(&f.path),
        Action::Directory { path, .. } | Action::Link { path, .. } | Action::Absent { path } => Some(path),
        Action::Sysctl { file, .. } | Action::Modprobe { file, .. } => Some(file),
        _ => None,
    }
}

fn quoted_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.map(sh_quote).collect::<Vec<_>>().join(" ")
}

/// The gather script for a role's tasks. `with_content`: also send the current content of
/// text files that differ (plan mode, for diffs; never for secrets). `checksums`: sums known
/// from earlier runs; a file whose signature is unchanged is not hashed again.
pub fn gather_script(tasks: &[Task], desired: &[Desired], with_content: bool, checksums: &Checksums) -> String {
    gather_script_many(&[(tasks, desired)], with_content, checksums)
}

/// One gather for several roles of a host (one round trip instead of one per role): the
/// helper functions, then the paths of every role at once (one `find`, one hash: `paths`),
/// then one section per role with the rest of its facts, each ending with its own `@@end`.
/// [`parse_facts_many`] reads the paths part for every role and hands each role its section.
/// The sections run one after another in one shell; each reads the shared `$F` and waits for
/// its own background probes. Nothing a gather runs changes the host, so a path found before
/// an earlier role's section ran is what the role's own gather would have found.
pub fn gather_script_many(roles: &[(&[Task], &[Desired])], with_content: bool, checksums: &Checksums) -> String {
    let mut s = String::from(GATHER_PRELUDE);
    paths::script(&mut s, roles.iter().flat_map(|(t, d)| t.iter().zip(d.iter())), checksums);
    for (tasks, desired) in roles {
        section(&mut s, tasks, desired, with_content, checksums);
    }
    s
}

/// A role's section of the gather script: every fact but its paths, then `@@end`.
fn section(s: &mut String, tasks: &[Task], desired: &[Desired], with_content: bool, checksums: &Checksums) {
    // Guards that ask a service (`unless_slow`: kubectl asking the API, 0.3–0.6 s each on a
    // loaded host, eight of them in one role) and wait probes (up to their 1 s timeout) may
    // take a while. Two or more run at once, as background jobs after every other fact is out
    // (so their one-line, atomic writes cannot land inside another fact's output), then
    // `wait`. A lone one stays in its place. Every other guard (a file test, a read of
    // /proc/swaps or /etc/hosts) stays in the foreground: it takes a millisecond, and a
    // background job would cost it a fork of its own on every gather of every host.
    let slow = |t: &Task| match &t.action {
        Action::Command { unless: Some(_), unless_slow, .. } => *unless_slow,
        Action::WaitFor { .. } => true,
        _ => false,
    };
    let together = tasks.iter().filter(|t| slow(t)).count() >= 2;
    let mut background: Vec<String> = Vec::new();
    // Per task, in task order: content (plan mode), guards, wait probes.
    for (i, (task, want)) in tasks.iter().zip(desired).enumerate() {
        let mut own = String::new();
        let probes_out = if together && slow(task) { &mut own } else { &mut *s };
        match &task.action {
            Action::File(f) => {
                if let Desired::File { sha256, diffable: true, .. } = want
                    && with_content
                {
                    s.push_str(&content::line(i, &sh_quote(&f.path), sha256));
                }
            }
            Action::Sysctl { file, .. } | Action::Modprobe { file, .. } => {
                if with_content {
                    s.push_str(&content::line(i, &sh_quote(file), want.sha256().unwrap_or("-")));
                }
            }
            Action::Command { creates, unless, .. } => {
                if let Some(cond) = probes::guard_cond(creates.as_deref(), unless.as_deref()) {
                    probes_out.push_str(&probes::guard_line(i, &cond));
                }
            }
            Action::WaitFor { target, .. } => probes_out.push_str(&probes::wait_line(i, target)),
            Action::Directory { .. }
            | Action::Link { .. }
            | Action::Absent { .. }
            | Action::Package { .. }
            | Action::Service { .. }
            | Action::DaemonReload => {}
        }
        if !own.is_empty() {
            background.push(own);
        }
    }
    kernel::script(s, tasks);
    packages::script(s, tasks, checksums);
    units::script(s, tasks);
    markers::script(s, tasks);
    if !background.is_empty() {
        // Each probe is one `if …; fi` (a quoted command in it may span lines).
        for probe in &background {
            s.push_str(probe.trim_end_matches('\n'));
            s.push_str(" &\n");
        }
        s.push_str("wait\n");
    }
    s.push_str("echo @@end\n");
}

/// Why gather output could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FactError {
    #[error("gather output ended early (no end marker); stderr: {0}")]
    Truncated(String),
    #[error("gather output line {line}: cannot parse {text:?}")]
    BadLine { line: usize, text: String },
}

/// How a fact kind's parser took one output line.
pub(super) enum Parsed {
    /// Not this kind's marker.
    NotMine,
    Ok,
    /// This kind's marker, malformed.
    Bad,
}

/// A fact kind's reader of output lines (each kind's `Raw`).
trait ReadLine {
    fn line(&mut self, line: &str) -> Parsed;
}


/// Parse gather output (pure) into facts per task index. Lines not starting with `@@` are
/// ignored (noise from login scripts), but a missing `@@end` is an error: facts must be
/// complete to decide.
pub fn parse_facts(stdout: &str, stderr: &str, tasks: &[Task]) -> Result<Facts, FactError> {
    parse_facts_many(stdout, stderr, &[tasks]).pop().expect("one role")
}

/// [`parse_facts`] for the output of [`gather_script_many`], one result per role: the paths
/// lines (printed once, before every section) serve each role; every other line belongs to the
/// section it is in, sections ending with `@@end`. A section whose end marker never came is
/// `Truncated`, as is every one after it; a bad line fails its own section only.
pub fn parse_facts_many(stdout: &str, stderr: &str, roles: &[&[Task]]) -> Vec<Result<Facts, FactError>> {
    let mut paths = paths::Raw::default();
    let mut sections: Vec<Section> = roles.iter().map(|_| Section::default()).collect();
    let mut k = 0;
    for (n, line) in stdout.lines().enumerate() {
        if !line.starts_with("@@") {
            continue;
        }
        match paths.line(line) {
            Parsed::NotMine => {}
            Parsed::Ok => continue,
            // Malformed: every role reads the paths, so every role fails on it.
            Parsed::Bad => {
                let e = FactError::BadLine { line: n + 1, text: line.chars().take(200).collect() };
                return roles.iter().map(|_| Err(e.clone())).collect();
            }
        }
        let Some(sec) = sections.get_mut(k) else { break };
        if line == "@@end" {
            sec.ended = true;
            k += 1;
        } else if sec.bad.is_none()
            && let Err(e) = sec.line(n, line)
        {
            sec.bad = Some(e);
        }
    }
    let truncated = || FactError::Truncated(stderr.trim().chars().take(500).collect());
    sections
        .into_iter()
        .zip(roles)
        .map(|(mut sec, tasks)| match (sec.ended, sec.bad.take()) {
            (_, Some(e)) => Err(e),
            (false, None) => Err(truncated()),
            (true, None) => Ok(sec.facts(&paths, tasks)),
        })
        .collect()
}

/// One role's section of gather output, as read so far.
#[derive(Default)]
struct Section {
    kernel: kernel::Raw,
    packages: packages::Raw,
    units: units::Raw,
    markers: markers::Raw,
    facts: Facts,
    ended: bool,
    bad: Option<FactError>,
}

impl Section {
    /// Line `n` (0-based) of the output, a marker that is not the paths kind's nor `@@end`.
    fn line(&mut self, n: usize, line: &str) -> Result<(), FactError> {
        let bad = || FactError::BadLine { line: n + 1, text: line.chars().take(200).collect() };
        let kinds: [&mut dyn ReadLine; 4] = [&mut self.markers, &mut self.kernel, &mut self.packages, &mut self.units];
        match kinds.into_iter().map(|k| k.line(line)).find(|p| !matches!(p, Parsed::NotMine)) {
            Some(Parsed::Bad) => return Err(bad()),
            Some(_) => return Ok(()),
            None => {}
        }
        // Per-task markers: `@@<tag> <task index> <value>`.
        let mut it = line.splitn(3, ' ');
        let tag = it.next().ok_or_else(bad)?;
        let idx: usize = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let rest = it.next().unwrap_or("");
        let tf = self.facts.entry(idx).or_default();
        match tag {
            "@@c" => tf.content = Some(content::parse(rest).ok_or_else(bad)?),
            "@@g" => tf.guard_met = Some(rest == "1"),
            "@@w" => tf.probe_ok = Some(rest == "1"),
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// The facts of every task of the role, its paths from `paths`.
    fn facts(self, paths: &paths::Raw, tasks: &[Task]) -> Facts {
        let Section { kernel, packages, units, markers, mut facts, .. } = self;
        let mut unit_states = units.into_states();
        for (i, task) in tasks.iter().enumerate() {
            let tf = facts.entry(i).or_default();
            if let Some(p) = task_path(task) {
                tf.path = Some(paths.fact(p));
                tf.host_clock = paths.now();
            }
            tf.pending_restarts = markers.owed(task);
            match &task.action {
                Action::Sysctl { entries, .. } => tf.sysctl = kernel.sysctl(entries),
                Action::Modprobe { modules, .. } => tf.modules = kernel.modules(modules),
                Action::Package { names, .. } => {
                    tf.packages = packages.packages(names);
                    tf.packages_sig = match (paths.sig(packages::DPKG_DB[0]), paths.sig(packages::DPKG_DB[1])) {
                        (Some(a), Some(b)) => Some(format!("{a}|{b}")),
                        _ => None,
                    };
                }
                Action::Service { .. } => tf.unit = unit_states.next(),
                Action::DaemonReload => tf.pending_reload = markers.reload_owed(),
                _ => {}
            }
        }
        facts
    }
}
