//! Facts: what a host has now, for every target of one role, read in ONE command. The gather
//! script is generated from the tasks; its output is marker lines that a pure parser turns into
//! `TaskFacts`, one per task index. No decision is made here (that is `guard`).

use std::collections::BTreeMap;

use super::pending::{marker_name, PENDING_DIR, RELOAD_MARKER};
use super::sums::Sums;
use super::transport::sh_quote;
use super::want::Want;
use crate::plan::action::{Action, Task, WaitTarget};

/// Kind of a filesystem path as found on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    None,
    File,
    Dir,
    Link,
    Other,
}

/// A path's state: kind, mode bits, owner, group, sha256 (files, when asked), link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFact {
    pub kind: PathKind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
    /// Files: device, inode, size, mtime, ctime as the host printed them (`sums`), when the
    /// file was not modified within a second of the gather.
    pub sig: Option<String>,
}

impl PathFact {
    /// A path that does not exist.
    pub fn none() -> Self {
        PathFact { kind: PathKind::None, mode: 0, owner: String::new(), group: String::new(), sha256: None, link_target: None, sig: None }
    }
}

/// A sysctl key as read on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlFact {
    pub key: String,
    /// Current value (whitespace-normalized); None when the kernel does not know the key.
    pub value: Option<String>,
    /// Whether /proc/sys/<key> is writable (containers often are not).
    pub writable: bool,
}

/// A kernel module's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    Loaded,
    /// Not loaded, `modprobe -n` finds it.
    Available,
    /// Not loaded and cannot be (not in this kernel's modules, or no permission).
    Unavailable,
}

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
    /// `systemctl is-enabled` / `is-active` words.
    pub unit: Option<(String, String)>,
    /// `creates`/`unless` guard already satisfied.
    pub guard_met: Option<bool>,
    /// One-shot probe of a wait_for target succeeded.
    pub probe_ok: Option<bool>,
    /// Units this task notifies whose restart an earlier apply owed but never did (it died
    /// between changing a file and restarting): their markers are on the host.
    pub pending_restarts: Vec<String>,
    /// A `daemon_reload` task: a unit file landed but no daemon-reload followed (marker).
    pub pending_reload: bool,
}

/// Facts of a whole role on one host, by task index.
pub type Facts = BTreeMap<usize, TaskFacts>;

/// The probe command for a wait_for target, shared by gather (one shot) and apply (loop).
/// A TCP probe gives up after 1 s: an address nobody holds yet (a VIP before keepalived takes
/// it) hangs a connect for ~3 s of ARP retries, which the gather paid in full on a first run
/// and the wait loop paid again right when the address appeared; a live LAN peer answers in
/// milliseconds, and the loop simply probes again. (0.3 s was tried for the gather: on a
/// loaded machine bash alone can take that long to start, and a missed probe costs a round
/// trip.)
pub fn probe_cmd(target: &WaitTarget) -> String {
    match target {
        WaitTarget::Tcp { host, port } => format!(
            "timeout 1 bash -c {} </dev/null >/dev/null 2>&1",
            sh_quote(&format!("</dev/tcp/{host}/{port}"))
        ),
        WaitTarget::Command { cmd } => format!("sh -c {} >/dev/null 2>&1 </dev/null", sh_quote(cmd)),
    }
}

// Few processes per gather: one `find` for every path, one `sha256sum` for every file, one
// `sysctl`, one `dpkg-query`, one `systemctl show`; per-item work uses shell builtins. On a
// loaded deploy machine with hundreds of hosts, forks are what a no-op run costs.
const GATHER_PRELUDE: &str = r#"export LC_ALL=C
ezk_c() { # idx path want_sha : plan mode, current content of a differing text file
  [ -f "$2" ] && [ ! -L "$2" ] || return 0
  s=$(sha256sum < "$2" | cut -d' ' -f1)
  if [ "$s" != "$3" ]; then printf '@@c %s ' "$1"; base64 -w0 < "$2"; echo; fi
}
ezk_m() { # module
  if [ -d "/sys/module/$1" ]; then s=loaded; elif modprobe -n -q "$1" 2>/dev/null; then s=available; else s=unavailable; fi
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
/// text files that differ (plan mode, for diffs; never for secrets). `sums`: checksums known
/// from earlier runs; a file whose signature is unchanged is not hashed again.
pub fn gather_script(tasks: &[Task], wants: &[Want], with_content: bool, sums: &Sums) -> String {
    let mut s = String::from(GATHER_PRELUDE);
    let mut paths: Vec<&str> = tasks.iter().filter_map(task_path).collect();
    paths.sort();
    paths.dedup();
    if !paths.is_empty() {
        // The host's clock first: signatures from the last second are not cached (see `sums`).
        s.push_str(&format!(
            "echo \"@@now $(date +%s.%N)\"\nF=\"\n$(find {} -maxdepth 0 -printf '@@f\\t%y\\t%m\\t%u\\t%g\\t%l\\t%p\\n@@i\\t%D:%i:%s:%T@:%C@\\t%p\\n' 2>/dev/null)\n\"\nprintf '%s' \"$F\"\n",
            quoted_list(paths.iter().copied())
        ));
    }
    let mut files: Vec<&str> = tasks
        .iter()
        .zip(wants)
        .filter(|(_, w)| matches!(w, Want::File { .. }))
        .filter_map(|(t, _)| task_path(t))
        .collect();
    files.sort();
    files.dedup();
    if !files.is_empty() {
        // Files go into "$@" for one sha256sum; a file whose signature is the recorded one
        // gets its recorded sum echoed instead.
        s.push_str("set --\n");
        for f in &files {
            match sums.get(f) {
                Some((sig, sha)) => s.push_str(&format!(
                    "case \"$F\" in *{}*) printf '%s\\n' {};; *) set -- \"$@\" {};; esac\n",
                    sh_quote(&format!("\n@@i\t{sig}\t{f}\n")),
                    sh_quote(&format!("@@h {sha}  {f}")),
                    sh_quote(f)
                )),
                None => s.push_str(&format!("set -- \"$@\" {}\n", sh_quote(f))),
            }
        }
        s.push_str("[ $# -eq 0 ] || sha256sum -- \"$@\" 2>/dev/null | sed 's/^/@@h /'\n");
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut modules: Vec<&str> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    let mut units: Vec<&str> = Vec::new();
    for (i, (task, want)) in tasks.iter().zip(wants).enumerate() {
        match &task.action {
            Action::File(f) => {
                if let Want::File { sha256, diffable: true, .. } = want
                    && with_content
                {
                    s.push_str(&format!("ezk_c {i} {} {sha256}\n", sh_quote(&f.path)));
                }
            }
            Action::Sysctl { file, entries } => {
                if with_content {
                    s.push_str(&format!("ezk_c {i} {} {}\n", sh_quote(file), want.sha256().unwrap_or("-")));
                }
                keys.extend(entries.iter().map(|(k, _)| k.as_str()));
            }
            Action::Modprobe { file, modules: m } => {
                if with_content {
                    s.push_str(&format!("ezk_c {i} {} {}\n", sh_quote(file), want.sha256().unwrap_or("-")));
                }
                modules.extend(m.iter().map(String::as_str));
            }
            Action::Package { names, .. } => packages.extend(names.iter().map(String::as_str)),
            Action::Service { unit, .. } => units.push(unit),
            Action::Command { creates, unless, .. } => {
                let mut conds = Vec::new();
                if let Some(c) = creates {
                    conds.push(format!("[ -e {} ]", sh_quote(c)));
                }
                if let Some(u) = unless {
                    conds.push(format!("sh -c {} >/dev/null 2>&1 </dev/null", sh_quote(u)));
                }
                if !conds.is_empty() {
                    s.push_str(&format!("if {}; then echo '@@g {i} 1'; else echo '@@g {i} 0'; fi\n", conds.join(" || ")));
                }
            }
            Action::WaitFor { target, .. } => {
                s.push_str(&format!("if {}; then echo '@@w {i} 1'; else echo '@@w {i} 0'; fi\n", probe_cmd(target)));
            }
            Action::Directory { .. } | Action::Link { .. } | Action::Absent { .. } | Action::DaemonReload => {}
        }
    }
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        s.push_str(&format!("sysctl {} 2>/dev/null | sed 's/^/@@s /'\n", quoted_list(keys.iter().copied())));
        for k in &keys {
            let f = format!("/proc/sys/{}", k.replace('.', "/"));
            s.push_str(&format!("[ -w {} ] && echo {}\n", sh_quote(&f), sh_quote(&format!("@@sw {k}"))));
        }
    }
    modules.sort();
    modules.dedup();
    for m in &modules {
        s.push_str(&format!("ezk_m {}\n", sh_quote(m)));
    }
    packages.sort();
    packages.dedup();
    if !packages.is_empty() {
        let list = quoted_list(packages.iter().copied());
        s.push_str(&format!(
            "if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='@@k ${{Package}} ${{db:Status-Abbrev}}\\n' {list} 2>/dev/null; \
             elif command -v rpm >/dev/null 2>&1; then for p in {list}; do rpm -q \"$p\" >/dev/null 2>&1 && echo \"@@k $p ii\"; done; fi\n"
        ));
    }
    if !units.is_empty() {
        // One block per unit, in argument order, separated by empty lines.
        s.push_str(&format!(
            "systemctl show -p UnitFileState -p ActiveState -- {} 2>/dev/null | sed 's/^/@@u /'\n",
            quoted_list(units.iter().copied())
        ));
    }
    // Markers of restarts owed by an interrupted apply: a glob and builtins, no extra process.
    if tasks.iter().any(|t| !t.notify.is_empty() || matches!(t.action, Action::DaemonReload)) {
        s.push_str(&format!("for m in {PENDING_DIR}/*; do [ -e \"$m\" ] && echo \"@@p ${{m##*/}}\"; done\n"));
    }
    s.push_str("echo @@end\n");
    s
}

/// Why gather output could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactError {
    #[error("gather output ended early (no end marker); stderr: {0}")]
    Truncated(String),
    #[error("gather output line {line}: cannot parse {text:?}")]
    BadLine { line: usize, text: String },
}

/// Parse gather output (pure) into facts per task index. Lines not starting with `@@` are
/// ignored (noise from login scripts), but a missing `@@end` is an error: facts must be
/// complete to decide.
pub fn parse_facts(stdout: &str, stderr: &str, tasks: &[Task]) -> Result<Facts, FactError> {
    use std::collections::{HashMap, HashSet};
    let mut paths: HashMap<String, PathFact> = HashMap::new();
    let mut hashes: HashMap<String, String> = HashMap::new();
    let mut sigs: HashMap<String, String> = HashMap::new();
    let mut now: Option<f64> = None;
    let mut sysctl: HashMap<String, String> = HashMap::new();
    let mut writable: HashSet<String> = HashSet::new();
    let mut mods: HashMap<String, ModuleState> = HashMap::new();
    let mut pkgs: HashSet<String> = HashSet::new();
    let mut unit_blocks: Vec<(String, String)> = Vec::new();
    let mut cur_unit: Option<(String, String)> = None;
    let mut markers: HashSet<String> = HashSet::new();
    let mut facts = Facts::new();
    let mut ended = false;
    for (n, line) in stdout.lines().enumerate() {
        if !line.starts_with("@@") {
            continue;
        }
        let bad = || FactError::BadLine { line: n + 1, text: line.chars().take(200).collect() };
        if line == "@@end" {
            ended = true;
        } else if let Some(rest) = line.strip_prefix("@@f\t") {
            let f: Vec<&str> = rest.splitn(6, '\t').collect();
            if f.len() != 6 {
                return Err(bad());
            }
            let kind = match f[0] {
                "f" => PathKind::File,
                "d" => PathKind::Dir,
                "l" => PathKind::Link,
                _ => PathKind::Other,
            };
            let mode = u32::from_str_radix(f[1], 8).map_err(|_| bad())?;
            let fact = PathFact {
                kind,
                mode,
                owner: f[2].to_string(),
                group: f[3].to_string(),
                sha256: None,
                link_target: (kind == PathKind::Link).then(|| f[4].to_string()),
                sig: None,
            };
            paths.insert(f[5].to_string(), fact);
        } else if let Some(rest) = line.strip_prefix("@@now ") {
            // A date without %N (not GNU) gives no clock: then nothing is cached.
            now = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("@@i\t") {
            let (sig, p) = rest.split_once('\t').ok_or_else(bad)?;
            // Cached only when the last change (ctime, the signature's last field) is over a
            // second older than the host's clock: timestamps are coarser than a write.
            let ctime: Option<f64> = sig.rsplit(':').next().and_then(|c| c.parse().ok());
            if let (Some(c), Some(n)) = (ctime, now)
                && c < n - 1.0
            {
                sigs.insert(p.to_string(), sig.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("@@h ") {
            // `sha256sum` escapes odd names with a leading backslash: leave those unknown.
            if let Some((h, p)) = rest.split_once("  ")
                && !h.starts_with('\\')
            {
                hashes.insert(p.to_string(), h.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("@@p ") {
            markers.insert(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("@@sw ") {
            writable.insert(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("@@s ") {
            let (k, v) = rest.split_once(" = ").ok_or_else(bad)?;
            sysctl.insert(k.to_string(), v.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if let Some(rest) = line.strip_prefix("@@m ") {
            let (m, st) = rest.split_once(' ').ok_or_else(bad)?;
            let st = match st {
                "loaded" => ModuleState::Loaded,
                "available" => ModuleState::Available,
                "unavailable" => ModuleState::Unavailable,
                _ => return Err(bad()),
            };
            mods.insert(m.to_string(), st);
        } else if let Some(rest) = line.strip_prefix("@@k ") {
            let (p, st) = rest.split_once(' ').ok_or_else(bad)?;
            if st.starts_with("ii") {
                pkgs.insert(p.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("@@u") {
            let rest = rest.trim_start();
            if rest.is_empty() {
                unit_blocks.extend(cur_unit.take());
            } else {
                let u = cur_unit.get_or_insert_with(Default::default);
                if let Some(v) = rest.strip_prefix("UnitFileState=") {
                    u.0 = v.to_string();
                } else if let Some(v) = rest.strip_prefix("ActiveState=") {
                    u.1 = v.to_string();
                }
            }
        } else {
            let mut it = line.splitn(3, ' ');
            let tag = it.next().ok_or_else(bad)?;
            let idx: usize = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let rest = it.next().unwrap_or("");
            let tf = facts.entry(idx).or_default();
            match tag {
                "@@c" => tf.content = Some(decode_b64(rest.trim()).ok_or_else(bad)?),
                "@@g" => tf.guard_met = Some(rest == "1"),
                "@@w" => tf.probe_ok = Some(rest == "1"),
                _ => return Err(bad()),
            }
        }
    }
    unit_blocks.extend(cur_unit.take());
    if !ended {
        return Err(FactError::Truncated(stderr.trim().chars().take(500).collect()));
    }
    let mut units = unit_blocks.into_iter();
    for (i, task) in tasks.iter().enumerate() {
        let tf = facts.entry(i).or_default();
        if let Some(p) = task_path(task) {
            let mut pf = paths.get(p).cloned().unwrap_or_else(PathFact::none);
            if pf.kind == PathKind::File {
                pf.sha256 = hashes.get(p).cloned();
                pf.sig = sigs.get(p).cloned();
            }
            tf.path = Some(pf);
        }
        tf.pending_restarts = task.notify.iter().filter(|u| markers.contains(&marker_name(u))).cloned().collect();
        match &task.action {
            Action::Sysctl { entries, .. } => {
                tf.sysctl = entries
                    .iter()
                    .map(|(k, _)| SysctlFact { key: k.clone(), value: sysctl.get(k).cloned(), writable: writable.contains(k) })
                    .collect();
            }
            Action::Modprobe { modules, .. } => {
                tf.modules = modules.iter().map(|m| (m.clone(), mods.get(m).copied().unwrap_or(ModuleState::Unavailable))).collect();
            }
            Action::Package { names, .. } => tf.packages = names.iter().map(|n| (n.clone(), pkgs.contains(n))).collect(),
            Action::Service { .. } => {
                tf.unit = units.next().map(|(e, a)| (if e.is_empty() { "not-found".into() } else { e }, a));
            }
            Action::DaemonReload => tf.pending_reload = markers.contains(RELOAD_MARKER),
            _ => {}
        }
    }
    Ok(facts)
}

/// Minimal standard base64 decoder (the gather sends file contents with `base64 -w0`).
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}
