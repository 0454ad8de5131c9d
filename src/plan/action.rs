//! The typed actions a plan hands to the executor: the closed set of things ezk changes on a
//! host. Every role task renders to one `Task`; the executor gathers the current state of all of
//! a role's tasks in one round trip, diffs locally, and applies only what differs.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

/// Content of a file to install.
#[derive(Debug, Clone, Serialize)]
pub enum Content {
    /// Rendered in memory (templates, copies, certificates, kubeconfigs). Shared: every task of
    /// a step whose file has the same bytes holds the same allocation (a unit file rendered the
    /// same for 5000 hosts is held once, not 5000 times).
    Inline(#[serde(skip)] Arc<[u8]>),
    /// A file on the deploy machine (artifact store), with its known sha256 (hex).
    Local { path: PathBuf, sha256: String },
    /// A binary of the cluster's version set that the artifact store does not hold yet: a plan
    /// shows it, only a run needs it (the executor refuses to apply it, naming `fetch`).
    /// `sha256`: the installed file's digest when the manifest pins the file itself (a plain
    /// binary, a deb member), so a plan can still tell whether a host has it.
    NotDownloaded { name: String, version: String, sha256: Option<String>, fetch: String },
}

impl Content {
    /// `will install <name> <version> (not downloaded yet)` for a binary not in the store.
    pub fn not_downloaded(&self) -> Option<String> {
        match self {
            Content::NotDownloaded { name, version, .. } => {
                Some(format!("will install {name} {version} (not downloaded yet)"))
            }
            _ => None,
        }
    }
}

/// A file the host must have, byte for byte.
#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    pub path: String,
    pub content: Content,
    /// Octal permission bits, e.g. 0o644; keys are 0o600.
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Secret material (private keys, tokens, kubeconfigs with keys): never printed, diffs masked.
    pub secret: bool,
}

/// Desired state of a systemd unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UnitState {
    Started,
    Stopped,
    /// Restart every run (rare; prefer `notify`).
    Restarted,
}

/// What `wait_for` waits for.
#[derive(Debug, Clone, Serialize)]
pub enum WaitTarget {
    Tcp { host: String, port: u16 },
    Command { cmd: String },
}

/// One concrete, typed action on one host.
#[derive(Debug, Clone, Serialize)]
pub enum Action {
    File(FileSpec),
    Directory { path: String, mode: u32, owner: String, group: String },
    Link { path: String, target: String },
    Absent { path: String },
    /// Keys written to a sysctl.d file and applied; keys the kernel refuses are warnings.
    Sysctl { file: String, entries: Vec<(String, String)> },
    /// Modules loaded now and listed in a modules-load.d file; refused modules are warnings.
    Modprobe { file: String, modules: Vec<String> },
    /// OS packages present (apt/yum), or only verified when `offline`.
    Package { names: Vec<String>, offline: bool },
    /// A systemd unit enabled/started; restarted when a task that notifies it changed.
    /// `last_if`: a command run on a host of a `serial` role that is about to restart something
    /// (never on a run that restarts nothing); where it succeeds, the restart waits for the
    /// other hosts of the wave to be done first.
    Service { unit: String, enabled: bool, state: UnitState, last_if: Option<String> },
    /// `systemctl daemon-reload` when a unit file of this role changed.
    DaemonReload,
    /// Shell command, skipped when `creates` exists or `unless` exits 0. `cmd` and `unless` are
    /// shared like file contents: a command that lists every node (prepare's /etc/hosts) is the
    /// same text on every host, held once per step instead of hosts × nodes bytes.
    /// `unless_slow`: the guard waits on a service (kubectl asking the API, ctr asking
    /// containerd), so the gather runs it at the same time as the role's other slow probes;
    /// any other guard runs in its place (see `gather::section`).
    Command { cmd: Arc<str>, creates: Option<String>, unless: Option<Arc<str>>, unless_slow: bool },
    /// Block until the target answers or the timeout passes (then fail with `diagnose` output).
    WaitFor { target: WaitTarget, timeout_secs: u64, diagnose: Option<String> },
}

/// A task: an action with its origin and handler links.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Human name (from the role's task list).
    pub name: String,
    /// `roles/<role>/tasks.yml:LINE`, for messages.
    pub origin: String,
    pub action: Action,
    /// Units to restart when this task changes something.
    pub notify: Vec<String>,
}

/// One role applied to one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostRolePlan {
    pub host: String,
    pub role: String,
    pub tasks: Vec<Task>,
}

/// Roles that may run at the same time (no DAG edge between them), each on its hosts.
#[derive(Debug, Clone, Serialize)]
pub struct Wave {
    pub roles: Vec<String>,
    pub hosts: Vec<HostRolePlan>,
    /// Roles of this wave whose restarts run at most N hosts at a time (`meta.yml` `serial`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub serial: std::collections::BTreeMap<String, u32>,
}

/// The binaries `plans` install that the store does not hold yet, each once: `(what, the
/// command that fetches it)`. A plan with any cannot run (`ezk setup` says so before it
/// connects); it can be shown and rendered.
pub fn not_downloaded(plans: &[StepPlan]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let files = plans.iter().flat_map(|p| &p.waves).flat_map(|w| &w.hosts).flat_map(|h| &h.tasks);
    for t in files {
        if let Action::File(FileSpec { content: Content::NotDownloaded { name, version, fetch, .. }, .. }) = &t.action
        {
            let what = format!("{name} {version}");
            if !out.iter().any(|(w, _)| *w == what) {
                out.push((what, fetch.clone()));
            }
        }
    }
    out
}

/// A whole step (`02 etcd`) as ordered waves.
#[derive(Debug, Clone, Serialize)]
pub struct StepPlan {
    pub step: String,
    pub waves: Vec<Wave>,
    /// A role of this step reads the cluster's node facts (`k8s_nodes`): plan it again with
    /// fresh facts right before it runs (after the steps that register the nodes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_nodes: bool,
}
