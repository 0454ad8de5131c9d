//! `from_inventory`: build the `PkiSpec` of a cluster from its kubeasz inventory.
//!
//! Groups give the members (`etcd`, `kube_master`, `kube_node`, `ex_lb`); cluster-wide values
//! (CLUSTER_NAME, SERVICE_CIDR, ...) are read for the first master, as they come from
//! config.yml or `[all:vars]`. Every value is read as the roles render it: from the same
//! per-host variables, with the roles' defaults as the lowest layer (`role_defaults`, every
//! role's: `Catalog::run_defaults`), so a node name, the service CIDR or a port cannot differ
//! between a certificate and the files that use it. Only the values no role reads (the cluster
//! name and the certificates' lifetimes) have a default here. A value that is present but
//! unusable is an error naming the variable, the host and, where known, file:line.

use std::net::IpAddr;

use minijinja::value::ValueKind;

use super::error::PkiError;
use super::spec::{Member, PkiSpec};
use crate::inventory::{InventoryError, Vars};

/// kubeasz's defaults (its example config.yml) for the values only the PKI reads; every other
/// value comes from the roles' defaults, as the roles see it.
const DEFAULTS: &[(&str, &str)] = &[
    ("CLUSTER_NAME", "cluster1"),
    ("CA_EXPIRY", "876000h"),
    ("CERT_EXPIRY", "438000h"),
];

/// The inventory as the roles see it: its variables over the roles' defaults.
struct Read<'a> {
    inv: &'a crate::inventory::Inventory,
    vars: std::sync::Arc<crate::inventory::Scope>,
}

impl Read<'_> {
    fn hosts_in(&self, group: &str) -> &[String] {
        self.inv.hosts_in(group)
    }
    fn hosts_path(&self) -> &std::path::Path {
        self.inv.hosts_path()
    }
    fn var_location(&self, host: &str, var: &str) -> Option<&crate::inventory::Location> {
        self.vars.def_location(host, var)
    }
}

/// The PKI inputs of `inv`:
/// - etcd members named `etcd-<inventory_hostname>` (kubeasz's and the etcd role's `--name`);
/// - masters and nodes (`kube_master` ∪ `kube_node`, masters first, no duplicates) named by
///   `K8S_NODENAME` as the roles render it (the prepare role's default `k8s-<host>` when the
///   inventory does not set it; an empty one falls back to `k8s_nodename`, then the hostname);
/// - every address is the inventory hostname, or `ansible_host` when the hostname is a name;
/// - VIPs: the distinct `EX_APISERVER_VIP` of the `ex_lb` hosts; `EX_APISERVER_PORT` from the
///   first ex_lb host; the node-local apiserver LB listens on `SECURE_PORT` (kubeasz's kube-lb);
/// - the image registry host (`IMAGE_DELIVERY: registry`): `LOCAL_REGISTRY_HOST`, else the first
///   master.
pub fn from_inventory(inv: &crate::inventory::Inventory, role_defaults: &Vars) -> Result<PkiSpec, PkiError> {
    let inv = &Read { inv, vars: inv.run_context(role_defaults) };
    let masters_hosts = inv.hosts_in("kube_master");
    let first = masters_hosts.first().ok_or_else(|| PkiError::Spec {
        var: "kube_master".into(),
        msg: format!(
            "the group is empty in {}; list at least one host under [kube_master]",
            inv.hosts_path().display()
        ),
    })?;
    let cluster = |var: &str| string_var(inv, first, var);

    let cluster_name = cluster("CLUSTER_NAME")?;
    let context_name = match opt_string(inv, first, "CONTEXT_NAME")? {
        Some(c) => c,
        None => format!("context-{cluster_name}"),
    };

    let etcd = inv
        .hosts_in("etcd")
        .iter()
        .map(|h| {
            Ok(Member {
                host: h.clone(),
                name: format!("etcd-{h}"),
                ip: address(inv, h)?,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let node = |h: &String| -> Result<Member, PkiError> {
        Ok(Member {
            host: h.clone(),
            name: node_name(inv, h)?,
            ip: address(inv, h)?,
        })
    };
    let masters = masters_hosts
        .iter()
        .map(node)
        .collect::<Result<Vec<_>, _>>()?;
    let mut nodes = masters.clone();
    for h in inv.hosts_in("kube_node") {
        if !nodes.iter().any(|m| &m.host == h) {
            nodes.push(node(h)?);
        }
    }

    let lb_hosts = inv.hosts_in("ex_lb");
    let mut vips = Vec::new();
    for h in lb_hosts {
        let Some(v) = opt_string(inv, h, "EX_APISERVER_VIP")? else {
            return Err(spec_err(
                inv,
                h,
                "EX_APISERVER_VIP",
                "is not set; add EX_APISERVER_VIP=<virtual IP> to the ex_lb host line".into(),
            ));
        };
        let ip: IpAddr = v.parse().map_err(|_| {
            spec_err(
                inv,
                h,
                "EX_APISERVER_VIP",
                format!("{v:?} is not an IP address"),
            )
        })?;
        if !vips.contains(&ip) {
            vips.push(ip);
        }
    }
    let registry = match cluster("IMAGE_DELIVERY")?.as_str() {
        "registry" => {
            let h = opt_string(inv, first, "LOCAL_REGISTRY_HOST")?.unwrap_or_else(|| first.clone());
            Some(Member { name: h.clone(), ip: address(inv, &h)?, host: h })
        }
        _ => None,
    };
    let ex_port_host = lb_hosts.first().unwrap_or(first);
    let secure_port = port(inv, first, "SECURE_PORT")?;

    Ok(PkiSpec {
        cluster_name,
        context_name,
        etcd,
        masters,
        nodes,
        vips,
        master_cert_hosts: string_list(inv, first, "MASTER_CERT_HOSTS")?,
        service_cidr: cluster("SERVICE_CIDR")?,
        cluster_dns_domain: cluster("CLUSTER_DNS_DOMAIN")?,
        secure_port,
        ex_apiserver_port: port(inv, ex_port_host, "EX_APISERVER_PORT")?,
        node_lb_port: secure_port,
        ca_expiry: cluster("CA_EXPIRY")?,
        cert_expiry: cluster("CERT_EXPIRY")?,
        registry,
    })
}

/// The address that goes into certificates: the hostname when it is an IP (kubeasz's
/// convention), else `ansible_host`.
fn address(inv: &Read, host: &str) -> Result<IpAddr, PkiError> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let target = opt_string(inv, host, "ansible_host")?;
    target.as_deref().and_then(|t| t.parse().ok()).ok_or_else(|| PkiError::Spec {
        var: format!("address of host {host}"),
        msg: format!(
            "{} is not an IP address{}; certificates need the host's IP: write the IP as the host, or add ansible_host=<IP>",
            host,
            target.map(|t| format!(" (nor is its ansible_host {t:?})")).unwrap_or_default()
        ),
    })
}

fn node_name(inv: &Read, host: &str) -> Result<String, PkiError> {
    if let Some(n) = opt_string(inv, host, "K8S_NODENAME")?.filter(|n| !n.is_empty()) {
        return Ok(n);
    }
    Ok(opt_string(inv, host, "k8s_nodename")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host.to_string()))
}

fn port(inv: &Read, host: &str, var: &str) -> Result<u16, PkiError> {
    let v = string_var(inv, host, var)?;
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            spec_err(
                inv,
                host,
                var,
                format!("{v:?} is not a port number (1-65535)"),
            )
        })
}

/// A string variable, else kubeasz's default from `DEFAULTS` (for the PKI's own values); a
/// value neither the inventory nor a role defines is an error.
fn string_var(inv: &Read, host: &str, var: &str) -> Result<String, PkiError> {
    match opt_string(inv, host, var)? {
        Some(v) => Ok(v),
        None => DEFAULTS
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, d)| d.to_string())
            .ok_or_else(|| PkiError::Spec {
                var: var.into(),
                msg: format!("is not set for host {host}; set it in config.yml or [all:vars]"),
            }),
    }
}

fn opt_string(inv: &Read, host: &str, var: &str) -> Result<Option<String>, PkiError> {
    Ok(get(inv, host, var)?.map(|v| v.to_string().trim().to_string()))
}

/// A list variable (a YAML list, or one string; comma-separated strings are split).
fn string_list(inv: &Read, host: &str, var: &str) -> Result<Vec<String>, PkiError> {
    let Some(v) = get(inv, host, var)? else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = match v.kind() {
        ValueKind::Seq => v
            .try_iter()
            .map_err(|e| spec_err(inv, host, var, e.to_string()))?
            .map(|i| i.to_string())
            .collect(),
        _ => v.to_string().split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The rendered value, `None` when the variable is not defined for the host (or is null).
fn get(inv: &Read, host: &str, var: &str) -> Result<Option<minijinja::Value>, PkiError> {
    if inv.var_location(host, var).is_none() {
        return Ok(None);
    }
    let v = inv.vars.resolve(host, var).map_err(|e| PkiError::Spec {
        var: var.into(),
        msg: format!("for host {host}: {}", InventoryError::from(e)),
    })?;
    Ok((!v.is_none() && !v.is_undefined()).then_some(v))
}

fn spec_err(inv: &Read, host: &str, var: &str, msg: String) -> PkiError {
    let at = inv
        .var_location(host, var)
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    PkiError::Spec {
        var: var.into(),
        msg: format!("{msg} (host {host}){at}"),
    }
}
