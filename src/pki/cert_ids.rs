//! The catalog: every certificate id, what goes into it, which CA signs it, and which hosts may
//! receive it. Pure data derived from a `PkiSpec`; no I/O.
//!
//! Certificate ids (the `name:` of a `cert` task) and the host roles that may receive them:
//!
//! | id | file under ssl/ | signed by | subject / use | hosts |
//! |---|---|---|---|---|
//! | `ca` | ca.pem | — | cluster CA certificate only | every host |
//! | `ca-key` | ca.pem + ca-key.pem | — | cluster CA with its key (controller-manager signs CSRs) | masters |
//! | `etcd-ca` | etcd-ca.pem | — | etcd CA certificate only | etcd, masters |
//! | `front-proxy-ca` | front-proxy-ca.pem | — | front-proxy CA certificate only | masters |
//! | `sa` | sa.pub + sa.key | — | service-account token key pair (cert_pem = public key) | masters |
//! | `encryption-config` | encryption.key | — | Secrets encryption at rest (a `secret` file, see `encryption`) | masters |
//! | `etcd` | etcd.pem | etcd CA | CN=etcd, server+client (peer) auth, every etcd IP/name + 127.0.0.1 | etcd |
//! | `kubernetes` | kubernetes.pem | CA | kube-apiserver serving cert | masters |
//! | `apiserver-etcd-client` | apiserver-etcd-client.pem | etcd CA | apiserver → etcd | masters |
//! | `apiserver-kubelet-client` | apiserver-kubelet-client.pem | CA | apiserver → kubelet, CN=kube-apiserver-kubelet-client (RBAC: system:kubelet-api-admin) | masters |
//! | `aggregator-proxy` | aggregator-proxy.pem | front-proxy CA | front-proxy client, CN=aggregator | masters |
//! | `admin` | admin.pem | CA | CN=admin, O=system:masters | masters |
//! | `kube-controller-manager` | kube-controller-manager.pem | CA | CN=system:kube-controller-manager | masters |
//! | `kube-scheduler` | kube-scheduler.pem | CA | CN=system:kube-scheduler | masters |
//! | `kube-proxy` | kube-proxy.pem | CA | CN=system:kube-proxy | nodes |
//! | `kubelet` | kubelet-<nodename>.pem | CA | CN=system:node:<nodename>, O=system:nodes, server+client | that node only |
//! | `etcd-client` | etcd-client.pem | etcd CA | etcdctl on the deploy machine | no host |
//!
//! One shared `etcd` certificate (kubeasz's etcd.pem) rather than one per member: its SANs hold
//! every etcd IP (as kubeasz's do), so per-member certificates would all change together on any
//! membership change anyway, and the shared file keeps kubeasz's paths and unit flags valid.

use std::net::IpAddr;

use serde::Serialize;

use super::error::PkiError;
use super::spec::{PkiSpec, is_dns_name};

/// The three CAs. Separate etcd and front-proxy CAs, as kubeadm does: a client cert for the
/// cluster API can never authenticate to etcd, and front-proxy identities cannot be forged with
/// an ordinary client cert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CaKind {
    Cluster,
    Etcd,
    FrontProxy,
}

impl CaKind {
    /// All CAs, in issuing order.
    pub const ALL: [CaKind; 3] = [CaKind::Cluster, CaKind::Etcd, CaKind::FrontProxy];

    /// File stem: `<stem>.pem` and `<stem>-key.pem` (kubeasz's names for the cluster CA).
    pub fn stem(self) -> &'static str {
        match self {
            CaKind::Cluster => "ca",
            CaKind::Etcd => "etcd-ca",
            CaKind::FrontProxy => "front-proxy-ca",
        }
    }

    /// Common name of a CA that ezk creates.
    pub fn common_name(self) -> &'static str {
        match self {
            CaKind::Cluster => "kubernetes-ca",
            CaKind::Etcd => "etcd-ca",
            CaKind::FrontProxy => "front-proxy-ca",
        }
    }
}

/// A subject alternative name. Ordered (IPs first) so SAN lists are canonical. Serialized as
/// its display form ("IP:10.0.0.1", "DNS:kubernetes").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    Ip(IpAddr),
    Dns(String),
}

impl San {
    /// An IP if it parses as one, else a DNS name.
    pub fn parse(s: &str) -> San {
        s.parse()
            .map(San::Ip)
            .unwrap_or_else(|_| San::Dns(s.to_string()))
    }
}

impl Serialize for San {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Dns(d) => write!(f, "DNS:{d}"),
        }
    }
}

/// What a leaf certificate is made of. Everything here feeds the inputs hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeafDef {
    /// Certificate id (`kubelet` for every kubelet certificate).
    pub id: &'static str,
    /// File stem under ssl/.
    pub stem: String,
    /// For per-host certificates (kubelet): the inventory host it belongs to.
    pub host: Option<String>,
    pub ca: CaKind,
    pub cn: String,
    pub orgs: Vec<String>,
    /// Sorted, deduplicated: reordering hosts in the inventory reissues nothing.
    pub sans: Vec<San>,
    pub server_auth: bool,
    pub client_auth: bool,
}

/// Host roles that gate which files a host may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Etcd,
    Master,
    Node,
}

/// Who may receive each id (`None`: not a known id). An empty list: deploy machine only.
pub fn allowed_roles(id: &str) -> Option<&'static [Role]> {
    use Role::*;
    Some(match id {
        "ca" => &[Etcd, Master, Node],
        "etcd-ca" => &[Etcd, Master],
        "ca-key"
        | "encryption-config"
        | "front-proxy-ca"
        | "sa"
        | "kubernetes"
        | "apiserver-etcd-client"
        | "apiserver-kubelet-client"
        | "aggregator-proxy"
        | "admin"
        | "kube-controller-manager"
        | "kube-scheduler" => &[Master],
        "etcd" => &[Etcd],
        "kube-proxy" | "kubelet" => &[Node],
        "etcd-client" => &[],
        _ => return None,
    })
}

/// Every id `cert_files` knows, for error messages and docs.
pub const CERT_IDS: &[&str] = &[
    "ca",
    "ca-key",
    "etcd-ca",
    "front-proxy-ca",
    "sa",
    "etcd",
    "kubernetes",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "aggregator-proxy",
    "admin",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "etcd-client",
];

/// Roles of an inventory host in this spec.
pub fn roles_of(spec: &PkiSpec, host: &str) -> Vec<Role> {
    let mut r = Vec::new();
    if spec.etcd.iter().any(|m| m.host == host) {
        r.push(Role::Etcd);
    }
    if spec.masters.iter().any(|m| m.host == host) {
        r.push(Role::Master);
    }
    if spec.nodes.iter().any(|m| m.host == host) {
        r.push(Role::Node);
    }
    r
}

fn canonical(mut sans: Vec<San>) -> Vec<San> {
    sans.sort();
    sans.dedup();
    sans
}

fn name_san(name: &str) -> Option<San> {
    match San::parse(name) {
        San::Dns(d) if !is_dns_name(&d) => None,
        s => Some(s),
    }
}

fn leaf(
    id: &'static str,
    ca: CaKind,
    cn: &str,
    orgs: &[&str],
    sans: Vec<San>,
    server: bool,
    client: bool,
) -> LeafDef {
    LeafDef {
        id,
        stem: id.to_string(),
        host: None,
        ca,
        cn: cn.to_string(),
        orgs: orgs.iter().map(|s| s.to_string()).collect(),
        sans: canonical(sans),
        server_auth: server,
        client_auth: client,
    }
}

/// Every leaf certificate the spec calls for, in a stable order.
pub fn leaves(spec: &PkiSpec) -> Result<Vec<LeafDef>, PkiError> {
    let loopback = San::Ip(IpAddr::from([127, 0, 0, 1]));

    let mut etcd_sans = vec![loopback.clone(), San::Dns("localhost".into())];
    for m in &spec.etcd {
        etcd_sans.push(San::Ip(m.ip));
        etcd_sans.extend(name_san(&m.name));
    }

    let domain = &spec.cluster_dns_domain;
    let mut api_sans = vec![loopback.clone(), San::Ip(spec.service_ip()?)];
    api_sans.extend(spec.masters.iter().map(|m| San::Ip(m.ip)));
    api_sans.extend(spec.vips.iter().map(|ip| San::Ip(*ip)));
    api_sans.extend(spec.master_cert_hosts.iter().map(|h| San::parse(h)));
    for d in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        api_sans.push(San::Dns(d.into()));
    }
    api_sans.push(San::Dns(format!("kubernetes.default.svc.{domain}")));

    let mut out = vec![
        leaf("etcd", CaKind::Etcd, "etcd", &[], etcd_sans, true, true),
        leaf(
            "kubernetes",
            CaKind::Cluster,
            "kubernetes",
            &[],
            api_sans,
            true,
            false,
        ),
        leaf(
            "apiserver-etcd-client",
            CaKind::Etcd,
            "kube-apiserver-etcd-client",
            &[],
            vec![],
            false,
            true,
        ),
        // Not system:masters: the kube-master role binds this user to the one ClusterRole
        // it needs on kubelets (system:kubelet-api-admin: logs, exec, port-forward, metrics).
        leaf(
            "apiserver-kubelet-client",
            CaKind::Cluster,
            "kube-apiserver-kubelet-client",
            &[],
            vec![],
            false,
            true,
        ),
        leaf(
            "aggregator-proxy",
            CaKind::FrontProxy,
            "aggregator",
            &[],
            vec![],
            false,
            true,
        ),
        leaf(
            "admin",
            CaKind::Cluster,
            "admin",
            &["system:masters"],
            vec![],
            false,
            true,
        ),
        leaf(
            "kube-controller-manager",
            CaKind::Cluster,
            "system:kube-controller-manager",
            &["system:kube-controller-manager"],
            vec![],
            false,
            true,
        ),
        leaf(
            "kube-scheduler",
            CaKind::Cluster,
            "system:kube-scheduler",
            &["system:kube-scheduler"],
            vec![],
            false,
            true,
        ),
        // Kubernetes' default binding `system:node-proxier` names the user system:kube-proxy.
        leaf(
            "kube-proxy",
            CaKind::Cluster,
            "system:kube-proxy",
            &[],
            vec![],
            false,
            true,
        ),
        leaf(
            "etcd-client",
            CaKind::Etcd,
            "etcd-client",
            &[],
            vec![],
            false,
            true,
        ),
    ];
    for n in &spec.nodes {
        let mut sans = vec![San::Ip(n.ip)];
        sans.extend(name_san(&n.name));
        let mut l = leaf(
            "kubelet",
            CaKind::Cluster,
            &format!("system:node:{}", n.name),
            &["system:nodes"],
            sans,
            true,
            true,
        );
        l.stem = format!("kubelet-{}", n.name);
        l.host = Some(n.host.clone());
        out.push(l);
    }
    Ok(out)
}
