//! `up`, `down` and `status` of a lab. `up` records each resource in the state file before
//! creating it and, on any failure, tears down what it made before returning the error; `down`
//! works from the state file alone and tolerates every piece being already gone.
//!
//! One file because `up` and `down` are each other's inverse over the same state file: every
//! resource `up` records sits next to the code that removes it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::inventory::{self, InventoryInput};
use super::state::{HostState, LabState};
use super::{
    LabError, LabPaths, cgroup, check_interrupted, host, image, inotify, net, sys, validate_name,
    wait,
};

/// What `ezk lab up` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    pub hosts: usize,
    /// Hosts booted beyond `hosts`, left out of the inventory (to try `ezk add-node` on).
    pub spare: usize,
    /// `clusters/<name>/` (made absolute by `up`).
    pub cluster_dir: PathBuf,
    /// How long to wait for all hosts to be ready.
    pub timeout: Duration,
}

/// One host's current state, as `status` reports it.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub name: String,
    pub ip: Ipv4Addr,
    /// `running` (nspawn alive, sshd port open), `booting` (alive, no sshd yet), `stopped`.
    pub state: String,
    pub pid: Option<u32>,
}

/// One lab's current state.
#[derive(Debug, Clone)]
pub struct LabStatus {
    pub name: String,
    pub subnet: String,
    pub bridge: String,
    pub cluster_dir: PathBuf,
    pub hosts: Vec<HostStatus>,
}

/// Bring a lab up; returns its state and each host's `is-system-running` answer.
pub fn up(
    paths: &LabPaths,
    opts: &UpOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<(LabState, Vec<String>), LabError> {
    validate_name(&opts.name)?;
    if opts.hosts == 0 || opts.hosts + opts.spare > net::MAX_HOSTS {
        return Err(LabError::BadHostCount(opts.hosts + opts.spare));
    }
    sys::preflight("up", image::is_cached(paths))?;
    let _lab_lock = sys::lock_file(&lock_path(paths, &opts.name))?;
    if LabState::load(paths, &opts.name)?.is_some() {
        return Err(LabError::AlreadyUp {
            name: opts.name.clone(),
            path: paths.state_file(&opts.name),
        });
    }
    let hosts_file = opts.cluster_dir.join("hosts");
    if hosts_file.exists() && !is_lab_written(&hosts_file) {
        return Err(LabError::ClusterExists { path: hosts_file });
    }
    let image = image::ensure(paths, progress)?;
    check_interrupted()?;
    // Absolute (the inventory names the key by absolute path); created only in `make`, after
    // the state file records the lab, so a refused `up` leaves no empty cluster dir.
    let cluster_dir =
        std::path::absolute(&opts.cluster_dir).map_err(LabError::io(&opts.cluster_dir))?;

    // Allocate the subnet and record the whole plan before making anything.
    let hierarchies = cgroup::hierarchies();
    let mut state = {
        let _alloc = sys::lock_file(&paths.labs_dir().join(".alloc.lock"))?;
        let index = net::allocate(paths)?;
        let lab_dir = paths.lab_dir(&opts.name);
        let hosts = (0..opts.hosts + opts.spare)
            .map(|i| {
                let name = format!("{}-{}", opts.name, i + 1);
                let machine = format!("ez{index}-{}", i + 1);
                let cgroups = cgroup::host_cgroups(&hierarchies, &machine);
                HostState {
                    dir: lab_dir.join("hosts").join(&name),
                    veth: format!("vb-{machine}"),
                    name,
                    machine,
                    ip: net::host_ip(index, i),
                    pid: None,
                    machine_id: String::new(),
                    cgroups,
                }
            })
            .collect();
        let state = LabState {
            name: opts.name.clone(),
            index,
            bridge: net::bridge_name(index),
            image,
            cluster_dir,
            vip: (opts.hosts >= 5).then(|| net::vip(index)),
            hosts,
            spare: opts.spare,
        };
        state.save(paths)?;
        state
    };
    let mut children = Vec::new();
    // Armed until `make` succeeds: an error *or a panic* in between removes the lab again.
    let mut guard = Cleanup {
        paths,
        name: state.name.clone(),
        armed: true,
    };
    let result = make(paths, &mut state, &mut children, opts.timeout, progress);
    if result.is_err() {
        progress(&format!("up failed; removing lab {} again", state.name));
    }
    guard.armed = result.is_err();
    drop(guard);
    result.map(|states| (state, states))
}

/// Tears a half-made lab down when dropped while armed (also during a panic's unwinding).
struct Cleanup<'a> {
    paths: &'a LabPaths,
    name: String,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Reload: the state on disk has every pid recorded so far.
        match LabState::load(self.paths, &self.name) {
            Ok(Some(state)) => {
                if let Err(e) = teardown(self.paths, &state) {
                    eprintln!(
                        "lab: cleanup incomplete ({e}); run `ezk lab down {}`",
                        self.name
                    );
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!(
                "lab: cleanup incomplete ({e}); run `ezk lab down {}`",
                self.name
            ),
        }
    }
}

/// The part of `up` after the state file exists: everything here is undone by `teardown`.
fn make(
    paths: &LabPaths,
    state: &mut LabState,
    children: &mut Vec<Child>,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>, LabError> {
    let key = state.key_file();
    progress(&format!(
        "lab {}: subnet 198.18.{}.0/24 on bridge {}, {} hosts",
        state.name,
        state.index,
        state.bridge,
        state.hosts.len()
    ));
    std::fs::create_dir_all(&state.cluster_dir).map_err(LabError::io(&state.cluster_dir))?;
    let ssh_dir = key.parent().expect("key in ssh/");
    std::fs::create_dir_all(ssh_dir).map_err(LabError::io(ssh_dir))?;
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    sys::run(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("ezk-lab-{}", state.name))
            .arg("-f")
            .arg(&key),
    )?;
    let pub_path = key.with_extension("pub");
    let authorized = std::fs::read_to_string(&pub_path).map_err(LabError::io(&pub_path))?;

    net::create_bridge(state.index)?;
    let all: Vec<(String, Ipv4Addr)> = state.hosts.iter().map(|h| (h.name.clone(), h.ip)).collect();
    let mut known = String::new();
    for i in 0..state.hosts.len() {
        check_interrupted()?;
        state.hosts[i].machine_id = host::new_machine_id()?;
        state.save(paths)?;
        let h = &state.hosts[i];
        let hostkey = host::prepare(h, &state.image, &all, &authorized)?;
        known.push_str(&format!("{} {hostkey}\n", h.ip));
    }
    sys::write_atomic(&state.known_hosts(), known.as_bytes(), 0o644)?;
    write_inventory(state)?;

    raise_inotify_limits(paths, progress)?;
    progress("booting hosts");
    for i in 0..state.hosts.len() {
        check_interrupted()?;
        let child = host::boot(&state.hosts[i], &state.bridge)?;
        state.hosts[i].pid = Some(child.id());
        children.push(child);
        state.save(paths)?;
    }
    progress("waiting for ssh and systemd on every host");
    wait::wait_all(&state.hosts, children, &key, &state.known_hosts(), timeout)
}

/// Size the machine's inotify limits for every recorded lab host (this lab's included: its
/// state is saved before `make`), since all of them share root's limit; say what was raised.
fn raise_inotify_limits(paths: &LabPaths, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    let hosts: usize = LabState::list(paths)
        .iter()
        .filter_map(|name| LabState::load(paths, name).ok().flatten())
        .map(|s| s.hosts.len())
        .sum();
    for r in inotify::ensure(hosts)? {
        progress(&format!(
            "raised {r} (systemd in {hosts} lab host(s) shares root's inotify limit; see docs/lab.md)"
        ));
    }
    Ok(())
}

/// Write `clusters/<name>/hosts` and `config.yml`.
fn write_inventory(state: &LabState) -> Result<(), LabError> {
    let in_inventory = state.hosts.len() - state.spare;
    let hosts: Vec<(String, Ipv4Addr)> =
        state.hosts[..in_inventory].iter().map(|h| (h.name.clone(), h.ip)).collect();
    let key = state.key_file();
    let text = inventory::hosts_file(&InventoryInput {
        name: &state.name,
        hosts: &hosts,
        vip: state.vip,
        key_file: &key,
    });
    sys::write_atomic(&state.cluster_dir.join("hosts"), text.as_bytes(), 0o644)?;
    sys::write_atomic(
        &state.cluster_dir.join("config.yml"),
        inventory::CONFIG_YML.as_bytes(),
        0o644,
    )
}

/// Per-lab lock, outside the lab's own dir so removing the dir never removes a held lock.
fn lock_path(paths: &LabPaths, name: &str) -> PathBuf {
    paths.labs_dir().join(".locks").join(format!("{name}.lock"))
}

/// Does this hosts file carry the lab marker on its first line?
fn is_lab_written(hosts_file: &Path) -> bool {
    std::fs::read_to_string(hosts_file)
        .map(|t| t.starts_with(inventory::MARKER))
        .unwrap_or(false)
}

/// Tear lab `name` down. `Ok(false)` when there was no such lab (nothing to do).
pub fn down(
    paths: &LabPaths,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LabError> {
    validate_name(name)?;
    sys::preflight("down", true)?;
    let lock = lock_path(paths, name);
    let _lab_lock = sys::lock_file(&lock)?;
    let Some(state) = LabState::load(paths, name)? else {
        // A state dir without a readable state file is a crash before the first save: only dirs.
        let dir = paths.lab_dir(name);
        if dir.exists() {
            sys::remove_tree(&dir)?;
            return Ok(true);
        }
        return Ok(false);
    };
    progress(&format!(
        "stopping {} hosts of lab {name}",
        state.hosts.len()
    ));
    teardown(paths, &state)?;
    // The lab is gone; so is its lock file (a racing `up` of the same name would simply
    // start from scratch).
    let _ = std::fs::remove_file(&lock);
    Ok(true)
}

/// Reboot host `host` of lab `name`: its systemd shuts down cleanly (SIGTERM to its nspawn, as
/// `down` does; killed after `grace`), then it boots again on the same overlay, address and
/// host key, and this waits (up to `timeout`) until it answers SSH with systemd up. What the
/// host wrote to disk stays; what ran on it (services, sessions) went down with it: a reboot.
/// Returns the host's `is-system-running` answer.
pub fn reboot(
    paths: &LabPaths,
    name: &str,
    host: &str,
    grace: Duration,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<String, LabError> {
    validate_name(name)?;
    sys::preflight("reboot", true)?;
    let _lab_lock = sys::lock_file(&lock_path(paths, name))?;
    let mut state = LabState::load(paths, name)?.ok_or_else(|| LabError::NoSuchLab(name.to_string()))?;
    let Some(i) = state.hosts.iter().position(|h| h.name == host) else {
        return Err(LabError::NoSuchHost {
            lab: name.to_string(),
            host: host.to_string(),
            hosts: state.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
        });
    };
    progress(&format!("stopping {host}"));
    host::stop_all(&state.hosts[i..=i], grace);
    // nspawn removes its veth when it exits; one killed outright may leave it.
    net::delete_link(&state.hosts[i].veth)?;
    progress(&format!("booting {host}"));
    let child = host::boot(&state.hosts[i], &state.bridge)?;
    state.hosts[i].pid = Some(child.id());
    state.save(paths)?;
    let mut children = [child];
    let states = wait::wait_all(&state.hosts[i..=i], &mut children, &state.key_file(), &state.known_hosts(), timeout)?;
    Ok(states.into_iter().next().unwrap_or_default())
}

/// Remove everything a (possibly half-made) lab has: processes, mounts, veths, bridge, the
/// lab's files in its cluster dir, the state dir. Every step tolerates a missing piece.
fn teardown(paths: &LabPaths, state: &LabState) -> Result<(), LabError> {
    // A bare host shuts down in 1-2 s; one running containers waits for them up to systemd's
    // 90 s stop timeout, for nothing: the host is being deleted. Past the grace, it is killed.
    host::stop_all(&state.hosts, Duration::from_secs(5));
    let mut first_err = None;
    for h in &state.hosts {
        if let Err(e) = sys::unmount_all(&h.rootfs()) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = sys::unmount_all(&h.disk()) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = cgroup::remove(&h.cgroups) {
            first_err.get_or_insert(e);
        }
        if let Err(e) = net::delete_link(&h.veth) {
            first_err.get_or_insert(e);
        }
    }
    if let Err(e) = net::delete_link(&state.bridge) {
        first_err.get_or_insert(e);
    }
    remove_cluster_files(&state.cluster_dir);
    if let Some(e) = first_err {
        return Err(e);
    }
    sys::remove_tree(&paths.lab_dir(&state.name))
}

/// Remove what `up` wrote into clusters/<name>/ (leaving anything else, e.g. ssl/ or logs/
/// made by other commands), and the dir itself if that leaves it empty.
fn remove_cluster_files(dir: &Path) {
    let hosts = dir.join("hosts");
    if is_lab_written(&hosts) {
        let _ = std::fs::remove_file(&hosts);
        let _ = std::fs::remove_file(dir.join("config.yml"));
    }
    let _ = std::fs::remove_file(dir.join("known_hosts"));
    let key = super::state::key_file(dir);
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let _ = std::fs::remove_dir(dir.join("ssh"));
    let _ = std::fs::remove_dir(dir);
}

/// Status of one lab or of all labs.
pub fn status(paths: &LabPaths, name: Option<&str>) -> Result<Vec<LabStatus>, LabError> {
    let names = match name {
        Some(n) => {
            validate_name(n)?;
            vec![n.to_string()]
        }
        None => LabState::list(paths),
    };
    let mut out = Vec::new();
    for n in names {
        let Some(state) = LabState::load(paths, &n)? else {
            continue;
        };
        let hosts = state
            .hosts
            .iter()
            .map(|h| {
                let alive = h.pid.is_some_and(|p| sys::is_our_nspawn(p, &h.machine));
                let ssh = alive && port_open(h.ip, 22);
                let state = if ssh {
                    "running"
                } else if alive {
                    "booting"
                } else {
                    "stopped"
                };
                HostStatus {
                    name: h.name.clone(),
                    ip: h.ip,
                    state: state.to_string(),
                    pid: h.pid,
                }
            })
            .collect();
        out.push(LabStatus {
            name: state.name.clone(),
            subnet: format!("198.18.{}.0/24", state.index),
            bridge: state.bridge.clone(),
            cluster_dir: state.cluster_dir.clone(),
            hosts,
        });
    }
    Ok(out)
}

/// A TCP connect to a lab host (only lab addresses are ever passed here).
fn port_open(ip: Ipv4Addr, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(300)).is_ok()
}
