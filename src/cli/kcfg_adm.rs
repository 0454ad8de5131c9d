//! `ezk kcfg-adm <cluster> -A|-L|-D` (kubeasz's `ezctl kcfg-adm`): the command's arguments;
//! `ops::kcfg_adm` does the work.

use super::{CliResult, Context};
use crate::ops;
use crate::ops::kcfg_adm::{Action, Request, Role};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["add", "list", "delete"])))]
pub struct Args {
    /// Cluster name (clusters/<name>/).
    pub cluster: String,
    /// Add user NAME: a client certificate from the cluster CA (CN=NAME, no group), its
    /// kubeconfig in clusters/<name>/ssl/users/NAME.kubeconfig (0600), and a
    /// ClusterRoleBinding ezk-user-NAME to cluster-admin (-t admin) or view (-t view).
    #[arg(short = 'A', long = "add", requires = "user")]
    pub add: bool,
    /// List the users (their bindings: role and expiry).
    #[arg(short = 'L', long = "list")]
    pub list: bool,
    /// Delete user NAME: its binding, and its kubeconfig, certificate and key here. A
    /// certificate cannot be revoked (the API server checks no revocation list): it still
    /// authenticates until it expires, but is authorized for nothing. Asks first.
    #[arg(short = 'D', long = "delete", requires = "user")]
    pub delete: bool,
    /// The user's name (lower-case letters, digits, '-').
    #[arg(short = 'u', long = "user", value_name = "NAME")]
    pub user: Option<String>,
    /// Days the certificate is valid (-A).
    #[arg(short = 'e', long = "expiry", value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// What the user may do (-A): admin (cluster-admin) or view (read, no Secrets).
    #[arg(short = 't', long = "type", value_name = "admin|view", default_value = "view", value_parser = ["admin", "view"])]
    pub role: String,
    /// Do not ask for confirmation (-D; required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Say what would be done; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let user = args.user.unwrap_or_default();
    let action = if args.add {
        Action::Add { user, days: args.days, role: if args.role == "admin" { Role::Admin } else { Role::View } }
    } else if args.delete {
        Action::Delete { user, yes: args.yes }
    } else {
        Action::List
    };
    ops::kcfg_adm::run(&ctx.home, Request { cluster: args.cluster, action, plan_only: args.plan, json: args.json })
}
