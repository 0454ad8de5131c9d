//! A loaded cluster.

use crate::exec::Connection;
use crate::inventory::Inventory;

/// How to reach inventory host `host`: its Ansible connection variables read by
/// `exec::Connection::from_ansible_vars`.
pub fn connection(inv: &Inventory, host: &str) -> Connection {
    Connection::from_ansible_vars(host, |name| inv.var_str(host, name))
}
