//! `PkiSpec`: everything the PKI needs from a cluster's inventory, as plain data.
//!
//! The inventory layer builds it (hosts per group, EX_APISERVER_VIP, MASTER_CERT_HOSTS,
//! SERVICE_CIDR, ...); the PKI validates it here before anything is issued, so a bad value is
//! reported with the variable's name and never half-applied.

use std::net::IpAddr;

use time::Duration;

use super::error::PkiError;

/// One host of a group, as the certificates see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Member {
    /// Inventory hostname (what `cert_files`/`kubeconfig` are asked about).
    pub host: String,
    /// Name in certificates: the etcd member name for `etcd`, the node name (`k8s_nodename`,
    /// else the hostname) for `masters` and `nodes`.
    pub name: String,
    /// Address that goes into SANs.
    pub ip: IpAddr,
}

impl Member {
    /// Shorthand for tests and callers: `Member::new("10.0.0.1", "node-1", "10.0.0.1")`.
    pub fn new(host: &str, name: &str, ip: &str) -> Result<Self, PkiError> {
        Ok(Member {
            host: host.to_string(),
            name: name.to_string(),
            ip: ip.parse().map_err(|_| PkiError::Spec {
                var: format!("address of host {host}"),
                msg: format!("{ip:?} is not an IP address"),
            })?,
        })
    }
}

/// Inputs of the cluster PKI. Built from the inventory (kubeasz variable names in the docs);
/// also readable from YAML (test fixtures use field names as below).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PkiSpec {
    /// `CLUSTER_NAME` (kubeconfig cluster entry; kubeasz default "cluster1").
    pub cluster_name: String,
    /// `CONTEXT_NAME` (kubeconfig context).
    pub context_name: String,
    /// The `etcd` group.
    pub etcd: Vec<Member>,
    /// The `kube_master` group.
    pub masters: Vec<Member>,
    /// Every host that runs a kubelet (in kubeasz: `kube_master` + `kube_node`).
    pub nodes: Vec<Member>,
    /// `EX_APISERVER_VIP` of the `ex_lb` hosts (empty when there is no ex_lb).
    pub vips: Vec<IpAddr>,
    /// `MASTER_CERT_HOSTS`: extra IPs or DNS names for the apiserver certificate.
    pub master_cert_hosts: Vec<String>,
    /// `SERVICE_CIDR`, e.g. "10.68.0.0/16"; its first address is the `kubernetes` service IP.
    pub service_cidr: String,
    /// `CLUSTER_DNS_DOMAIN`, e.g. "cluster.local".
    pub cluster_dns_domain: String,
    /// `SECURE_PORT` of kube-apiserver (kubeasz default 6443).
    pub secure_port: u16,
    /// `EX_APISERVER_PORT` on the VIP (kubeasz default 8443).
    pub ex_apiserver_port: u16,
    /// Port of the node-local apiserver load balancer (kubeasz's kube-lb: 6443).
    pub node_lb_port: u16,
    /// `CA_EXPIRY` as kubeasz writes it, e.g. "876000h".
    pub ca_expiry: String,
    /// `CERT_EXPIRY`, e.g. "438000h".
    pub cert_expiry: String,
    /// The host that serves the cluster's image registry (`LOCAL_REGISTRY_HOST` when
    /// `IMAGE_DELIVERY` is `registry`); None: no registry certificate.
    #[serde(default)]
    pub registry: Option<Member>,
}

impl PkiSpec {
    /// Check every value the PKI uses; the first problem is returned, naming the variable.
    pub fn validate(&self) -> Result<(), PkiError> {
        parse_expiry("CA_EXPIRY", &self.ca_expiry)?;
        parse_expiry("CERT_EXPIRY", &self.cert_expiry)?;
        self.service_ip()?;
        if self.masters.is_empty() {
            return Err(spec_err(
                "kube_master",
                "the group is empty; the apiserver certificate needs at least one master",
            ));
        }
        if self.etcd.is_empty() {
            return Err(spec_err(
                "etcd",
                "the group is empty; etcd certificates need at least one member",
            ));
        }
        for (group, members) in [
            ("etcd", &self.etcd),
            ("kube_master", &self.masters),
            ("kube_node", &self.nodes),
        ] {
            let mut seen = std::collections::HashSet::new();
            let mut names = std::collections::HashSet::new();
            for m in members {
                if !seen.insert(&m.host) {
                    return Err(spec_err(group, &format!("host {} is listed twice", m.host)));
                }
                if !names.insert(&m.name) {
                    return Err(spec_err(
                        group,
                        &format!(
                            "name {:?} (host {}) is used by two hosts; node names must be unique",
                            m.name, m.host
                        ),
                    ));
                }
                if !is_dns_name(&m.name) && m.name.parse::<IpAddr>().is_err() {
                    return Err(spec_err(
                        group,
                        &format!(
                            "name {:?} of host {} is neither a DNS-1123 name nor an IP; fix k8s_nodename",
                            m.name, m.host
                        ),
                    ));
                }
            }
        }
        for h in &self.master_cert_hosts {
            if h.parse::<IpAddr>().is_err() && !is_dns_name(h) {
                return Err(spec_err(
                    "MASTER_CERT_HOSTS",
                    &format!("{h:?} is neither an IP nor a DNS name"),
                ));
            }
        }
        if !is_dns_name(&self.cluster_dns_domain) {
            return Err(spec_err(
                "CLUSTER_DNS_DOMAIN",
                &format!("{:?} is not a DNS name", self.cluster_dns_domain),
            ));
        }
        for (var, v) in [
            ("CLUSTER_NAME", &self.cluster_name),
            ("CONTEXT_NAME", &self.context_name),
        ] {
            if v.trim().is_empty() {
                return Err(spec_err(var, "is empty"));
            }
        }
        Ok(())
    }

    /// First address of `SERVICE_CIDR` (network address + 1): the `kubernetes` service IP.
    pub fn service_ip(&self) -> Result<IpAddr, PkiError> {
        first_ip(&self.service_cidr).ok_or_else(|| {
            spec_err(
                "SERVICE_CIDR",
                &format!("{:?} is not a CIDR like 10.68.0.0/16", self.service_cidr),
            )
        })
    }

    /// Validity of CA certificates.
    pub fn ca_validity(&self) -> Result<Duration, PkiError> {
        parse_expiry("CA_EXPIRY", &self.ca_expiry)
    }

    /// Validity of leaf certificates.
    pub fn cert_validity(&self) -> Result<Duration, PkiError> {
        parse_expiry("CERT_EXPIRY", &self.cert_expiry)
    }
}

fn spec_err(var: &str, msg: &str) -> PkiError {
    PkiError::Spec {
        var: var.to_string(),
        msg: msg.to_string(),
    }
}

/// Parse a Go-style duration as kubeasz/cfssl write it ("876000h", "8760h30m", "90s").
pub fn parse_expiry(var: &str, s: &str) -> Result<Duration, PkiError> {
    let bad = || {
        spec_err(
            var,
            &format!("{s:?} is not a duration like \"876000h\" (units h, m, s)"),
        )
    };
    let mut total: i64 = 0;
    let mut num = String::new();
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total <= 0 {
        return Err(bad());
    }
    Ok(Duration::seconds(total))
}

/// Network address + 1 of an IPv4 or IPv6 CIDR.
fn first_ip(cidr: &str) -> Option<IpAddr> {
    let (addr, len) = cidr.trim().split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len < 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(IpAddr::V4(((u32::from(a) & mask) + 1).into()))
        }
        IpAddr::V6(a) if len < 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(IpAddr::V6(((u128::from(a) & mask) + 1).into()))
        }
        _ => None,
    }
}

/// DNS-1123 subdomain: lowercase labels of [a-z0-9-], not starting/ending with '-'.
pub(crate) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_parses_kubeasz_values_and_rejects_days() {
        assert_eq!(
            parse_expiry("X", "876000h").unwrap(),
            Duration::hours(876000)
        );
        assert_eq!(parse_expiry("X", "1h30m").unwrap(), Duration::minutes(90));
        assert!(parse_expiry("X", "100y").is_err());
        assert!(parse_expiry("X", "100").is_err());
        assert!(parse_expiry("X", "").is_err());
    }

    #[test]
    fn service_ip_is_network_plus_one() {
        assert_eq!(first_ip("10.68.0.0/16").unwrap().to_string(), "10.68.0.1");
        assert_eq!(first_ip("10.68.3.7/16").unwrap().to_string(), "10.68.0.1");
        assert_eq!(
            first_ip("fd00:10:96::/112").unwrap().to_string(),
            "fd00:10:96::1"
        );
        assert!(first_ip("10.68.0.0").is_none());
        assert!(first_ip("10.68.0.0/32").is_none());
    }
}
