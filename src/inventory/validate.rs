//! Validation before any connection (`ezk check`): everything a kubeasz-style inventory can get
//! wrong that is knowable offline — addresses, node names, group sizes, CIDRs, plugin names,
//! every templated variable evaluated for every host, every value whose use is known checked
//! for that use (`values`: paths, ports, users, names, numbers), ports two services of one host
//! share. Each problem names file:line and the
//! fix. `ezk check` adds its own findings (role templates, the artifact set) to the list and a
//! summary of what was resolved (`ops::check`).
//!
//! One file because it is one list of rules walked in order by `validate`, each a short method
//! over the same checker, sharing its error constructors and the set of problems already seen.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use indexmap::IndexMap;

use super::error::{InventoryError, Location};
use super::values::{self, LISTENERS};
use super::{Inventory, ResolveErrorKind};
use crate::addr::{self as net, Cidr};

/// Network plugins kubeasz supports (`none`: bring your own).
pub const NETWORKS: &[&str] = &[
    "host-gw",
    "calico",
    "flannel",
    "kube-router",
    "cilium",
    "kube-ovn",
    "none",
];
/// Container runtimes ezk installs. kubeasz also offers docker, for Kubernetes before 1.24;
/// Kubernetes 1.24 removed dockershim, so docker is not offered.
pub const RUNTIMES: &[&str] = &["containerd"];
/// How hosts get the artifact set's images (`IMAGE_DELIVERY`, optional: roles default to import).
pub const IMAGE_DELIVERIES: &[&str] = &["import", "registry"];
/// Cluster-wide variables `ezk check` shows.
pub const SHOWN_VARS: &[&str] = &[
    "CLUSTER_NAME",
    "K8S_VER",
    "CONTAINER_RUNTIME",
    "CLUSTER_NETWORK",
    "SERVICE_CIDR",
    "CLUSTER_CIDR",
    "NODE_PORT_RANGE",
    "CLUSTER_DNS_DOMAIN",
    "bin_dir",
    "ca_dir",
    "base_dir",
];

/// Every problem in the inventory, in file order where there is one.
pub fn validate(inv: &Inventory) -> Vec<InventoryError> {
    check(inv, false)
}

/// As [`validate`], but an even number of `[etcd]` hosts is no problem: `add-etcd` and
/// `del-etcd` judge the count themselves, from the live membership, and accept an even one
/// only when asked (`--allow-even`); every other command still refuses it.
pub fn validate_etcd_change(inv: &Inventory) -> Vec<InventoryError> {
    check(inv, true)
}

fn check(inv: &Inventory, even_etcd_ok: bool) -> Vec<InventoryError> {
    let mut c = Checker {
        inv,
        errors: Vec::new(),
        seen: HashSet::new(),
        even_etcd_ok,
    };
    c.templates();
    c.host_names();
    c.node_names();
    c.groups();
    c.ex_lb();
    c.cluster_vars();
    c.typed_values();
    c.ports();
    let mut errors = c.errors;
    // Stable order: by file and line, keeping discovery order otherwise.
    errors.sort_by_key(|e| e.location().cloned());
    errors
}

/// The values of one role's `defaults.yml` (`file` as messages name it, `text` its content)
/// checked like the inventory's own (`typed_values`) on every host where the default is the
/// value the host gets: a bad default in a role is found too, before it reaches a host.
/// `templates`: also defaults that are templates (`KUBE_LB_PORT: "{{ SECURE_PORT }}"`); a
/// caller leaves them out while the inventory has problems of its own, which such a default
/// would only repeat at the role's line.
pub fn role_defaults(
    inv: &Inventory,
    file: &str,
    text: &str,
    templates: bool,
) -> Vec<InventoryError> {
    // A defaults.yml that does not parse is reported by the role loader.
    let Ok(defs) = super::yaml::parse_config(text, std::path::Path::new(file)) else {
        return Vec::new();
    };
    let r = inv.resolver_over(&defs);
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for h in &inv.hosts {
        for (name, def) in &defs {
            let Some(kind) = values::kind_of(name) else {
                continue;
            };
            if r.def_location(h, name) != Some(&def.at) {
                continue; // the inventory's value wins: checked with the inventory.
            }
            if !templates && super::resolve::has_template(&def.value) {
                continue;
            }
            // A default that does not render is reported when the role is planned.
            let Ok(v) = r.resolve(h, name) else {
                continue;
            };
            if let Some(p) = values::check(name, kind, &v) {
                let e = InventoryError::invalid(def.at.clone(), p.msg, p.fix);
                if seen.insert(e.to_string()) {
                    errors.push(e);
                }
            }
        }
    }
    errors
}

struct Checker<'a> {
    inv: &'a Inventory,
    errors: Vec<InventoryError>,
    seen: HashSet<String>,
    /// An even `[etcd]` count is not an error (`validate_etcd_change`).
    even_etcd_ok: bool,
}

impl Checker<'_> {
    fn push(&mut self, e: InventoryError) {
        // The same config value fails the same way for every host: say it once.
        let key = match &e {
            InventoryError::Template { at, var, msg, .. } => format!("{at}|{var}|{msg}"),
            other => other.to_string(),
        };
        if self.seen.insert(key) {
            self.errors.push(e);
        }
    }

    fn invalid(&mut self, at: Location, msg: String, fix: impl Into<String>) {
        self.push(InventoryError::invalid(at, msg, fix));
    }

    fn host_at(&self, host: &str) -> Location {
        self.inv
            .source()
            .hosts
            .get(host)
            .map(|h| h.at.clone())
            .unwrap_or_else(|| self.file_at())
    }

    fn var_at(&self, host: &str, var: &str) -> Location {
        self.inv
            .var_location(host, var)
            .cloned()
            .unwrap_or_else(|| self.host_at(host))
    }

    fn file_at(&self) -> Location {
        Location::new(self.inv.hosts_path(), 0)
    }

    fn group_at(&self, g: &str) -> Location {
        self.inv
            .source()
            .groups
            .get(g)
            .map(|d| d.at.clone())
            .unwrap_or_else(|| self.file_at())
    }

    /// Render every variable of every host: undefined names, syntax errors, cycles.
    ///
    /// Ansible evaluates lazily, so a cluster-wide value that needs a host variable (kubeasz's
    /// K8S_NODENAME needs `k8s_nodename`) is only an error where it can be used. ezk reports
    /// undefined names for Kubernetes hosts (kube_master, kube_node) on every variable; for
    /// other hosts (etcd-only, ex_lb, chrony, harbor) only on the variables of the host and its
    /// own groups. Syntax errors and cycles are reported everywhere.
    fn templates(&mut self) {
        let k8s: HashSet<&String> = self
            .inv
            .hosts_in("kube_master")
            .iter()
            .chain(self.inv.hosts_in("kube_node"))
            .collect();
        for h in &self.inv.hosts {
            let own = |var: &str| {
                let src = self.inv.source();
                src.hosts.get(h).is_some_and(|d| d.vars.contains_key(var))
                    || self
                        .inv
                        .groups_of(h)
                        .iter()
                        .any(|g| src.groups.get(g).is_some_and(|d| d.vars.contains_key(var)))
            };
            for var in self.inv.var_names(h) {
                if let Err(e) = self.inv.resolve(h, &var) {
                    if e.kind == ResolveErrorKind::Undefined && !k8s.contains(h) && !own(&var) {
                        continue;
                    }
                    self.push(e.into());
                }
            }
        }
    }

    /// Rendered string value, or None when undefined or failing (failures are reported by
    /// `templates`).
    fn get(&self, host: &str, var: &str) -> Option<String> {
        self.inv.var_str(host, var)
    }

    /// The host that runs the cluster's image registry: with `IMAGE_DELIVERY: registry`,
    /// `LOCAL_REGISTRY_HOST` or (the role's default) the first master.
    fn registry_host(&self) -> Option<String> {
        let first = self.inv.hosts.first()?;
        if self.get(first, "IMAGE_DELIVERY").as_deref() != Some("registry") {
            return None;
        }
        self.get(first, "LOCAL_REGISTRY_HOST")
            .or_else(|| self.inv.hosts_in("kube_master").first().cloned())
    }

    fn host_names(&mut self) {
        for h in self.inv.hosts.clone() {
            let at = self.host_at(&h);
            let target = self.get(&h, "ansible_host");
            if let Some(msg) = bad_address(&h)
                && (target.is_none() || net::looks_like_ipv4(&h))
            {
                self.invalid(
                    at.clone(),
                    format!("host {h:?}: {msg}"),
                    "write a valid IPv4/IPv6 address or host name",
                );
            }
            if let Some(t) = target
                && let Some(msg) = bad_address(&t)
            {
                let at = self.var_at(&h, "ansible_host");
                self.invalid(
                    at,
                    format!("ansible_host {t:?} of host {h}: {msg}"),
                    "write a valid IP address or host name",
                );
            }
        }
    }

    fn node_names(&mut self) {
        let mut used: HashMap<String, String> = HashMap::new();
        let k8s: HashSet<String> = self
            .inv
            .hosts_in("kube_master")
            .iter()
            .chain(self.inv.hosts_in("kube_node"))
            .cloned()
            .collect();
        for h in self.inv.hosts.clone() {
            if let Some(n) = self.get(&h, "k8s_nodename").filter(|n| !n.is_empty())
                && !net::is_dns1123_subdomain(&n)
            {
                let at = self.var_at(&h, "k8s_nodename");
                self.invalid(
                        at,
                        format!("k8s_nodename {n:?} of host {h} is not a valid DNS-1123 node name"),
                        "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. k8s-worker-1)",
                    );
            }
            if !k8s.contains(&h) {
                continue;
            }
            let name = self
                .get(&h, "K8S_NODENAME")
                .or_else(|| self.get(&h, "k8s_nodename").filter(|n| !n.is_empty()))
                .unwrap_or_else(|| h.clone());
            // The name Kubernetes gets (K8S_NODENAME's formula may build it from the host name):
            // reported on the host's line, where k8s_nodename fixes it, unless k8s_nodename
            // itself is wrong (reported above).
            let own_ok = self
                .get(&h, "k8s_nodename")
                .is_none_or(|n| n.is_empty() || net::is_dns1123_subdomain(&n));
            // A host name that is no name at all is reported by `host_names`.
            if own_ok && bad_address(&h).is_none() && !net::is_dns1123_subdomain(&name) {
                let at = self.host_at(&h);
                self.invalid(
                    at,
                    format!("node name {name:?} of host {h} is not a valid DNS-1123 name"),
                    "give the host k8s_nodename='<name>' (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)",
                );
            }
            match used.get(&name) {
                Some(first) if *first != h => {
                    let (first_at, at) = (
                        self.var_at(first, "k8s_nodename"),
                        self.var_at(&h, "k8s_nodename"),
                    );
                    self.invalid(
                        at,
                        format!("node name {name:?} of host {h} is already used by host {first} ({first_at})"),
                        "give every master and node a unique k8s_nodename",
                    );
                }
                _ => {
                    used.insert(name, h.clone());
                }
            }
        }
    }

    fn groups(&mut self) {
        let etcd = self.inv.hosts_in("etcd").len();
        let at = self.group_at("etcd");
        if etcd == 0 {
            self.invalid(
                at,
                "the etcd group is empty".into(),
                "list 1, 3 or 5 hosts under [etcd]",
            );
        } else if etcd.is_multiple_of(2) && !self.even_etcd_ok {
            self.invalid(
                at,
                format!("the etcd group has {etcd} members; etcd needs an odd number for quorum"),
                "list an odd number of hosts under [etcd] (1, 3, 5...); a running cluster's count changes with `ezk add-etcd` / `ezk del-etcd` (after `add-etcd --allow-even`, the next add-etcd or a del-etcd makes it odd again)",
            );
        }
        if self.inv.hosts_in("kube_master").is_empty() {
            let at = self.group_at("kube_master");
            self.invalid(
                at,
                "the kube_master group is empty".into(),
                "list at least one host under [kube_master]",
            );
        }
    }

    /// ex_lb hosts need a VIP address and a keepalived role.
    fn ex_lb(&mut self) {
        for h in self.inv.hosts_in("ex_lb").to_vec() {
            match self.get(&h, "EX_APISERVER_VIP") {
                Some(vip) if vip.parse::<IpAddr>().is_err() => {
                    let at = self.var_at(&h, "EX_APISERVER_VIP");
                    self.invalid(at, format!("EX_APISERVER_VIP {vip:?} of host {h} is not an IP address"), "set it to the virtual IP the load balancers share, e.g. EX_APISERVER_VIP=198.51.100.250");
                }
                Some(_) => {}
                None if self.inv.var_location(&h, "EX_APISERVER_VIP").is_none() => {
                    let at = self.host_at(&h);
                    self.invalid(
                        at,
                        format!("ex_lb host {h} has no EX_APISERVER_VIP"),
                        "add EX_APISERVER_VIP=<virtual IP> EX_APISERVER_PORT=8443 to the host line",
                    );
                }
                None => {}
            }
            if let Some(role) = self
                .get(&h, "LB_ROLE")
                .filter(|r| r != "master" && r != "backup")
            {
                let at = self.var_at(&h, "LB_ROLE");
                self.invalid(
                    at,
                    format!("LB_ROLE {role:?} of host {h} is neither master nor backup"),
                    "use LB_ROLE=master on one ex_lb host and LB_ROLE=backup on the others",
                );
            }
        }
    }

    /// The first host decides cluster-wide values (they normally come from config.yml or [all:vars]).
    fn cluster_vars(&mut self) {
        let Some(h) = self.inv.hosts.first().cloned() else {
            return;
        };
        let choice = |me: &mut Self, var: &str, allowed: &[&str]| {
            let Some(v) = me.get(&h, var) else {
                me.missing(&h, var, allowed[0]);
                return;
            };
            if !allowed.contains(&v.as_str()) {
                let at = me.var_at(&h, var);
                me.invalid(
                    at,
                    format!("{var} {v:?} is not supported"),
                    format!("use one of: {}", allowed.join(", ")),
                );
            }
        };
        choice(self, "CLUSTER_NETWORK", NETWORKS);
        match self.get(&h, "CLUSTER_NETWORK").as_deref() {
            Some("calico") => self.calico_options(&h),
            Some("cilium") => self.cilium_options(&h),
            Some("kube-ovn") => self.one_of(&h, "KUBE_OVN_TUNNEL_TYPE", &["geneve", "vxlan"]),
            _ => {}
        }
        choice(self, "CONTAINER_RUNTIME", RUNTIMES);
        if let Some(v) = self.get(&h, "IMAGE_DELIVERY")
            && !IMAGE_DELIVERIES.contains(&v.as_str())
        {
            let at = self.var_at(&h, "IMAGE_DELIVERY");
            self.invalid(
                at,
                format!("IMAGE_DELIVERY {v:?} is not supported"),
                format!("use one of: {}", IMAGE_DELIVERIES.join(", ")),
            );
        }
        // Nodes reach the registry at this name and its certificate carries it: a host of
        // this inventory (kubeasz writes hosts as their addresses), never an outside name.
        if let Some(r) = self.get(&h, "LOCAL_REGISTRY_HOST")
            && !self.inv.hosts.contains(&r)
        {
            let at = self.var_at(&h, "LOCAL_REGISTRY_HOST");
            self.invalid(
                at,
                format!("LOCAL_REGISTRY_HOST {r:?} is not a host of this inventory"),
                "name one of the inventory's hosts as written in hosts (or remove it: the first master)",
            );
        }
        let service = self.cidr(&h, "SERVICE_CIDR", "10.68.0.0/16");
        let cluster = self.cidr(&h, "CLUSTER_CIDR", "172.20.0.0/16");
        if let (Some(s), Some(c)) = (service, cluster)
            && s.overlaps(&c)
        {
            let (sat, cat) = (
                self.var_at(&h, "SERVICE_CIDR"),
                self.var_at(&h, "CLUSTER_CIDR"),
            );
            self.invalid(
                    cat,
                    format!("CLUSTER_CIDR {c} overlaps SERVICE_CIDR {s} ({sat})"),
                    "choose non-overlapping ranges (e.g. SERVICE_CIDR=10.68.0.0/16, CLUSTER_CIDR=172.20.0.0/16)",
                );
        }
        if let Some(c) = cluster {
            self.node_subnets_fit(&h, c);
        }
        for (name, cidr) in [("SERVICE_CIDR", service), ("CLUSTER_CIDR", cluster)] {
            let Some(cidr) = cidr else { continue };
            for host in self.inv.hosts.clone() {
                let addr = self
                    .get(&host, "ansible_host")
                    .unwrap_or_else(|| host.clone());
                if let Ok(ip) = addr.parse::<IpAddr>()
                    && cidr.contains(ip)
                {
                    let at = self.host_at(&host);
                    let var_at = self.var_at(&h, name);
                    self.invalid(
                        at,
                        format!("host {host} ({ip}) is inside {name} {cidr} ({var_at})"),
                        format!("pick a {name} that does not contain any host address"),
                    );
                }
            }
        }
        if let Some(r) = self.get(&h, "NODE_PORT_RANGE") {
            let ok = r.split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            if !matches!(ok, Some((a, b)) if a > 0 && a < b) {
                let at = self.var_at(&h, "NODE_PORT_RANGE");
                self.invalid(
                    at,
                    format!("NODE_PORT_RANGE {r:?} is not a port range"),
                    "write it as LOW-HIGH, e.g. 30000-32767",
                );
            }
        }
    }

    /// calico's routing backend (unset: the role's default, bird), and no route reflectors
    /// (kubeasz's calico-rr: ezk's calico role does not make them).
    fn calico_options(&mut self, h: &str) {
        self.one_of(h, "CALICO_NETWORKING_BACKEND", &["bird", "vxlan", "none"]);
        self.not_offered(
            h,
            "CALICO_RR_ENABLED",
            "calico route reflectors are not offered by ezk",
            "set CALICO_RR_ENABLED: false (every calico node then peers with every other, calico's default)",
        );
    }

    /// A kubeasz switch for something ezk does not make: refused when it is on.
    fn not_offered(&mut self, h: &str, var: &str, what: &str, fix: &str) {
        if let Some(v) = self.get(h, var)
            && matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on")
        {
            let at = self.var_at(h, var);
            self.invalid(at, format!("{var}: {what}"), fix.to_string());
        }
    }

    /// Every variable whose use ezk knows (`values::kind_of`: paths, ports, users, domains,
    /// name lists, numbers), checked for that use on every host.
    fn typed_values(&mut self) {
        for h in self.inv.hosts.clone() {
            for var in self.inv.var_names(&h) {
                let Some(kind) = values::kind_of(&var) else {
                    continue;
                };
                // A value that does not render is reported by `templates`.
                let Ok(v) = self.inv.resolve(&h, &var) else {
                    continue;
                };
                if let Some(p) = values::check(&var, kind, &v) {
                    let at = self.var_at(&h, &var);
                    self.invalid(at, p.msg, p.fix);
                }
            }
        }
    }

    /// Two services of one host on one port (`values::LISTENERS`: what the roles start, on
    /// which addresses), and, on Kubernetes hosts, a service port inside NODE_PORT_RANGE
    /// (kube-proxy answers NodePorts on every address). Reported once per clash, with the
    /// hosts it happens on, at the variable to change.
    fn ports(&mut self) {
        // Unset, Kubernetes' (and kube-master's) default range applies.
        let range = self
            .inv
            .hosts
            .first()
            .and_then(|h| match self.get(h, "NODE_PORT_RANGE") {
                Some(r) => Some((
                    values::port_range(&r)?,
                    r,
                    self.var_at(h, "NODE_PORT_RANGE"),
                )),
                None => Some((
                    (30000, 32767),
                    "30000-32767 (Kubernetes' default)".into(),
                    self.file_at(),
                )),
            });
        let registry = self.registry_host();
        let mut found: IndexMap<(Location, String, String), Vec<String>> = IndexMap::new();
        for h in self.inv.hosts.clone() {
            let mut groups = self.inv.groups_of(&h).to_vec();
            groups.push("all".into());
            if registry.as_ref() == Some(&h) {
                groups.push(values::REGISTRY_HOST.into());
            }
            let lb_bind = self.get(&h, "EX_LB_BIND");
            let mine: Vec<Port> = LISTENERS
                .iter()
                .filter(|l| l.groups.iter().any(|g| groups.iter().any(|x| x == g)))
                .filter(|l| {
                    l.when
                        .iter()
                        .all(|(v, want, unset)| self.get(&h, v).map_or(*unset, |x| x == *want))
                })
                .filter_map(|l| self.port_of(&h, l))
                .collect();
            for (i, a) in mine.iter().enumerate() {
                for b in &mine[i + 1..] {
                    if a.port != b.port || !values::overlaps(a.l.bind, b.l.bind, lb_bind.as_deref())
                    {
                        continue;
                    }
                    // The one to change: a port the inventory set, else one that has a variable.
                    let (mover, other) = match (a.set_by, b.set_by) {
                        (_, Some(_)) => (b, a),
                        (Some(_), None) => (a, b),
                        _ if b.l.var.is_some() => (b, a),
                        _ => (a, b),
                    };
                    let var = mover.var().unwrap_or_default();
                    let msg = format!(
                        "{var} {} ({}) is also the port of {} ({})",
                        mover.port,
                        mover.l.service,
                        other.l.service,
                        self.origin(&h, other)
                    );
                    let fix = format!("give each service on a host its own port: change {var}");
                    found
                        .entry((self.var_at(&h, var), msg, fix))
                        .or_default()
                        .push(h.clone());
                }
            }
            let k8s = groups
                .iter()
                .any(|g| g == "kube_master" || g == "kube_node");
            let Some(((low, high), r, range_at)) = range.as_ref().filter(|_| k8s) else {
                continue;
            };
            // kube-proxy answers NodePorts on every address, loopback included (iptables mode
            // routes 127.0.0.1 too): a listener inside the range can lose its connections.
            let (set, given): (Vec<&Port>, Vec<&Port>) = mine
                .iter()
                .filter(|p| (*low..=*high).contains(&p.port))
                .partition(|p| p.set_by.is_some());
            let in_range = |at: &Location| {
                // Unset (the default range), it has no line to point at.
                if at == range_at || range_at.line == 0 {
                    format!("NODE_PORT_RANGE {r}")
                } else {
                    format!("NODE_PORT_RANGE {r} ({range_at})")
                }
            };
            for p in set {
                let var = p.var().unwrap_or_default();
                let at = self.var_at(&h, var);
                let msg = format!(
                    "{var} {} ({}) lies in {}: kube-proxy would hand its connections to a \
                     NodePort service",
                    p.port,
                    p.l.service,
                    in_range(&at)
                );
                let fix =
                    format!("move {var} out of NODE_PORT_RANGE, or NODE_PORT_RANGE away from it");
                found.entry((at, msg, fix)).or_default().push(h.clone());
            }
            // Ports the inventory did not choose (fixed, or defaults): the range moves.
            if let (Some(lo), Some(hi)) = (
                given.iter().map(|p| p.port).min(),
                given.iter().map(|p| p.port).max(),
            ) {
                let names: Vec<String> = given
                    .iter()
                    .map(|p| format!("{} {}", p.l.service, p.port))
                    .collect();
                let msg = format!(
                    "the ports of {} lie in {}: kube-proxy would hand their connections to a \
                     NodePort service",
                    names.join(", "),
                    in_range(range_at)
                );
                let clear = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo}-{hi}")
                };
                let fix = format!("keep NODE_PORT_RANGE clear of {clear} (e.g. 30000-32767)");
                found
                    .entry((range_at.clone(), msg, fix))
                    .or_default()
                    .push(h.clone());
            }
        }
        for ((at, msg, fix), hosts) in found {
            let on = match hosts.as_slice() {
                [one] => format!("host {one}"),
                [a, b] => format!("hosts {a} and {b}"),
                [a, b, rest @ ..] => format!("hosts {a}, {b} and {} more", rest.len()),
                [] => continue,
            };
            self.invalid(at, format!("{on}: {msg}"), fix);
        }
    }

    /// The port listener `l` has on `host`: from its variable (for sshd also
    /// `ansible_ssh_port`; for one that follows another, that one's), else its default. None
    /// when the variable is not a port (reported by `typed_values`).
    fn port_of(&self, host: &str, l: &'static values::Listener) -> Option<Port> {
        let set = |v: &str| self.inv.var_location(host, v).is_some();
        let from = l.var.and_then(|v| {
            let alias = match (v, l.follows) {
                ("ansible_port", _) => Some("ansible_ssh_port"),
                (_, f) => f,
            };
            [Some(v), alias].into_iter().flatten().find(|v| set(v))
        });
        let port = match from {
            Some(v) => values::as_port(&self.inv.resolve(host, v).ok()?)?,
            None => l.default,
        };
        Some(Port {
            l,
            port,
            set_by: from,
        })
    }

    /// Where `p`'s port comes from, for a message: `VAR, hosts:12`, `VAR by default`, or fixed.
    fn origin(&self, host: &str, p: &Port) -> String {
        match (p.set_by, p.l.var) {
            (Some(v), _) => format!("{v}, {}", self.var_at(host, v)),
            (None, Some(v)) => format!("{v} by default"),
            (None, None) => "a fixed port".into(),
        }
    }

    /// The controller-manager gives every node a NODE_CIDR_LEN subnet of CLUSTER_CIDR: a node
    /// past the last one gets none, and its pods no network.
    fn node_subnets_fit(&mut self, h: &str, cluster: Cidr) {
        let len_text = self.get(h, "NODE_CIDR_LEN").unwrap_or_else(|| "24".into());
        let Ok(len) = len_text.trim().parse::<u8>() else {
            let at = self.var_at(h, "NODE_CIDR_LEN");
            self.invalid(at, format!("NODE_CIDR_LEN {len_text:?} is not a prefix length"), "write a number, e.g. 24");
            return;
        };
        let max = if cluster.addr.is_ipv4() { 32 } else { 128 };
        let nodes: HashSet<&String> =
            self.inv.hosts_in("kube_master").iter().chain(self.inv.hosts_in("kube_node")).collect();
        let nodes = nodes.len();
        let fits = len >= cluster.prefix && len <= max && {
            let bits = u32::from(len - cluster.prefix);
            bits >= 63 || (1u64 << bits) >= nodes as u64
        };
        if !fits {
            let subnets = if len < cluster.prefix || len > max {
                "no".to_string()
            } else {
                (1u64 << u32::from(len - cluster.prefix)).to_string()
            };
            let at = self.var_at(h, "NODE_CIDR_LEN");
            let cat = self.var_at(h, "CLUSTER_CIDR");
            self.invalid(
                at,
                format!(
                    "NODE_CIDR_LEN {len} gives {subnets} node subnet(s) of CLUSTER_CIDR {cluster} ({cat}), and the cluster has {nodes} node(s)"
                ),
                {
                    // Bits of subnet number the node count needs.
                    let need = (usize::BITS - nodes.saturating_sub(1).leading_zeros()) as u8;
                    let wide = len.saturating_sub(need);
                    format!(
                        "give every node a pod subnet: widen CLUSTER_CIDR to a /{wide} (or wider), or set NODE_CIDR_LEN to {} (smaller subnets, fewer pods per node)",
                        cluster.prefix + need
                    )
                },
            );
        }
    }

    /// `var`, when set, is one of `allowed` (unset: the role's default, which is).
    fn one_of(&mut self, h: &str, var: &str, allowed: &[&str]) {
        if let Some(v) = self.get(h, var)
            && !allowed.contains(&v.as_str())
        {
            let at = self.var_at(h, var);
            self.invalid(at, format!("{var} {v:?} is not supported"), format!("use one of: {}", allowed.join(", ")));
        }
    }

    /// cilium's routing mode and tunnel protocol, and no hubble-relay/UI (ezk's cilium role
    /// runs Hubble only inside each agent).
    fn cilium_options(&mut self, h: &str) {
        self.one_of(h, "CILIUM_ROUTING_MODE", &["tunnel", "native"]);
        self.one_of(h, "CILIUM_TUNNEL_PROTOCOL", &["vxlan", "geneve"]);
        self.not_offered(
            h,
            "cilium_hubble_ui_enabled",
            "hubble-relay and the Hubble UI are not offered by ezk",
            "set cilium_hubble_ui_enabled: false (cilium_hubble_enabled: true still runs Hubble in each agent, read with `hubble observe` in the agent's pod)",
        );
    }

    fn cidr(&mut self, h: &str, var: &str, example: &str) -> Option<Cidr> {
        let Some(v) = self.get(h, var) else {
            self.missing(h, var, example);
            return None;
        };
        match Cidr::parse(&v) {
            Ok(c) => Some(c),
            Err(msg) => {
                let at = self.var_at(h, var);
                self.invalid(
                    at,
                    format!("{var}: {msg}"),
                    format!("write it as address/prefix, e.g. {example}"),
                );
                None
            }
        }
    }

    fn missing(&mut self, h: &str, var: &str, example: &str) {
        if self.inv.var_location(h, var).is_some() {
            return; // defined but failed to render: reported by `templates`.
        }
        let at = self.group_at("all");
        let at = if at.line == 0 { self.file_at() } else { at };
        self.invalid(
            at,
            format!("{var} is not set"),
            format!("add {var}=\"{example}\" under [all:vars] (or to config.yml)"),
        );
    }
}

/// A service's port on one host, and the variable that set it (None: its default, or fixed).
struct Port {
    l: &'static values::Listener,
    port: u16,
    set_by: Option<&'static str>,
}

impl Port {
    /// The variable to name: the one that set the port, else the listener's own.
    fn var(&self) -> Option<&'static str> {
        self.set_by.or(self.l.var)
    }
}

fn bad_address(s: &str) -> Option<String> {
    if s.parse::<IpAddr>().is_ok() {
        None
    } else if net::looks_like_ipv4(s) {
        Some("not a valid IP address".into())
    } else if !net::is_hostname(s) {
        Some("not a valid IP address or host name".into())
    } else {
        None
    }
}
