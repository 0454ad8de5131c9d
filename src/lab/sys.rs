//! Host-machine plumbing for the lab: root and tool checks, running commands with their stderr
//! in the error, mount and process inspection through /proc, file locks.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::LabError;

/// Tools `ezk lab up` runs, with the Debian package that ships each.
const TOOLS: &[(&str, &str)] = &[
    ("systemd-nspawn", "systemd-container"),
    ("debootstrap", "debootstrap"),
    ("ip", "iproute2"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("setsid", "util-linux"),
    ("chroot", "coreutils"),
    ("kill", "procps"),
];

/// Tools needed only while building the base image.
const IMAGE_TOOLS: &[&str] = &["debootstrap", "chroot"];

/// Tools `ezk lab down` needs (a subset: tearing down must work with less).
const DOWN_TOOLS: &[&str] = &["ip", "umount", "kill"];

/// True when running with effective uid 0 (read from /proc, no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Check root, tools and overlayfs before anything is made. `op` names the subcommand.
/// `image_cached`: debootstrap and chroot are needed only to build the base image.
pub fn preflight(op: &'static str, image_cached: bool) -> Result<(), LabError> {
    if !is_root() {
        return Err(LabError::NotRoot(op));
    }
    let wanted: Vec<(&str, &str)> = if op == "up" {
        TOOLS
            .iter()
            .copied()
            .filter(|(t, _)| !(image_cached && IMAGE_TOOLS.contains(t)))
            .collect()
    } else {
        TOOLS
            .iter()
            .copied()
            .filter(|(t, _)| DOWN_TOOLS.contains(t))
            .collect()
    };
    missing_tools(&wanted, crate::machine::has_tool)?;
    if op == "up" {
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
        {
            return Err(LabError::NoOverlay);
        }
    }
    Ok(())
}

/// The MissingTools error for the `wanted` (tool, package) pairs that `has` does not find.
fn missing_tools(wanted: &[(&str, &str)], has: impl Fn(&str) -> bool) -> Result<(), LabError> {
    let missing: Vec<&(&str, &str)> = wanted.iter().filter(|(t, _)| !has(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<String> = Vec::new();
    for (_, p) in &missing {
        if !packages.iter().any(|q| q == p) {
            packages.push(p.to_string());
        }
    }
    Err(LabError::MissingTools {
        tools: missing.iter().map(|(t, _)| t.to_string()).collect(),
        packages,
    })
}

/// Render a command for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion; stdout on success, an error with its stderr otherwise.
pub fn run(cmd: &mut Command) -> Result<String, LabError> {
    let out = cmd.output().map_err(|e| LabError::Command {
        cmd: show(cmd),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: show(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Shorthand: `run(Command::new(prog).args(args))`.
pub fn run_args(prog: &str, args: &[&str]) -> Result<String, LabError> {
    run(Command::new(prog).args(args))
}

/// Mount points currently at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything at or below `dir` (deepest first; lazily if busy), then check none is left.
pub fn unmount_all(dir: &Path) -> Result<(), LabError> {
    for m in mounts_under(dir) {
        let p = m.to_string_lossy().into_owned();
        if run_args("umount", &[&p]).is_err() {
            let _ = run_args("umount", &["-l", &p]);
        }
    }
    match mounts_under(dir).first() {
        Some(_) => Err(LabError::StillMounted {
            path: dir.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Delete a directory tree, but never through a mount point (a crashed debootstrap can leave
/// /proc, /sys or /dev mounted inside its target; deleting through those would be a disaster).
pub fn remove_tree(dir: &Path) -> Result<(), LabError> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_all(dir)?;
    std::fs::remove_dir_all(dir).map_err(LabError::io(dir))
}

/// Is `pid` a live (non-zombie) systemd-nspawn process started for `machine`? Checking the
/// command line guards against signalling a recycled pid that now belongs to someone else.
pub fn is_our_nspawn(pid: u32, machine: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_nspawn = args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"));
    let want = format!("--machine={machine}");
    let ours = args.contains(&want.as_bytes());
    is_nspawn && ours && !is_zombie(pid)
}

/// Live processes of lab hosts given as (machine, machine-id): systemd-nspawn processes started
/// with `--machine=<machine>` (the main one and its forked helpers), and processes whose root
/// filesystem carries that machine-id (the container's own processes). Never this process.
pub fn host_pids<'a>(hosts: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<u32> {
    let hosts: Vec<(String, &str)> = hosts
        .map(|(m, id)| (format!("--machine={m}"), id))
        .collect();
    let me = std::process::id();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me || is_zombie(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let nspawn = args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"));
        let id =
            std::fs::read_to_string(format!("/proc/{pid}/root/etc/machine-id")).unwrap_or_default();
        let id = id.trim();
        let ours = hosts.iter().any(|(m, mid)| {
            (nspawn && args.contains(&m.as_bytes())) || (!mid.is_empty() && id == *mid)
        });
        if ours {
            found.push(pid);
        }
    }
    found
}

/// A zombie has exited; only its parent's wait() is missing.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Send `sig` (e.g. "TERM", "KILL") to one pid.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .output();
}

/// Does a network interface with this name exist?
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The last `n` lines of a log file (for failure reports).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Take an exclusive lock on `path` (created if needed); held until the File is dropped.
pub fn lock_file(path: &Path) -> Result<File, LabError> {
    lock_file_noting_wait(path, || {})
}

/// Like `lock_file`, but calls `on_wait` first when another process holds the lock.
pub fn lock_file_noting_wait(path: &Path, on_wait: impl FnOnce()) -> Result<File, LabError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io(parent))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LabError::io(path))?;
    match f.try_lock() {
        Ok(()) => return Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => on_wait(),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(LabError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    }
    f.lock().map_err(LabError::io(path))?;
    Ok(f)
}

/// Write a file atomically (temp file in the same dir, then rename) with the given mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut f = File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(LabError::io(&tmp))?;
    f.write_all(data).map_err(LabError::io(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(LabError::io(&tmp))?;
    f.sync_all().map_err(LabError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(LabError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn missing_tools_name_the_apt_line() {
        let err = missing_tools(TOOLS, |t| {
            !matches!(t, "systemd-nspawn" | "ssh" | "ssh-keygen")
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing tools: systemd-nspawn, ssh, ssh-keygen. Install them with:\n  apt-get install -y systemd-container openssh-client"
        );
        assert!(missing_tools(TOOLS, |_| true).is_ok());
    }

    #[test]
    fn own_process_is_not_nspawn() {
        assert!(!is_our_nspawn(std::process::id(), "x"));
        assert!(!is_our_nspawn(u32::MAX - 1, "x"));
    }
}
