//! `ezk add-master <cluster> <ip> [k=v ...]` (kubeasz's `ezctl add-master`; add-node's
//! arguments and phases, `add_node::Kind` says what differs): the host goes into `[kube_master]` of `clusters/<name>/hosts` (every
//! other line kept; a master is a node too, as in kubeasz), and only what must change runs:
//!
//! | step | hosts | why |
//! |---|---|---|
//! | 01 prepare | every host of the play | the new host's OS base, kubectl and admin kubeconfig; on the others only its `/etc/hosts` line and the chrony server's `allow` list |
//! | 03 runtime | the new host | |
//! | 04 kube-master | the new host | its control plane, with the `kubernetes` certificate issued again with its address among the SANs (the old masters keep theirs: it need not name the new one) |
//! | 05 kube-node | every node | kubelet and kube-proxy on the new host, its role label and taint from the first master; on the others kube-lb's upstream list, reloaded (not restarted) |
//! | 10 ex-lb | the ex_lb hosts | the backend list, the LB reloaded (not restarted) once the new apiserver is ready |
//! | 06 network | every node | the new host's CNI and routes; on the others one route more |
//!
//! A host already in `[kube_node]` or `[etcd]` is refused. The etcd membership does not change (`add-etcd` is its own operation), so nothing on etcd
//! does, and no old apiserver, etcd or kubelet restarts. The host line is written before the
//! first host is contacted: a run stopped halfway is finished by running add-master again (a
//! host already in `[kube_master]` is not added twice). `--plan` writes nothing and shows per
//! host what would change.

use super::Error;
use super::add_node::{Kind, Request, Target, run_kind};
use super::node_change;
use crate::home::Home;
use crate::session::Session;

const MASTER: Kind = Kind {
    command: "add-master",
    group: "kube_master",
    refuse: &["kube_node", "etcd"],
    targets: master_targets,
    done: |name, req| format!("master {name} ({}) added to cluster {}: its apiserver ready and behind every load balancer", req.host, req.cluster),
};

/// Run `ezk add-master`; the exit code is 0 or the failing step's.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    run_kind(home, req, &MASTER)
}

/// The table above, in run order: the new apiserver is ready (04) before any LB sends to it.
fn master_targets(s: &Session, host: &str) -> Vec<Target> {
    let every = node_change::hosts_in(s, &["kube_master", "kube_node", "etcd", "ex_lb", "chrony"]);
    let nodes = node_change::hosts_in(s, &["kube_master", "kube_node"]);
    vec![
        Target { step: "01.prepare", hosts: every },
        Target { step: "03.runtime", hosts: vec![host.to_string()] },
        Target { step: "04.kube-master", hosts: vec![host.to_string()] },
        Target { step: "05.kube-node", hosts: nodes.clone() },
        Target { step: "10.ex-lb", hosts: node_change::hosts_in(s, &["ex_lb"]) },
        Target { step: "06.network", hosts: nodes },
    ]
}
