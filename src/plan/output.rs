//! `ezk render` output: per host, every file it would receive under `DIR/<host>/<path>`, and
//! `DIR/<host>/PLAN.txt` listing every action in order, so an operator can review a step
//! without any host being contacted.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::action::{Action, Content, StepPlan, Task, UnitState, WaitTarget};
use super::error::PlanError;

/// Marks a directory as written by `ezk render`, so a re-render may replace host folders in it.
const MARKER: &str = ".ezk-render";

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSummary {
    pub hosts: usize,
    pub files: usize,
}

/// Write `plans` under `out`. Refuses a non-empty `out` that `ezk render` did not create.
pub fn write_render(plans: &[StepPlan], out: &Path) -> Result<RenderSummary, PlanError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| PlanError::Io {
            path: p.clone(),
            source,
        }
    };
    if out.exists() {
        let non_empty = fs::read_dir(out).map_err(io(out))?.next().is_some();
        if non_empty && !out.join(MARKER).exists() {
            return Err(PlanError::Io {
                path: out.display().to_string(),
                source: std::io::Error::other(
                    "exists and was not written by `ezk render`; choose an empty or new directory",
                ),
            });
        }
    }
    fs::create_dir_all(out).map_err(io(out))?;
    fs::write(out.join(MARKER), "written by ezk render\n").map_err(io(out))?;

    // host → (step, role, task) in run order.
    let mut per_host: IndexMap<&str, Vec<(&str, &str, &Task)>> = IndexMap::new();
    for p in plans {
        for w in &p.waves {
            for hr in &w.hosts {
                let v = per_host.entry(hr.host.as_str()).or_default();
                v.extend(
                    hr.tasks
                        .iter()
                        .map(|t| (p.step.as_str(), hr.role.as_str(), t)),
                );
            }
        }
    }
    let mut files = 0;
    for (host, tasks) in &per_host {
        let dir = out.join(host);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut plan = format!(
            "# ezk render: every action for host {host}, in order (no host was contacted)\n"
        );
        let mut written = BTreeSet::new();
        for (step, role, t) in tasks {
            plan.push_str(&format!(
                "[{step}] {role}: {}    # {} ({})\n",
                describe(&t.action),
                t.name,
                t.origin
            ));
            if !t.notify.is_empty() {
                plan.push_str(&format!("    notify: {}\n", t.notify.join(", ")));
            }
            if let Action::File(f) = &t.action {
                let target = host_path(&dir, &f.path).ok_or_else(|| PlanError::Render {
                    origin: t.origin.clone(),
                    hosts: vec![host.to_string()],
                    msg: format!("destination {:?} is not a clean absolute path", f.path),
                })?;
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                if target.symlink_metadata().is_ok() {
                    fs::remove_file(&target).map_err(io(&target))?;
                }
                match &f.content {
                    Content::Inline(bytes) => {
                        // Secrets stay private on the operator's machine too, from the moment
                        // the file exists (created 0600, not narrowed after the write).
                        let mode = if f.secret { 0o600 } else { f.mode & 0o777 };
                        let mut file = fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&target)
                            .map_err(io(&target))?;
                        file.write_all(bytes).map_err(io(&target))?;
                        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                            .map_err(io(&target))?;
                    }
                    // A binary is not for review: link to the verified copy in the store.
                    Content::Local { path, .. } => {
                        std::os::unix::fs::symlink(path, &target).map_err(io(&target))?
                    }
                    // Nothing to link to yet; PLAN.txt names what will be installed.
                    Content::NotDownloaded { .. } => continue,
                }
                if written.insert(f.path.clone()) {
                    files += 1;
                }
            }
        }
        fs::write(dir.join("PLAN.txt"), plan).map_err(io(&dir))?;
    }
    Ok(RenderSummary {
        hosts: per_host.len(),
        files,
    })
}

/// `dir` + an absolute host path, refusing `..` so nothing lands outside `dir`.
fn host_path(dir: &Path, p: &str) -> Option<PathBuf> {
    let rel = Path::new(p).strip_prefix("/").ok()?;
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(rel))
}

/// One line describing an action; secret content is never shown (only its path).
pub fn describe(a: &Action) -> String {
    match a {
        Action::File(f) => {
            let src = match &f.content {
                Content::Inline(b) => format!("({} bytes)", b.len()),
                Content::Local { path, sha256 } => {
                    format!("(from {} sha256 {sha256})", path.display())
                }
                c @ Content::NotDownloaded { .. } => format!("- {}", c.not_downloaded().expect("not downloaded")),
            };
            format!(
                "file {} {:04o} {}:{} {src}{}",
                f.path,
                f.mode,
                f.owner,
                f.group,
                if f.secret { " secret" } else { "" }
            )
        }
        Action::Directory {
            path,
            mode,
            owner,
            group,
        } => format!("directory {path} {mode:04o} {owner}:{group}"),
        Action::Link { path, target } => format!("link {path} -> {target}"),
        Action::Absent { path } => format!("absent {path}"),
        Action::Sysctl { file, entries } => {
            format!(
                "sysctl {file}: {}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        Action::Modprobe { file, modules } => format!("modprobe {file}: {}", modules.join(" ")),
        Action::Package { names, offline } => format!(
            "package{} {}",
            if *offline {
                " (offline: verify only)"
            } else {
                ""
            },
            names.join(" ")
        ),
        Action::Service {
            unit,
            enabled,
            state,
            last_if,
        } => {
            let st = match state {
                UnitState::Started => "started",
                UnitState::Stopped => "stopped",
                UnitState::Restarted => "restarted",
            };
            format!(
                "service {unit} {st}{}{}",
                if *enabled {
                    ", enabled"
                } else {
                    ", not enabled"
                },
                match last_if {
                    Some(c) => format!("; a restart waits for the other hosts where {c:?} succeeds"),
                    None => String::new(),
                }
            )
        }
        Action::DaemonReload => "systemctl daemon-reload (if a unit file changed)".into(),
        Action::Command {
            cmd,
            creates,
            unless,
            ..
        } => {
            let mut s = format!("command {cmd:?}");
            if let Some(c) = creates {
                s.push_str(&format!(" creates {c}"));
            }
            if let Some(u) = unless {
                s.push_str(&format!(" unless {u:?}"));
            }
            s
        }
        Action::WaitFor {
            target,
            timeout_secs,
            ..
        } => match target {
            WaitTarget::Tcp { host, port } => {
                format!("wait_for tcp {host}:{port} within {timeout_secs}s")
            }
            WaitTarget::Command { cmd } => {
                format!("wait_for command {cmd:?} within {timeout_secs}s")
            }
        },
    }
}
