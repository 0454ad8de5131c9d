//! Per-host cgroups: each lab host boots inside cgroups of its own, one per hierarchy.
//!
//! Without this every host shares the machine's cgroups: a container runtime inside two hosts
//! would make the same cgroup path (`/kubepods/...`) twice and the hosts would fight over it, and
//! nothing would tell which leftover process belongs to which host. So before systemd-nspawn
//! starts, `up` makes `<the launcher's cgroup>/ezk-lab-<machine>` in every hierarchy the machine
//! has mounted (each cgroup v1 controller, the named `systemd` one, and the cgroup2 `unified`
//! one) and the launched process moves itself in before it execs nspawn (`Procs`), so the host
//! and everything it ever starts stays below that cgroup. Teardown kills what is left there by
//! its own pids (`kill_all`) and removes the cgroups bottom-up (`remove`).
//!
//! The paths are recorded in the lab state before they are made, because a later `down` may run
//! from another cgroup than the `up` that made them.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::LabError;

/// One mounted cgroup hierarchy and where the current process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Mount point, e.g. `/sys/fs/cgroup/memory` or `/sys/fs/cgroup/unified`.
    pub mount: PathBuf,
    /// `cpuset` needs `cpuset.cpus`/`cpuset.mems` filled before a process may join.
    pub cpuset: bool,
    /// Path of this process's cgroup in the hierarchy (from /proc/self/cgroup), e.g.
    /// `/process_api/ab12`.
    pub current: String,
}

/// cgroup v1 mount options that are not controller names (`name=x` is kept: it names a
/// hierarchy as /proc/self/cgroup does).
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// Every cgroup hierarchy mounted in this mount namespace, with this process's place in it.
/// Reads /proc/self/mountinfo (fstype `cgroup` or `cgroup2`) and /proc/self/cgroup.
pub fn hierarchies() -> Vec<Hierarchy> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    parse_hierarchies(&mountinfo, &own)
}

/// The pure part of `hierarchies`: mountinfo + /proc/self/cgroup text.
pub fn parse_hierarchies(mountinfo: &str, own: &str) -> Vec<Hierarchy> {
    // /proc/self/cgroup: `ID:controller[,controller]|name=x|(empty for v2):/path`.
    let place = |names: &[&str], v2: bool| -> Option<String> {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = if v2 {
                ctrls.is_empty()
            } else {
                let mine: Vec<&str> = ctrls.split(',').collect();
                !ctrls.is_empty()
                    && names.iter().all(|n| mine.contains(n))
                    && mine.len() == names.len()
            };
            matches.then(|| path.to_string())
        })
    };
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_), Some(superopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        // Only whole hierarchies: a bind of a subtree would give wrong paths.
        if *root != "/" {
            continue;
        }
        let (names, v2): (Vec<&str>, bool) = match fstype {
            "cgroup2" => (vec![], true),
            "cgroup" => (
                superopts
                    .split(',')
                    .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
                    .collect(),
                false,
            ),
            _ => continue,
        };
        let Some(current) = place(&names, v2) else {
            continue;
        };
        if out.iter().any(|h: &Hierarchy| h.mount == Path::new(mount)) {
            continue;
        }
        out.push(Hierarchy {
            mount: PathBuf::from(mount),
            cpuset: names.contains(&"cpuset"),
            current,
        });
    }
    out
}

/// The cgroup directory for host `machine` in each hierarchy: `<mount><current>/ezk-lab-<machine>`.
pub fn host_cgroups(hierarchies: &[Hierarchy], machine: &str) -> Vec<PathBuf> {
    hierarchies
        .iter()
        .map(|h| {
            h.mount
                .join(h.current.trim_start_matches('/'))
                .join(format!("ezk-lab-{machine}"))
        })
        .collect()
}

/// Make the host's cgroups (existing ones are kept: a retried `up`); fill cpuset's two files
/// from the parent, which v1 leaves empty (and an empty cpuset admits no process).
pub fn create(dirs: &[PathBuf]) -> Result<(), LabError> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(LabError::io(d))?;
        if d.join("cpuset.cpus").exists() {
            let parent = d.parent().expect("cgroup has a parent");
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(parent.join(f))
                    .map_err(LabError::io(parent.join(f)))?;
                if std::fs::read_to_string(d.join(f))
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
                {
                    std::fs::write(d.join(f), v.trim()).map_err(LabError::io(d.join(f)))?;
                }
            }
        }
    }
    Ok(())
}

/// The host's `cgroup.procs` files, opened in advance: the child process writes `0` (itself)
/// into each between fork and exec, where allocating or opening files is not safe.
pub struct Procs(Vec<File>);

impl Procs {
    pub fn open(dirs: &[PathBuf]) -> Result<Procs, LabError> {
        dirs.iter()
            .map(|d| {
                let p = d.join("cgroup.procs");
                File::options()
                    .write(true)
                    .open(&p)
                    .map_err(LabError::io(p))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Procs)
    }

    /// Move the calling process into every cgroup. Async-signal-safe: one write(2) per file.
    pub fn join_self(&self) -> std::io::Result<()> {
        use std::io::Write;
        for mut f in &self.0 {
            f.write_all(b"0")?;
        }
        Ok(())
    }
}

/// Every pid in the cgroup `dir` and below it.
pub fn pids(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    collect(dir, &mut |d| {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    });
    out.sort_unstable();
    out.dedup();
    out
}

/// Call `f` on `dir` and every cgroup below it, deepest first.
fn collect(dir: &Path, f: &mut dyn FnMut(&Path)) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), f);
            }
        }
    }
    if dir.is_dir() {
        f(dir);
    }
}

/// Remove the host's cgroups and every cgroup its systemd or container runtime made below them,
/// deepest first. Only empty cgroups can go: call after the processes are gone.
pub fn remove(dirs: &[PathBuf]) -> Result<(), LabError> {
    let mut first_err = None;
    for d in dirs {
        collect(d, &mut |c| {
            if let Err(e) = std::fs::remove_dir(c)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                first_err.get_or_insert(LabError::Io {
                    path: c.to_path_buf(),
                    source: e,
                });
            }
        });
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 60 0:38 /sub /mnt/bound rw - cgroup2 cgroup2 rw
";
    const OWN: &str = "\
9:name=systemd:/user.slice
4:memory:/process_api/ab
3:cpuset:/
2:cpu,cpuacct:/
1:cpu:/x
0::/user.slice
";

    #[test]
    fn finds_each_hierarchy_and_our_place_in_it() {
        let h = parse_hierarchies(MOUNTINFO, OWN);
        let got: Vec<(String, bool, &str)> = h
            .iter()
            .map(|h| (h.mount.display().to_string(), h.cpuset, h.current.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/sys/fs/cgroup/cpu".to_string(), false, "/x"),
                ("/sys/fs/cgroup/cpu,cpuacct".to_string(), false, "/"),
                ("/sys/fs/cgroup/cpuset".to_string(), true, "/"),
                (
                    "/sys/fs/cgroup/memory".to_string(),
                    false,
                    "/process_api/ab"
                ),
                ("/sys/fs/cgroup/systemd".to_string(), false, "/user.slice"),
                ("/sys/fs/cgroup/unified".to_string(), false, "/user.slice"),
            ]
        );
        let dirs = host_cgroups(&h, "ez3-1");
        assert_eq!(
            dirs[3],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/ab/ezk-lab-ez3-1")
        );
        assert_eq!(
            dirs[2],
            PathBuf::from("/sys/fs/cgroup/cpuset/ezk-lab-ez3-1")
        );
    }
}
