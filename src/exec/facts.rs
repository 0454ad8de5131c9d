//! Facts: what a host has now, for every target of one role, read in ONE command. The gather
//! script is generated from the tasks; its output is marker lines that a pure parser turns into
//! `TaskFacts`, one per task index. No decision is made here (that is `guard`).

use std::collections::BTreeMap;

use super::transport::sh_quote;
use super::want::Want;
use crate::plan::action::{Action, Task, WaitTarget};

/// Kind of a filesystem path as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl PathFact {
    /// A path that does not exist.
    pub fn none() -> Self {
        PathFact { kind: PathKind::None, mode: 0, owner: String::new(), group: String::new(), sha256: None, link_target: None }
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
}

/// Facts of a whole role on one host, by task index.
pub type Facts = BTreeMap<usize, TaskFacts>;

/// The probe command for a wait_for target, shared by gather (one shot) and apply (loop).
pub fn probe_cmd(target: &WaitTarget) -> String {
    match target {
        WaitTarget::Tcp { host, port } => format!(
            "timeout 2 bash -c {} >/dev/null 2>&1",
            sh_quote(&format!("</dev/tcp/{host}/{port}"))
        ),
        WaitTarget::Command { cmd } => format!("sh -c {} >/dev/null 2>&1 </dev/null", sh_quote(cmd)),
    }
}

const GATHER_PRELUDE: &str = r#"export LC_ALL=C
ezk_p() { # idx path want_sha("-": no hash) send_content_if_differs(0|1)
  if [ -L "$2" ]; then k=link; elif [ -f "$2" ]; then k=file; elif [ -d "$2" ]; then k=dir; elif [ -e "$2" ]; then k=other; else echo "@@p $1 none"; return; fi
  m=$(stat -c '%a %U %G' -- "$2") || m='0 ? ?'
  s=-; t=-
  if [ "$k" = file ] && [ "$3" != - ]; then s=$(sha256sum -- "$2" | cut -d' ' -f1); fi
  if [ "$k" = link ]; then t=$(readlink -- "$2"); fi
  echo "@@p $1 $k $m $s $t"
  if [ "$4" = 1 ] && [ "$k" = file ] && [ "$s" != "$3" ]; then printf '@@c %s ' "$1"; base64 -w0 -- "$2"; echo; fi
}
ezk_s() { # idx key
  f=/proc/sys/$(echo "$2" | tr . /); w=r; [ -w "$f" ] && w=w
  if v=$(sysctl -n "$2" 2>/dev/null); then echo "@@s $1 $w $2 $(echo $v)"; else echo "@@s $1 $w $2 !"; fi
}
ezk_m() { # idx module
  if [ -d "/sys/module/$2" ]; then s=loaded; elif modprobe -n -q "$2" 2>/dev/null; then s=available; else s=unavailable; fi
  echo "@@m $1 $2 $s"
}
ezk_k() { # idx package
  if command -v dpkg-query >/dev/null 2>&1; then s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$2" 2>/dev/null)
    case "$s" in ii*) s=1;; *) s=0;; esac
  elif command -v rpm >/dev/null 2>&1; then if rpm -q "$2" >/dev/null 2>&1; then s=1; else s=0; fi
  else s=0; fi
  echo "@@k $1 $2 $s"
}
ezk_u() { # idx unit
  e=$(systemctl is-enabled "$2" 2>/dev/null | head -n1); a=$(systemctl is-active "$2" 2>/dev/null | head -n1)
  echo "@@u $1 ${e:-unknown} ${a:-unknown}"
}
"#;

/// The gather script for a role's tasks. `with_content`: also send the current content of
/// text files that differ (plan mode, for diffs; never for secrets).
pub fn gather_script(tasks: &[Task], wants: &[Want], with_content: bool) -> String {
    let mut s = String::from(GATHER_PRELUDE);
    for (i, (task, want)) in tasks.iter().zip(wants).enumerate() {
        match &task.action {
            Action::File(f) => {
                let (sha, diffable) = match want {
                    Want::File { sha256, diffable, .. } => (sha256.as_str(), *diffable && with_content),
                    _ => ("", false),
                };
                s.push_str(&format!("ezk_p {i} {} {sha} {}\n", sh_quote(&f.path), u8::from(diffable)));
            }
            Action::Directory { path, .. } | Action::Link { path, .. } | Action::Absent { path } => {
                s.push_str(&format!("ezk_p {i} {} - 0\n", sh_quote(path)));
            }
            Action::Sysctl { file, entries } => {
                let sha = want.sha256().unwrap_or("-");
                s.push_str(&format!("ezk_p {i} {} {sha} {}\n", sh_quote(file), u8::from(with_content)));
                for (k, _) in entries {
                    s.push_str(&format!("ezk_s {i} {}\n", sh_quote(k)));
                }
            }
            Action::Modprobe { file, modules } => {
                let sha = want.sha256().unwrap_or("-");
                s.push_str(&format!("ezk_p {i} {} {sha} {}\n", sh_quote(file), u8::from(with_content)));
                for m in modules {
                    s.push_str(&format!("ezk_m {i} {}\n", sh_quote(m)));
                }
            }
            Action::Package { names, .. } => {
                for n in names {
                    s.push_str(&format!("ezk_k {i} {}\n", sh_quote(n)));
                }
            }
            Action::Service { unit, .. } => s.push_str(&format!("ezk_u {i} {}\n", sh_quote(unit))),
            Action::DaemonReload => {}
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
        }
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

/// Parse gather output (pure). Lines not starting with `@@` are ignored (noise from login
/// scripts), but a missing `@@end` is an error: facts must be complete to decide.
pub fn parse_facts(stdout: &str, stderr: &str) -> Result<Facts, FactError> {
    let mut facts = Facts::new();
    let mut ended = false;
    for (n, line) in stdout.lines().enumerate() {
        if !line.starts_with("@@") {
            continue;
        }
        if line == "@@end" {
            ended = true;
            continue;
        }
        let bad = || FactError::BadLine { line: n + 1, text: line.chars().take(200).collect() };
        let mut it = line.splitn(3, ' ');
        let tag = it.next().ok_or_else(bad)?;
        let idx: usize = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let rest = it.next().unwrap_or("");
        let tf = facts.entry(idx).or_default();
        let w: Vec<&str> = rest.split(' ').collect();
        match tag {
            "@@p" => tf.path = Some(parse_path(rest).ok_or_else(bad)?),
            "@@c" => {
                tf.content = Some(decode_b64(rest.trim()).ok_or_else(bad)?);
            }
            "@@s" => {
                if w.len() < 3 {
                    return Err(bad());
                }
                let value = w[2..].join(" ");
                tf.sysctl.push(SysctlFact {
                    key: w[1].to_string(),
                    value: (value != "!").then_some(value),
                    writable: w[0] == "w",
                });
            }
            "@@m" => {
                let st = match w.get(1) {
                    Some(&"loaded") => ModuleState::Loaded,
                    Some(&"available") => ModuleState::Available,
                    Some(&"unavailable") => ModuleState::Unavailable,
                    _ => return Err(bad()),
                };
                tf.modules.push((w[0].to_string(), st));
            }
            "@@k" => {
                if w.len() != 2 {
                    return Err(bad());
                }
                tf.packages.push((w[0].to_string(), w[1] == "1"));
            }
            "@@u" => {
                if w.len() != 2 {
                    return Err(bad());
                }
                tf.unit = Some((w[0].to_string(), w[1].to_string()));
            }
            "@@g" => tf.guard_met = Some(rest == "1"),
            "@@w" => tf.probe_ok = Some(rest == "1"),
            _ => return Err(bad()),
        }
    }
    if !ended {
        return Err(FactError::Truncated(stderr.trim().chars().take(500).collect()));
    }
    Ok(facts)
}

fn parse_path(rest: &str) -> Option<PathFact> {
    let mut it = rest.splitn(6, ' ');
    let kind = match it.next()? {
        "none" => return Some(PathFact::none()),
        "file" => PathKind::File,
        "dir" => PathKind::Dir,
        "link" => PathKind::Link,
        "other" => PathKind::Other,
        _ => return None,
    };
    let mode = u32::from_str_radix(it.next()?, 8).ok()?;
    let owner = it.next()?.to_string();
    let group = it.next()?.to_string();
    let sha = it.next()?;
    let target = it.next()?;
    Some(PathFact {
        kind,
        mode,
        owner,
        group,
        sha256: (sha != "-").then(|| sha.to_string()),
        link_target: (target != "-").then(|| target.to_string()),
    })
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
