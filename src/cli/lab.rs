//! `ezk lab up|down|status`: the local sandbox of real systemd hosts (see `crate::lab`).

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
        /// Seconds to wait for every host to answer SSH with systemd up.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Stop the lab's hosts and remove everything `up` made (also after a failed `up`).
    Down {
        name: String,
    },
    /// Show labs and their hosts (all labs without a name).
    Status {
        name: Option<String>,
    },
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let paths = LabPaths::from_env();
    let mut progress = |line: &str| eprintln!("{} {line}", style("lab:").cyan());
    match args.command {
        LabCommand::Up { name, hosts, timeout } => {
            let opts = UpOptions { cluster_dir: ctx.home.cluster_dir(&name), name, hosts, timeout: Duration::from_secs(timeout) };
            let (state, states) = lab::up(&paths, &opts, &mut progress)?;
            println!("{:<24} {:<16} {}", "HOST", "ADDRESS", "STATE");
            for (h, s) in state.hosts.iter().zip(&states) {
                println!("{:<24} {:<16} {}", h.name, h.ip, s);
            }
            println!("\ninventory: {}", state.cluster_dir.join("hosts").display());
            println!("ssh:       ssh -i {} -o UserKnownHostsFile={} root@{}", state.key_file().display(), state.known_hosts().display(), state.hosts[0].ip);
            println!("remove:    ezk lab down {}", state.name);
            Ok(0)
        }
        LabCommand::Down { name } => {
            if lab::down(&paths, &name, &mut progress)? {
                println!("lab {name} removed");
            } else {
                println!("no lab named {name}; nothing to do");
            }
            Ok(0)
        }
        LabCommand::Status { name } => {
            let labs = lab::status(&paths, name.as_deref())?;
            let image = lab::image::image_dir(&paths);
            let built = if image.join("etc/ezk-image").is_file() { "cached" } else { "not built yet" };
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
                println!("\nlab {} — {} on {}, inventory {}", l.name, l.subnet, l.bridge, l.cluster_dir.join("hosts").display());
                println!("  {:<24} {:<16} {:<8} {}", "HOST", "ADDRESS", "PID", "STATE");
                for h in l.hosts {
                    let pid = h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    println!("  {:<24} {:<16} {:<8} {}", h.name, h.ip, pid, h.state);
                }
            }
            Ok(0)
        }
    }
}
