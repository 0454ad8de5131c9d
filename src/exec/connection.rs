//! How to reach one host: the SSH parameters the transport needs, read from Ansible's
//! connection variables (`ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file`, `ansible_become`, a ProxyJump in `ansible_ssh_common_args`).
//!
//! The variables are looked up through a closure, so this module needs no inventory: the
//! session passes `|name| inventory.var_str(host, name)` (see `session::connection`), tests
//! pass a map.

use std::path::PathBuf;

/// The SSH parameters of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address to connect to (`ansible_host`, else the inventory hostname).
    pub address: String,
    /// `ansible_port` / `ansible_ssh_port`, default 22.
    pub port: u16,
    /// `ansible_user` / `ansible_ssh_user`, default root.
    pub user: String,
    /// `ansible_ssh_private_key_file` / `ansible_private_key_file` (`~/` expanded).
    pub key_file: Option<PathBuf>,
    /// Use sudo for a non-root user (`ansible_become`).
    pub become_root: bool,
    /// Bastion for this host (`user@host[:port]`), from `-o ProxyJump=…` or `-J …` in
    /// `ansible_ssh_common_args` / `ansible_ssh_extra_args`; overrides `ezk setup --jump`.
    pub jump: Option<String>,
}

impl Connection {
    /// The connection of inventory host `host` from its Ansible connection variables;
    /// `var(name)` answers one variable of that host (None or empty: not set).
    pub fn from_ansible_vars(host: &str, var: impl Fn(&str) -> Option<String>) -> Connection {
        let get = |names: &[&str]| names.iter().find_map(|n| var(n)).filter(|s| !s.is_empty());
        let key_file = get(&["ansible_ssh_private_key_file", "ansible_private_key_file"])
            .map(|k| expand_home(&k));
        Connection {
            address: get(&["ansible_host", "ansible_ssh_host"]).unwrap_or_else(|| host.to_string()),
            port: get(&["ansible_port", "ansible_ssh_port"])
                .and_then(|p| p.parse().ok())
                .unwrap_or(22),
            user: get(&["ansible_user", "ansible_ssh_user"]).unwrap_or_else(|| "root".into()),
            key_file,
            become_root: get(&["ansible_become"]).is_some_and(|b| truthy(&b)),
            jump: get(&["ansible_ssh_common_args", "ansible_ssh_extra_args"])
                .and_then(|a| proxy_jump(&a)),
        }
    }
}

/// The ProxyJump in ssh arguments as Ansible users write them: `-o ProxyJump=bastion`,
/// `-o "ProxyJump bastion"`, `-J bastion` (quotes around the whole option allowed).
pub fn proxy_jump(args: &str) -> Option<String> {
    let words: Vec<&str> = args
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).map(|s| s.to_string());
        if *w == "-J" {
            return next;
        }
        if let Some(v) = w.strip_prefix("-J") {
            return Some(v.to_string());
        }
        let opt = w.strip_prefix("-o").unwrap_or(w);
        let (key, val) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (opt, None),
        };
        if key.eq_ignore_ascii_case("ProxyJump") {
            return val.filter(|v| !v.is_empty()).or(next);
        }
    }
    None
}

/// Ansible's notion of a true string (`bool` filter).
fn truthy(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1" | "y")
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
