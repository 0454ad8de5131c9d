//! Inventory: kubeasz `clusters/<name>/hosts` (Ansible INI) or a YAML inventory, plus
//! `config.yml`, resolved per host with Ansible precedence and validated before any connection.
//!
//! CONTRACT (other modules code against this; the implementation fills it in):
//! - `Inventory::load(home, cluster, extra_vars)` parses and validates, returning every error
//!   at once (each naming file + line + fix).
//! - `groups` / `hosts_in(group)` / `hosts` in inventory order.
//! - `vars_for(host, role_defaults)` merges role defaults < config.yml < [all:vars] < group vars
//!   < host vars < -e, and renders every templated value for that host (lazy Jinja, with
//!   `inventory_hostname`, `groups`, `hostvars`).
//! - `connection(host)` gives the SSH parameters from Ansible's host vars.

use std::path::PathBuf;

use indexmap::IndexMap;

/// A variable value (YAML data model: strings, numbers, bools, lists, maps).
pub type Value = serde_yaml::Value;
/// An ordered variable map.
pub type Vars = IndexMap<String, Value>;

/// How to reach one host, from `ansible_host`, `ansible_ssh_port`/`ansible_port`, `ansible_user`,
/// `ansible_ssh_private_key_file`, `ansible_become`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address to connect to (`ansible_host`, else the inventory hostname).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key_file: Option<PathBuf>,
    /// Use sudo for a non-root user.
    pub become_root: bool,
}

/// Parsed and validated inventory of one cluster.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub cluster: String,
    /// `clusters/<name>/`.
    pub dir: PathBuf,
    /// group → member hostnames, in file order; includes `all`, and the kubeasz groups even when
    /// empty (`etcd`, `kube_master`, `kube_node`, `ex_lb`, `chrony`, `harbor`).
    pub groups: IndexMap<String, Vec<String>>,
    /// Every host (inventory_hostname), in file order.
    pub hosts: Vec<String>,
}
