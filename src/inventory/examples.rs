//! The inventory examples shipped in `inventory-examples/`, embedded in the binary so
//! `ezk new` (and `ezk lab`, which writes config.yml from the same text) works from any
//! directory. Placeholders, as kubeasz's `ezctl new` substitutes them: `_cluster_name_` → the
//! cluster name, `/_ezk_home_` → the absolute ezk home (kubeasz's base_dir, /etc/kubeasz;
//! the placeholder is an absolute path so that the examples as shipped pass `ezk check`).

use std::path::Path;

const HOSTS_MULTI_NODE: &str = include_str!("../../inventory-examples/hosts.multi-node");
const HOSTS_ALLINONE: &str = include_str!("../../inventory-examples/hosts.allinone");
const CONFIG: &str = include_str!("../../inventory-examples/config.yml");

/// Which example `hosts` to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// 3 etcd members, 3 masters, 2 workers, 2 external load balancers, chrony.
    MultiNode,
    /// One machine running etcd, the control plane and workloads.
    Allinone,
}

/// The example `hosts` for `layout`, placeholders substituted.
pub fn hosts(layout: Layout, cluster: &str, home: &Path) -> String {
    let text = match layout {
        Layout::MultiNode => HOSTS_MULTI_NODE,
        Layout::Allinone => HOSTS_ALLINONE,
    };
    substitute(text, cluster, home)
}

/// The example `config.yml`, placeholders substituted.
pub fn config_yml(cluster: &str, home: &Path) -> String {
    substitute(CONFIG, cluster, home)
}

fn substitute(text: &str, cluster: &str, home: &Path) -> String {
    text.replace("_cluster_name_", cluster)
        .replace("/_ezk_home_", &home.display().to_string())
}
