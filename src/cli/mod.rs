//! Command-line interface: one file per subcommand, each with its clap `Args` and a `run` that
//! turns them into an operation's request and calls it (`ops`; `lab`, `download`, `new`,
//! `list` and `checkout` do their small work here). Nothing here loads a cluster.
//!
//! Library modules return typed errors; here they become `CliError` (a boxed error whose
//! Display already names file/line/host and the fix), reported once by `main`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::home::Home;

pub mod add_etcd;
pub mod add_master;
pub mod add_node;
pub mod backup;
pub mod certs;
pub mod check;
pub mod del_master;
pub mod del_node;
pub mod checkout;
pub mod del_etcd;
pub mod destroy;
pub mod download;
pub mod kca_renew;
pub mod kcfg_adm;
pub mod lab;
pub mod list;
pub mod new;
pub mod render;
pub mod restore;
pub mod rotate_ca;
pub mod setup;
pub mod stop_start;
pub mod upgrade;

/// Any error that reaches `main`. Module errors carry their own context in `Display`.
pub type CliError = crate::ops::Error;

/// Exit code on success is returned (0, or non-zero for "ran but something failed").
pub type CliResult = Result<i32, CliError>;

#[derive(Debug, Parser)]
#[command(
    name = "ezk",
    version,
    about = "Provision Kubernetes clusters from release binaries over SSH, kubeasz-compatible",
    long_about = "ezk provisions Kubernetes clusters from release binaries over SSH.\n\
It reads kubeasz's clusters/<name>/hosts (Ansible INI) and config.yml unchanged, validates \
them before connecting anywhere, renders every file a host will receive, and applies only \
what differs — on every host in parallel."
)]
pub struct Cli {
    /// ezk home: holds clusters/<name>/, the artifact store down/, and optional roles/ and
    /// playbooks/ overrides. Default: the current directory.
    #[arg(long, global = true, env = "EZK_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// More output (-v shows remote commands).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create clusters/<name>/hosts and config.yml from the inventory example.
    New(new::Args),
    /// List the clusters in the home, marking the current one (chosen by `new`/`checkout`,
    /// stored in clusters/.current).
    List(list::Args),
    /// Make a cluster the current one (used when a command is given no cluster).
    Checkout(checkout::Args),
    /// Validate a cluster's inventory and config (no host is contacted).
    Check(check::Args),
    /// Write, per host, every file a step would install (no host is contacted).
    Render(render::Args),
    /// Run a step on the cluster's hosts: 01 prepare, 02 etcd, 03 runtime, 04 kube-master, 05 kube-node, 06 network, 07 cluster-addon, 10 ex-lb, or all (--plan: show only).
    Setup(setup::Args),
    /// Stop every service ezk set up on the cluster's hosts and delete their data,
    /// certificates and configuration (kubeasz's `ezctl destroy`; asks first, --plan shows).
    ///
    /// On every host: etcd, containerd, keepalived, haproxy and l4lb are stopped and disabled;
    /// etcd's data, containerd's images and state, the certificates, kubeconfigs, unit files and
    /// configs ezk wrote are deleted. Kept: release binaries in bin_dir, the hosts' OS tuning
    /// (kernel settings, modules, journald, swap off, packages, time sync), and on this machine
    /// clusters/<name>/ (inventory, config.yml, ssl/), so `ezk setup <name> all` builds the
    /// cluster again with the same CA. A host that is down is skipped; run destroy again later.
    Destroy(destroy::Args),
    /// Add a worker node to a running cluster (kubeasz's `ezctl add-node`): the host goes into
    /// [kube_node] of clusters/<name>/hosts (comments and layout kept), steps 01, 03, 05 and 06
    /// run on it; the other hosts change only what lists the nodes (/etc/hosts lines, host-gw
    /// routes, chrony's allow list). Ends with the node Ready; --plan writes nothing.
    AddNode(add_node::Args),
    /// Remove a worker node (kubeasz's `ezctl del-node`): cordon, drain (bounded; see --force),
    /// delete the Node, clean the host as destroy does, take it out of clusters/<name>/hosts,
    /// and drop its /etc/hosts line and route on the others. Asks first; --plan shows.
    DelNode(del_node::Args),
    /// Add a master to a running cluster (kubeasz's `ezctl add-master`): the host goes into
    /// [kube_master] of clusters/<name>/hosts, steps 01, 03, 04, 05 and 06 run on it (a master
    /// is a node too); the apiserver certificate is issued again with its address; the other
    /// hosts change only what lists the masters (kube-lb upstreams and ex-lb backends, each
    /// reloaded, not restarted; /etc/hosts lines, host-gw routes). --plan writes nothing.
    AddMaster(add_node::Args),
    /// Remove a master (kubeasz's `ezctl del-master`): drain it, take it out of every kube-lb
    /// and ex-lb (reloaded), clean it as destroy does, delete its Node, take it out of
    /// clusters/<name>/hosts and the others' /etc/hosts and routes. Refuses the last master
    /// and an etcd member. Asks first; --plan shows.
    DelMaster(del_node::Args),
    /// Add an etcd member to a running cluster (kubeasz's `ezctl add-etcd`): every member must
    /// be healthy; the host goes into [etcd] of clusters/<name>/hosts, `etcdctl member add` over
    /// TLS, step 02 on it alone (--initial-cluster-state=existing), then every apiserver's
    /// --etcd-servers, one master at a time, each ready before the next. The old members are not
    /// restarted. An even member count needs --allow-even; --plan writes nothing.
    AddEtcd(add_etcd::Args),
    /// Remove an etcd member (kubeasz's `ezctl del-etcd`): every apiserver's --etcd-servers
    /// without it (one master at a time), `etcdctl member remove`, the host's etcd cleaned as
    /// destroy does (on a master, its kube-apiserver keeps its own etcd CA file and client certificate), taken out of
    /// clusters/<name>/hosts. A dead member is removed through the others; its host, when it
    /// does not answer, is left as it is and the command that cleans it is printed. Refuses the
    /// last member and one whose removal leaves no healthy majority. Asks first; --plan shows.
    DelEtcd(del_etcd::Args),
    /// Fill the artifact store: pinned, checksummed, resumable; mirror, local dir, offline bundle.
    Download(download::Args),
    /// Table of the cluster's certificates under clusters/<name>/ssl/ (subject, issuer, days
    /// to expiry, SANs) and of the copies installed on each host (read over SSH; --local: no
    /// host); --issue first issues missing or stale ones.
    Certs(certs::Args),
    /// Put the etcd cluster back to a snapshot from `ezk backup` (kubeasz's `ezctl restore`):
    /// every member's data is replaced, the old kept beside it; asks first, --plan shows.
    Restore(restore::Args),
    /// Take an etcd snapshot into clusters/<name>/backup/ (kubeasz's `ezctl backup`), from this
    /// machine over TLS; checked with `snapshot status` before it is kept.
    Backup(backup::Args),
    /// Back up ssl/ and reissue every certificate, keeping the CAs unless --new-ca.
    KcaRenew(kca_renew::Args),
    /// Rotate the etcd CA (`etcd`) or the cluster CA (`kubernetes`) with no client refused at
    /// any moment: 1 every trust file of that CA (etcd: members, apiservers, this machine;
    /// kubernetes: ca.pem, every kubeconfig, the pods' kube-root-ca.crt) becomes old + new CA,
    /// 2 every certificate it signs is issued from the new CA, 3 the old CA is dropped; each
    /// phase rolled one member or master at a time, each healthy before the next (kubernetes:
    /// then every node). Resumable (a re-run continues); --until N stops after phase N; a
    /// kubeasz one-CA PKI gets an etcd CA of its own (rotate etcd before kubernetes there).
    /// Asks first; --plan shows the phases per host.
    RotateCa(rotate_ca::Args),
    /// User kubeconfigs (kubeasz's `ezctl kcfg-adm`): -A -u NAME [-e DAYS] [-t admin|view] adds
    /// one (client certificate from the cluster CA + RBAC binding), -L lists, -D -u NAME revokes
    /// (deletes the binding: a certificate cannot be revoked without a CRL).
    KcfgAdm(kcfg_adm::Args),
    /// Stop every cluster service in dependency order (kubeasz's `ezctl stop`): the control
    /// plane, etcd, the external LB, then each node's kubelet, kube-proxy and kube-lb (stopped and
    /// disabled; containerd and the pods' containers keep running). Asks first; --plan shows.
    Stop(stop_start::StopArgs),
    /// Start what `ezk stop` stopped, in dependency order (kubeasz's `ezctl start`): etcd
    /// (healthy), the external LB, the control plane (ready), the nodes (Ready).
    Start(stop_start::StartArgs),
    /// Upgrade the Kubernetes binaries (kubeasz's `ezctl upgrade`) to --to or K8S_VER: masters
    /// one at a time, then nodes in batches, each cordoned, drained, given the new binaries and
    /// restarted, uncordoned and Ready before the next. Refuses a skip or a downgrade of a
    /// minor; a re-run goes on where a stopped one left off. Asks first; --plan shows.
    Upgrade(upgrade::Args),
    /// A local sandbox of real systemd hosts to try ezk on: up, down, reboot, status.
    Lab(lab::Args),
}

/// Parse this process's command line. Help texts made from data (the PKI's table of ids for
/// `ezk certs --help`) are added to clap's command first, so they cannot drift from it.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommand("certs", |c| c.after_long_help(crate::ops::certs::ids_help()));
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> CliResult {
    let home = Home::resolve(cli.home.clone())?;
    let ctx = Context { home, verbose: cli.verbose };
    match cli.command {
        Command::New(a) => new::run(&ctx, a),
        Command::List(a) => list::run(&ctx, a),
        Command::Checkout(a) => checkout::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Render(a) => render::run(&ctx, a),
        Command::Setup(a) => setup::run(&ctx, a),
        Command::Destroy(a) => destroy::run(&ctx, a),
        Command::AddNode(a) => add_node::run(&ctx, a),
        Command::DelNode(a) => del_node::run(&ctx, a),
        Command::AddMaster(a) => add_master::run(&ctx, a),
        Command::DelMaster(a) => del_master::run(&ctx, a),
        Command::AddEtcd(a) => add_etcd::run(&ctx, a),
        Command::DelEtcd(a) => del_etcd::run(&ctx, a),
        Command::Download(a) => download::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Certs(a) => certs::run(&ctx, a),
        Command::KcaRenew(a) => kca_renew::run(&ctx, a),
        Command::RotateCa(a) => rotate_ca::run(&ctx, a),
        Command::KcfgAdm(a) => kcfg_adm::run(&ctx, a),
        Command::Stop(a) => stop_start::stop(&ctx, a),
        Command::Start(a) => stop_start::start(&ctx, a),
        Command::Upgrade(a) => upgrade::run(&ctx, a),
        Command::Lab(a) => lab::run(&ctx, a),
    }
}

/// What every subcommand gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: Home,
    pub verbose: u8,
}

/// Parse `-e key=value`, or `-e @file.yml` as `("@", path)` (the inventory reads the file).
pub fn parse_extra_var(s: &str) -> Result<(String, String), String> {
    if let Some(path) = s.strip_prefix('@') {
        if path.is_empty() {
            return Err("-e @ needs a file name: -e @vars.yml".into());
        }
        return Ok(("@".into(), path.to_string()));
    }
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value or @file.yml, got {s:?}")),
    }
}
