//! Operations: what each ezk command does, with no command line in sight. The CLI turns its
//! arguments into an operation's `Request` and calls its `run`; the operation opens the
//! cluster's [`Session`] (the one way every command loads a cluster) and runs its phases in
//! order (`phase`), so each operation reads as its list of phases, in one screen:
//!
//! | operation | phases |
//! |---|---|
//! | `setup` | select hosts (`--limit`), refuse steps with a command of their own, plan, keep the selected hosts, say which clients lose access (`client_cutoff`), run on the hosts |
//! | `destroy` | plan 99.clean, ask, run on the hosts, say what was kept |
//! | `backup` | find the etcd members, find etcdctl, take a snapshot |
//! | `restore` | find the members, find etcdctl, check the snapshot, ask, make each member's data, plan 95.restore, run on the hosts, say what was restored |
//! | `certs` | read the PKI inputs, issue (`--issue`), print the local table, audit the hosts' copies (`certs_audit`) |
//! | `add_node` | add the host to the inventory (checked, not written), plan 01/03/05/06 each for the hosts that change, write the inventory, run on the hosts |
//! | `del_node` | take the host out of the inventory (checked, not written), plan 99.clean on it and 01/06 on the others, ask, drain, delete the Node, clean the host, write the inventory, run on the others |
//! | `add_master` | add the host to [kube_master] (checked, not written), plan 01/03/04/05/10/06 each for the hosts that change, write the inventory, run on the hosts |
//! | `del_master` | take the host out of [kube_master] (checked, not written), plan 99.clean on it, 05/10 and 01/06 on the others, ask, drain, take it out of the LBs, clean the host, delete the Node, write the inventory, run 01/06 on the others |
//! | `add_etcd` | add the host to [etcd] (checked, not written), read the members and check the quorum (`etcd_change`), plan 01/02/04, write the inventory, run 01, `member add`, run 02 on the new member, roll 04 on the masters, read the members again |
//! | `del_etcd` | take the host out of [etcd] (checked, not written), read the members and check the quorum, plan 04, clean-etcd on it (a master's apiserver keeps its own etcd files; skipped, and said so, when a dead member's host does not answer) and 01 on the others, say what stays, ask, roll 04 on the masters, `member remove`, clean the host, write the inventory, run 01 on the others, read the members again |
//! | `kcfg_adm` | check the name, ask (`-D`), lock, then add, list or delete a user (see there) |
//! | `stop_start` | plan 92.stop or 91.start, ask (stop), run on the hosts |
//! | `upgrade` | choose the target (`--to`, else K8S_VER), read the running versions (refuse a skipped or lowered minor), plan 04/05 with the target's binaries, order the hosts, ask, record K8S_VER, then per batch (masters alone, then nodes): cordon, drain, 04/05, uncordon, wait Ready |
//! | `rotate_ca` | find the apiservers, say the phases per host, ask, lock, refuse a unit not taken over, back up ssl/ and make the new CA, then per phase (trust both, re-issue, drop the old): 02 on the members and 04 on the apiservers one at a time, the members read healthy, the phase recorded |
//! | `kca_renew`, `render`, `check` | one step each |
//!
//! `run_steps` is the shared last phase of every operation that changes hosts; `confirm` asks
//! before what cannot be undone; `etcd_tools` runs etcdctl on this machine. A file here and
//! the file of the same name in `cli/` are one command at two layers: its arguments there, what
//! it does here.

pub mod add_etcd;
pub mod add_master;
pub mod add_node;
pub mod backup;
pub mod certs;
pub mod certs_audit;
pub mod client_cutoff;
pub mod check;
mod check_summary;
mod confirm;
pub mod del_etcd;
pub mod del_master;
pub mod del_node;
pub mod destroy;
mod etcd_change;
pub mod etcd_tools;
pub mod kca_renew;
pub mod kcfg_adm;
mod node_change;
pub mod phase;
pub mod render;
pub mod restore;
pub mod rotate_ca;
pub mod run_steps;
pub mod setup;
pub mod stop_start;
pub mod upgrade;

use crate::home::Home;
use crate::session::Session;

pub use crate::session::Error;

/// Open cluster `cluster`, or print its inventory problems (every one, each with file:line and
/// fix) and give the exit code 1: how `setup`, `destroy`, `restore`, `render` and `download`
/// report a broken inventory (`certs`, `backup` and `kca-renew` return it as their error).
pub fn open_or_report(home: &Home, cluster: &str, extra_vars: &[(String, String)]) -> Result<Session, i32> {
    Session::open(home, cluster, extra_vars).map_err(|errors| {
        eprint!("{errors}");
        1
    })
}
