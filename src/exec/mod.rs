//! SSH executor: runs a `plan::action::StepPlan` on real hosts.
//!
//! Per host and role, the pipeline (`pipeline::run_role`), one folder or file per step:
//! - `desired`: what every task wants, computed before any connection (bytes, size, sha256);
//! - `gather/`: round trip 1, every target's state in ONE command (one file per fact kind:
//!   a script part and the pure parser of its output);
//! - `decide`: local and pure, the ONLY place that says ok/skip/change/fail;
//! - `apply/`: round trip 2, ONE script with the changed files on stdin (one emitter per
//!   action kind), only when something differs;
//! - `report/`: the role's outcome and events, and the `--plan` lines of the same decisions.
//!   (Each action kind has its fact in `gather/`, its branch in `decide`, its emitter in
//!   `apply/` and its line in `report/plan_lines`: files of the same name in `gather/` and
//!   `apply/` are the two halves of one kind.)
//!
//! Around it: `runner` (waves in order, hosts in parallel under `limits`, failures per host),
//! `connection` (how to reach a host, from Ansible's variables), `transport` (one command
//! with stdin → exit code/stdout/stderr; each call one counted round trip) with `ssh` (its
//! implementation on the openssh crate: one native-mux master per host, strict host keys,
//! `hostkey` messages), `lock` (one run per cluster), `pending` (restarts owed by an
//! interrupted apply, kept as markers on the host).
//!
//! `mux` keeps masters between runs (ControlPersist) and says when a kept one may be trusted.
//!
//! Entry points: [`run_step`] (or [`run_step_locked`] under a held cluster lock) for one step,
//! [`Run`] for several steps on one connection per host.

pub mod apply;
pub mod connection;
pub mod decide;
pub mod desired;
pub mod gather;
pub mod hostkey;
pub mod limits;
pub mod lock;
pub mod mux;
pub mod pending;
pub mod pipeline;
pub mod report;
pub mod runner;
pub mod ssh;
pub mod transport;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::plan::action::StepPlan;
use crate::ui::events::{Monitor, MonitorOptions, is_tty};
use crate::ui::recap::Recap;
pub use connection::Connection;
use lock::ClusterLock;
use ssh::{SshConnector, SshOptions};
use transport::Connector;

/// How to run a step.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts worked on at once (`--forks`).
    pub forks: usize,
    /// Gather and describe only; change nothing (`--plan`).
    pub plan_only: bool,
    /// `-v`: show remote commands.
    pub verbose: u8,
    /// Machine output: the caller prints the recap as JSON on stdout; progress goes to stderr.
    pub json: bool,
    /// Progress bars: None = when the output is a terminal.
    pub progress: Option<bool>,
    /// Accept host keys never seen before (recorded in clusters/<name>/known_hosts).
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub connect_attempts: u32,
    /// Per remote command (a wait_for's own timeout is added on top).
    pub command_timeout: Duration,
    /// Jump host(s) for every connection, besides ~/.ssh/config's ProxyJump.
    pub jump_hosts: Vec<String>,
    /// ssh KexAlgorithms override (see `ssh::SshOptions::kex_algorithms`); None = ssh default.
    pub kex_algorithms: Option<String>,
    /// Where each host's known checksums live (`gather::checksums`); `run_step` uses
    /// `clusters/<name>/cache/`. None: hash every file on every gather.
    pub checksums_dir: Option<PathBuf>,
    /// Keep each host's SSH master this long after its last use, for the next run (`mux`;
    /// the command line's `--ssh-persist`, 60 s); None: close every master at the end.
    pub persist: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            forks: limits::DEFAULT_FORKS,
            plan_only: false,
            verbose: 0,
            json: false,
            progress: None,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            command_timeout: Duration::from_secs(600),
            jump_hosts: Vec::new(),
            kex_algorithms: None,
            checksums_dir: None,
            persist: None,
        }
    }
}

/// Why a run could not start (host failures are in the `Recap`, not here).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("host {host} is in the plan but has no connection data (is it in the inventory?)")]
    NoConnection { host: String },
    #[error(transparent)]
    Desired(#[from] desired::DesiredError),
    /// A plan with binaries the store does not hold can be shown, not run.
    #[error("step {step} installs binaries that are not downloaded yet; nothing was changed on any host. Fetch them first:\n{list}")]
    NotDownloaded { step: String, list: String },
    #[error("cannot create the run log {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot make the directory of kept SSH masters {path}: {source}")]
    Mux { path: PathBuf, source: std::io::Error },
}

/// Run one step on a cluster over SSH: lock `clusters/<name>/`, write the run log under its
/// `logs/`, show progress, and return the recap (the caller prints it and uses `exit_code`).
pub fn run_step(
    cluster_dir: &Path,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
) -> Result<Recap, ExecError> {
    let lock = lock::lock_cluster(cluster_dir)?;
    run_step_locked(&lock, plan, conns, opts)
}

/// `run_step` for a caller that already holds the cluster's lock (a session holds it for a
/// whole operation, across its steps).
pub fn run_step_locked(
    lock: &ClusterLock,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
) -> Result<Recap, ExecError> {
    let run = Run::new(lock, conns, opts)?;
    let r = run.step(lock, plan, conns, opts, &[]);
    run.finish();
    r
}

/// How a run connects: the cluster's known_hosts, the run's host-key policy, jump hosts and
/// key exchange, every host's key offered to jump hosts. Masters are not kept (see `Run`).
pub fn ssh_options(cluster_dir: &Path, conns: &IndexMap<String, Connection>, opts: &Options) -> SshOptions {
    SshOptions {
        known_hosts: vec![cluster_dir.join("known_hosts")],
        accept_new_host_keys: opts.accept_new_host_keys,
        connect_timeout: opts.connect_timeout,
        connect_attempts: opts.connect_attempts,
        jump_hosts: opts.jump_hosts.clone(),
        control_dir: std::env::temp_dir(),
        kex_algorithms: opts.kex_algorithms.clone(),
        identity_files: {
            let mut keys: Vec<PathBuf> = conns.values().filter_map(|c| c.key_file.clone()).collect();
            keys.sort();
            keys.dedup();
            keys
        },
        ..SshOptions::default()
    }
}

/// One run of one or more steps on a cluster over SSH: each host's connection is opened once,
/// by the first step (with the hosts of the later steps, so an unknown or changed host key
/// anywhere refuses the run before its first change), and kept for every step; `finish` closes
/// them, or, with `Options::persist`, leaves each master for the next run (`mux`).
pub struct Run {
    rt: tokio::runtime::Runtime,
    connector: Arc<SshConnector>,
    pool: runner::Pool<ssh::SshTransport>,
}

impl Run {
    /// The connector of a run on the cluster `lock` holds, for hosts `conns`.
    pub fn new(lock: &ClusterLock, conns: &IndexMap<String, Connection>, opts: &Options) -> Result<Run, ExecError> {
        let cluster_dir = lock.cluster_dir();
        let mut ssh = ssh_options(cluster_dir, conns, opts);
        ssh.persist = match opts.persist {
            Some(idle) => {
                let dir = mux::dir_for(cluster_dir).map_err(|source| ExecError::Mux { path: cluster_dir.join("mux"), source })?;
                Some(mux::Persist { dir, idle })
            }
            None => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ExecError::Runtime)?;
        Ok(Run { rt, connector: Arc::new(SshConnector::new(ssh)), pool: runner::Pool::default() })
    }

    /// Run one step (see `run_step`) on the run's connections; `later`: the hosts of the
    /// run's later steps, connected now too.
    pub fn step(
        &self,
        lock: &ClusterLock,
        plan: &StepPlan,
        conns: &IndexMap<String, Connection>,
        opts: &Options,
        later: &[String],
    ) -> Result<Recap, ExecError> {
        step_in(&self.rt, &self.pool, self.connector.clone(), lock, plan, conns, opts, later)
    }

    /// End the run: close every connection, except masters kept for the next run.
    pub fn finish(self) {
        self.rt.block_on(self.pool.close_all());
    }
}

/// `run_step_locked` with any connector (tests pass a double here).
pub fn run_step_with<C: Connector>(
    connector: Arc<C>,
    lock: &ClusterLock,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
) -> Result<Recap, ExecError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ExecError::Runtime)?;
    let pool = runner::Pool::default();
    let r = step_in(&rt, &pool, connector, lock, plan, conns, opts, &[]);
    rt.block_on(pool.close_all());
    r
}

/// One step on the connections of `pool`: the run log under `logs/`, progress, the recap.
#[allow(clippy::too_many_arguments)]
fn step_in<C: Connector>(
    rt: &tokio::runtime::Runtime,
    pool: &runner::Pool<C::T>,
    connector: Arc<C>,
    lock: &ClusterLock,
    plan: &StepPlan,
    conns: &IndexMap<String, Connection>,
    opts: &Options,
    later: &[String],
) -> Result<Recap, ExecError> {
    let cluster_dir = lock.cluster_dir();
    let logs = cluster_dir.join("logs");
    let log_path = logs.join(format!("{}-{}{}.log", timestamp(), plan.step.replace('/', "_"), if opts.plan_only { "-plan" } else { "" }));
    let log_err = |source| ExecError::Log { path: log_path.clone(), source };
    std::fs::create_dir_all(&logs).map_err(log_err)?;
    let mut log = std::fs::File::create(&log_path).map_err(log_err)?;
    let _ = writeln!(log, "ezk setup step {} ({} waves){}", plan.step, plan.waves.len(), if opts.plan_only { " --plan" } else { "" });
    let to_stderr = opts.json;
    let (tx, monitor) = Monitor::start(MonitorOptions {
        progress: opts.progress.unwrap_or_else(|| is_tty(to_stderr)),
        verbose: opts.verbose,
        to_stderr,
        log: Some(log.try_clone().map_err(log_err)?),
    });
    let mut opts = opts.clone();
    opts.checksums_dir.get_or_insert_with(|| cluster_dir.join("cache"));
    let result = rt.block_on(runner::run_plan_in(pool, connector, plan, conns, &opts, tx, later));
    monitor.finish();
    let mut recap = result?;
    let _ = write!(log, "{}", recap.table());
    recap.log = Some(log_path);
    Ok(recap)
}

/// UTC `YYYYmmddTHHMMSSZ` without a date crate (civil-from-days, Howard Hinnant's algorithm).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
