//! `systemd-analyze verify --root` on the units and drop-ins each host receives.
//!
//! The root is what the host would have: this machine's packaged units (/usr/lib/systemd/system:
//! chrony.service for the drop-in, the targets units depend on), the host's rendered files
//! (units, drop-ins, the pushed binaries of bin_dir) and, for each command a unit runs that is
//! not rendered (/usr/sbin/nginx, /usr/sbin/chronyd), this machine's copy of the packaged
//! program. verify then checks what systemd checks at load time: sections and keys, every
//! Exec* command present and executable, dependencies that exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Rendered, quiet_ok, read_dir, walk};

/// Verify every host's units; returns "variant/host unit" for each one verified and panics
/// listing every failure.
pub fn verify_all(r: &Rendered, systemd_analyze: &Path) -> Vec<String> {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for host in r.host_dirs() {
        let units = units_of(&host);
        if units.is_empty() {
            continue;
        }
        let name = host.strip_prefix(&r.root).unwrap().display().to_string();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        build_root(&host, root);
        for unit in units {
            if let Err(skip) = provide_commands(root, &unit) {
                eprintln!("SKIPPED systemd-analyze verify {unit} ({name}): {skip}");
                continue;
            }
            let mut cmd = Command::new(systemd_analyze);
            cmd.arg("verify")
                .arg(format!("--root={}", root.display()))
                .arg(&unit);
            match quiet_ok(&mut cmd) {
                Ok(()) => checked.push(format!("{name} {unit}")),
                Err(e) => failures.push(format!("{name} {unit}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    checked
}

/// Units a host's render installs or changes: `X.service` files and `X.service.d/` drop-ins.
fn units_of(host: &Path) -> BTreeSet<String> {
    read_dir(&host.join("etc/systemd/system"))
        .iter()
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?;
            n.strip_suffix(".d")
                .or(Some(n))
                .filter(|u| u.ends_with(".service"))
                .map(String::from)
        })
        .collect()
}

fn build_root(host: &Path, root: &Path) {
    let units = root.join("usr/lib/systemd/system");
    copy_tree(Path::new("/usr/lib/systemd/system"), &units, true);
    // Merged /usr, as on Debian 12; the targets exist so that /sbin/x can be put in place.
    for (link, to) in [("lib", "usr/lib"), ("bin", "usr/bin"), ("sbin", "usr/sbin")] {
        std::fs::create_dir_all(root.join(to)).unwrap();
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    copy_tree(host, root, false);
}

/// Copy a tree. `keep_links`: symlinks stay links (packaged aliases and masks); otherwise they
/// become the file they point to (rendered binaries point into the artifact store).
fn copy_tree(from: &Path, to: &Path, keep_links: bool) {
    walk(from, &mut |p| {
        let dest = to.join(p.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        match std::fs::read_link(p) {
            Ok(target) if keep_links => std::os::unix::fs::symlink(&target, &dest).unwrap(),
            Ok(_) => {
                let real = std::fs::canonicalize(p).unwrap();
                if std::fs::hard_link(&real, &dest).is_err() {
                    std::fs::copy(&real, &dest).unwrap();
                }
            }
            Err(_) => {
                std::fs::copy(p, &dest).unwrap();
            }
        }
    });
}

/// Put this machine's copy of each packaged program `unit` runs into `root` (the host gets it
/// from its package). `Err` names a program this machine does not have.
fn provide_commands(root: &Path, unit: &str) -> Result<(), String> {
    let mut texts = Vec::new();
    for p in [
        root.join("etc/systemd/system").join(unit),
        root.join("usr/lib/systemd/system").join(unit),
    ] {
        if let Ok(t) = std::fs::read_to_string(&p) {
            texts.push(t);
        }
    }
    for p in read_dir(&root.join("etc/systemd/system").join(format!("{unit}.d"))) {
        texts.push(std::fs::read_to_string(p).unwrap());
    }
    if texts.is_empty() {
        return Err(format!(
            "{unit} is not installed on this machine (its package provides it)"
        ));
    }
    for text in &texts {
        for cmd in exec_commands(text) {
            let inside = root.join(cmd.strip_prefix("/").unwrap());
            if inside.exists() || std::fs::symlink_metadata(&inside).is_ok() {
                continue;
            }
            let here = PathBuf::from(&cmd);
            if !here.is_file() {
                return Err(format!("{cmd} is not installed on this machine"));
            }
            std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
            std::fs::copy(&here, &inside).unwrap();
        }
    }
    Ok(())
}

/// The program of each `Exec*=` line (prefixes `-@:+!` dropped), absolute paths only.
fn exec_commands(unit_text: &str) -> Vec<String> {
    unit_text
        .lines()
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim()))
        .filter_map(|v| {
            v.trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
        })
        .filter(|c| c.starts_with('/'))
        .map(String::from)
        .collect()
}
