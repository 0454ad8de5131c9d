//! `ezk lab up|down|status|reboot`: the local sandbox of real systemd hosts (see `crate::lab`).

use std::time::Duration;

use console::style;

use super::{CliResult, Context};
use crate::lab::{self, LabPaths, UpOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Boot N real systemd hosts (systemd-nspawn) on a private bridge and write
    /// clusters/<name>/{hosts,config.yml,known_hosts,ssh/} for them. Needs root.
    Up {
        /// Lab (and cluster) name: a-z, 0-9, '-'.
        name: String,
        /// Number of hosts: 1 = all-in-one, 3 = etcd + masters, 5+ adds workers and ex_lb + VIP.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Hosts booted beyond --hosts and left out of the inventory (in known_hosts, reachable
        /// with the lab key): to try `ezk add-node` on.
        #[arg(long, default_value_t = 0)]
        spare: usize,
        /// Seconds to wait for every host to answer SSH with systemd up.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Stop the lab's hosts and remove everything `up` made (also after a failed `up`).
    Down { name: String },
    /// Show labs and their hosts (all labs without a name).
    Status { name: Option<String> },
    /// Reboot one host: its systemd shuts down cleanly, it boots again with its disk as it
    /// was, and this waits until it answers SSH (for trying what a reboot does to a run).
    Reboot {
        /// The lab.
        name: String,
        /// The host, as `ezk lab status` names it (e.g. demo-2).
        host: String,
        /// Seconds to wait for the host to answer SSH again.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let paths = LabPaths::from_env();
    let mut progress = |line: &str| eprintln!("{} {line}", style("lab:").cyan());
    match args.command {
        LabCommand::Up {
            name,
            hosts,
            spare,
            timeout,
        } => {
            on_interrupt_stop(name.clone());
            let opts = UpOptions {
                cluster_dir: ctx.home.cluster_dir(&name),
                name,
                hosts,
                spare,
                timeout: Duration::from_secs(timeout),
            };
            let (state, states) = match lab::up(&paths, &opts, &mut progress) {
                Err(lab::LabError::Interrupted) => {
                    eprintln!(
                        "{} interrupted; everything this `up` made was removed",
                        style("lab:").cyan()
                    );
                    return Ok(130);
                }
                other => other?,
            };
            println!("{:<24} {:<16} STATE", "HOST", "ADDRESS");
            let in_inventory = state.hosts.len() - state.spare;
            for (i, (h, s)) in state.hosts.iter().zip(&states).enumerate() {
                let spare = if i >= in_inventory { " (spare: not in the inventory)" } else { "" };
                println!("{:<24} {:<16} {}{spare}", h.name, h.ip, s);
            }
            println!("\ninventory: {}", state.cluster_dir.join("hosts").display());
            println!(
                "ssh:       ssh -i {} -o UserKnownHostsFile={} root@{}",
                state.key_file().display(),
                state.known_hosts().display(),
                state.hosts[0].ip
            );
            println!("remove:    ezk lab down {}", state.name);
            Ok(0)
        }
        LabCommand::Down { name } => {
            // SSH masters that runs kept for this cluster lead to hosts about to vanish.
            crate::exec::mux::end_all(&ctx.home.cluster_dir(&name));
            if lab::down(&paths, &name, &mut progress)? {
                println!("lab {name} removed");
            } else {
                println!("no lab named {name}; nothing to do");
            }
            Ok(0)
        }
        LabCommand::Reboot { name, host, timeout } => {
            let state = lab::reboot(&paths, &name, &host, Duration::from_secs(30), Duration::from_secs(timeout), &mut progress)?;
            println!("{host} rebooted ({state})");
            Ok(0)
        }
        LabCommand::Status { name } => {
            let labs = lab::status(&paths, name.as_deref())?;
            let image = lab::image::image_dir(&paths);
            let built = if lab::image::is_cached(&paths) {
                "cached"
            } else {
                "not built yet"
            };
            println!("base image: {} ({built})", image.display());
            if labs.is_empty() {
                match name {
                    Some(n) => {
                        println!("no lab named {n}");
                        return Ok(1);
                    }
                    None => println!("no labs"),
                }
            }
            for l in labs {
                println!(
                    "\nlab {} — {} on {}, inventory {}",
                    l.name,
                    l.subnet,
                    l.bridge,
                    l.cluster_dir.join("hosts").display()
                );
                println!("  {:<24} {:<16} {:<8} STATE", "HOST", "ADDRESS", "PID");
                for h in l.hosts {
                    let pid = h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    println!("  {:<24} {:<16} {:<8} {}", h.name, h.ip, pid, h.state);
                }
            }
            Ok(0)
        }
    }
}

/// Ctrl-C or SIGTERM during `up`: ask `up` to stop at its next step; it then removes what it
/// made (nothing half-made stays behind) and we exit 130. A cancelled image build leaves only
/// its temp dir, which the next build deletes.
fn on_interrupt_stop(name: String) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!(
            "{} interrupted: stopping and removing lab {name}",
            style("lab:").cyan()
        );
        lab::interrupt();
    });
}
