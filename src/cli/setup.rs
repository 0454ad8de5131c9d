//! `ezk setup <cluster> <step>`: the command's arguments; `ops::setup` does the work (plan
//! every step, then run them on the hosts, or with --plan show what would change).
//! `RunArgs`, how a plan runs on the hosts, is shared with `destroy` and `restore`.

use std::time::Duration;

use super::{CliResult, Context};
use crate::exec::{self, Options};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Step: a number (01 ... 07, 10), a name (prepare, etcd, runtime, kube-master, kube-node,
    /// network, cluster-addon, ex-lb), both (02.etcd), or 90/all. The steps are the playbooks shipped in the binary (plus any under <home>/playbooks/).
    pub step: String,
    /// Only these hosts (repeatable, comma-separated): group names, host names, `all`, and
    /// `!name` to leave one out, like ansible-playbook --limit. Every host is still planned (its
    /// variables feed the others' files); only the selected ones are contacted and changed.
    #[arg(long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    /// Apply a change that refuses clients that could connect before: a CA that etcd or
    /// kube-apiserver stops trusting, a client certificate made mandatory, a plaintext listener
    /// removed. Without it such a run stops before changing anything, after saying which
    /// clients (certificate files, hosts) would lose access; --plan says it too.
    #[arg(long)]
    pub allow_client_cutoff: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a plan runs on the hosts: shared by `setup` and `destroy`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Connect and gather only; print per host what would change; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print the recap as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = exec::limits::DEFAULT_FORKS)]
    pub forks: usize,
    /// Extra variable, highest precedence (repeatable), like ansible-playbook -e: KEY=VALUE
    /// (a string), or @FILE, a YAML map of NAME: value (typed; later -e wins).
    #[arg(short = 'e', long = "extra-vars", alias = "extra-var", value_name = "KEY=VALUE|@FILE", value_parser = super::parse_extra_var)]
    pub extra_vars: Vec<(String, String)>,
    /// Accept and record (in clusters/<name>/known_hosts) host keys never seen before.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout, seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Jump host for every connection (user@host[:port]), like ssh -J. A host whose inventory
    /// sets `ansible_ssh_common_args="-o ProxyJump=..."` (or -J) uses its own instead.
    #[arg(long, value_name = "HOST")]
    pub jump: Option<String>,
    /// SSH key exchange algorithms, e.g. curve25519-sha256 (cheaper handshakes for many hosts,
    /// but not post-quantum). Default: OpenSSH's own choice.
    #[arg(long, value_name = "ALGOS")]
    pub kex: Option<String>,
    /// Keep each host's SSH master this many seconds after its last use, so the next run
    /// skips the handshake (as Ansible's ControlPersist=60s); control sockets in
    /// clusters/<name>/mux/ (0700). A kept master is reused only while known_hosts and the
    /// host's keys are unchanged. Default 0: every master is closed when the run ends.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub ssh_persist: u64,
}

/// Executor options from the command line.
pub fn options(ctx: &Context, args: &RunArgs) -> Options {
    Options {
        forks: args.forks,
        plan_only: args.plan,
        verbose: ctx.verbose,
        json: args.json,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: Duration::from_secs(args.connect_timeout),
        jump_hosts: args.jump.iter().cloned().collect(),
        kex_algorithms: args.kex.clone(),
        persist: (args.ssh_persist > 0).then(|| Duration::from_secs(args.ssh_persist)),
        ..Options::default()
    }
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let run = options(ctx, &args.run);
    ops::setup::run(
        &ctx.home,
        ops::setup::Request {
            cluster: args.cluster,
            step: args.step,
            limit: args.limit,
            extra_vars: args.run.extra_vars,
            run,
            allow_client_cutoff: args.allow_client_cutoff,
        },
    )
}
