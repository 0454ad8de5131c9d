//! The catalog: every id the PKI hands out (certificates, CAs, key pairs, kubeconfigs, secret
//! files), what goes into each, which CA signs it, which hosts may receive it and, for a
//! kubeconfig, which server it points at — all in one table, [`IDS`]. Roles name an id
//! (`cert: {name: …}`, `kubeconfig: {name: …}`, `secret: {name: …}`); `ezk certs`, its
//! `--help` and every check of an id read this table, and nothing else lists ids. Pure data
//! derived from a `PkiSpec`; no I/O.
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

/// Which names a leaf certificate carries besides its CN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sans {
    None,
    /// Every etcd member's address and name, 127.0.0.1 and localhost.
    EtcdMembers,
    /// What clients call kube-apiserver by: 127.0.0.1, the service IP, every master, the VIPs,
    /// `MASTER_CERT_HOSTS`, `kubernetes.default.svc.<domain>` and its short forms.
    Apiserver,
    /// The node's own address and name (one certificate per node).
    Node,
}

/// Where a kubeconfig's server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The VIP on EX_APISERVER_PORT when there is an ex_lb, else the first master.
    Admin,
    /// The master's own kube-apiserver (it binds the host address; 127.0.0.1:SECURE_PORT is
    /// kube-lb on a master that is also a node).
    OwnMaster,
    /// The node-local kube-lb on 127.0.0.1.
    NodeLb,
}

/// What an id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A CA's certificate only.
    Ca(CaKind),
    /// The cluster CA's certificate with its key.
    CaWithKey,
    /// The service-account key pair (`sa.pub` as the "certificate", `sa.key`).
    SaKeyPair,
    /// A secret file made on the deploy machine (`secret:` module; see `encryption`).
    Secret,
    /// A certificate ezk issues; `kubeconfig`: this id is also a kubeconfig, pointing there.
    Leaf {
        ca: CaKind,
        /// Common name; for `Sans::Node` ids, `{node}` stands for the node name.
        cn: &'static str,
        orgs: &'static [&'static str],
        sans: Sans,
        server_auth: bool,
        client_auth: bool,
        kubeconfig: Option<Server>,
    },
}

/// One id of the table.
#[derive(Debug, Clone, Copy)]
pub struct IdDef {
    pub id: &'static str,
    pub kind: IdKind,
    /// Host roles that may receive it; empty: the deploy machine only.
    pub holders: &'static [Role],
    /// What it is for, as `ezk certs --help` shows it.
    pub what: &'static str,
}

const fn leaf(
    ca: CaKind,
    cn: &'static str,
    orgs: &'static [&'static str],
    sans: Sans,
    (server_auth, client_auth): (bool, bool),
    kubeconfig: Option<Server>,
) -> IdKind {
    IdKind::Leaf { ca, cn, orgs, sans, server_auth, client_auth, kubeconfig }
}

const CLIENT: (bool, bool) = (false, true);

/// Every id, in issuing order.
#[rustfmt::skip]
pub const IDS: &[IdDef] = {
    use CaKind as C;
    use Role as R;
    &[
        IdDef { id: "ca", kind: IdKind::Ca(C::Cluster), holders: &[R::Etcd, R::Master, R::Node], what: "the cluster CA certificate (ca.pem)" },
        IdDef { id: "ca-key", kind: IdKind::CaWithKey, holders: &[R::Master], what: "the cluster CA with its key: kube-controller-manager signs CSRs with it" },
        IdDef { id: "etcd-ca", kind: IdKind::Ca(C::Etcd), holders: &[R::Etcd, R::Master], what: "the etcd CA certificate" },
        IdDef { id: "front-proxy-ca", kind: IdKind::Ca(C::FrontProxy), holders: &[R::Master], what: "the front-proxy CA certificate" },
        IdDef { id: "sa", kind: IdKind::SaKeyPair, holders: &[R::Master], what: "service-account token signing key pair (sa.key, sa.pub)" },
        IdDef { id: "encryption-config", kind: IdKind::Secret, holders: &[R::Master], what: "EncryptionConfiguration with the Secrets key (ssl/encryption.key)" },
        IdDef { id: "etcd", kind: leaf(C::Etcd, "etcd", &[], Sans::EtcdMembers, (true, true), None), holders: &[R::Etcd], what: "etcd server, peer and local client certificate" },
        IdDef { id: "kubernetes", kind: leaf(C::Cluster, "kubernetes", &[], Sans::Apiserver, (true, false), None), holders: &[R::Master], what: "kube-apiserver serving certificate" },
        IdDef { id: "apiserver-etcd-client", kind: leaf(C::Etcd, "kube-apiserver-etcd-client", &[], Sans::None, CLIENT, None), holders: &[R::Master], what: "kube-apiserver to etcd" },
        // Not system:masters: the kube-master role binds this user to the one ClusterRole it
        // needs on kubelets (system:kubelet-api-admin: logs, exec, port-forward, metrics).
        IdDef { id: "apiserver-kubelet-client", kind: leaf(C::Cluster, "kube-apiserver-kubelet-client", &[], Sans::None, CLIENT, None), holders: &[R::Master], what: "kube-apiserver to kubelets (RBAC: system:kubelet-api-admin)" },
        IdDef { id: "aggregator-proxy", kind: leaf(C::FrontProxy, "aggregator", &[], Sans::None, CLIENT, None), holders: &[R::Master], what: "front-proxy client of kube-apiserver (aggregated APIs)" },
        IdDef { id: "admin", kind: leaf(C::Cluster, "admin", &["system:masters"], Sans::None, CLIENT, Some(Server::Admin)), holders: &[R::Master], what: "cluster admin (also the deploy machine's kubectl.kubeconfig)" },
        IdDef { id: "kube-controller-manager", kind: leaf(C::Cluster, "system:kube-controller-manager", &["system:kube-controller-manager"], Sans::None, CLIENT, Some(Server::OwnMaster)), holders: &[R::Master], what: "kube-controller-manager" },
        IdDef { id: "kube-scheduler", kind: leaf(C::Cluster, "system:kube-scheduler", &["system:kube-scheduler"], Sans::None, CLIENT, Some(Server::OwnMaster)), holders: &[R::Master], what: "kube-scheduler" },
        // Kubernetes' default binding `system:node-proxier` names the user system:kube-proxy.
        IdDef { id: "kube-proxy", kind: leaf(C::Cluster, "system:kube-proxy", &[], Sans::None, CLIENT, Some(Server::NodeLb)), holders: &[R::Node], what: "kube-proxy" },
        IdDef { id: "kubelet", kind: leaf(C::Cluster, "system:node:{node}", &["system:nodes"], Sans::Node, (true, true), Some(Server::NodeLb)), holders: &[R::Node], what: "kubelet client and serving certificate, one per node (that node only)" },
        IdDef { id: "etcd-client", kind: leaf(C::Etcd, "etcd-client", &[], Sans::None, CLIENT, None), holders: &[], what: "etcdctl on the deploy machine (backup, restore)" },
    ]
};

/// The table entry of `id`.
pub fn id_def(id: &str) -> Option<&'static IdDef> {
    IDS.iter().find(|d| d.id == id)
}

/// Who may receive each id (`None`: not a known id). An empty list: deploy machine only.
pub fn allowed_roles(id: &str) -> Option<&'static [Role]> {
    id_def(id).map(|d| d.holders)
}

/// Every id a `cert` task may name (everything but the secret files).
pub fn cert_ids() -> impl Iterator<Item = &'static str> {
    IDS.iter().filter(|d| d.kind != IdKind::Secret).map(|d| d.id)
}

/// Every id that is also a kubeconfig, with the server it points at.
pub fn kubeconfigs() -> impl Iterator<Item = (&'static str, Server)> {
    IDS.iter().filter_map(|d| match d.kind {
        IdKind::Leaf { kubeconfig: Some(s), .. } => Some((d.id, s)),
        _ => None,
    })
}

/// Every secret file id.
pub fn secret_ids() -> impl Iterator<Item = &'static str> {
    IDS.iter().filter(|d| d.kind == IdKind::Secret).map(|d| d.id)
}

/// The table as `ezk certs --help` shows it.
pub fn help_table() -> String {
    let mut s = String::from("IDS (what roles name in cert:, kubeconfig: and secret: tasks)\n");
    for d in IDS {
        let holders = if d.holders.is_empty() {
            "deploy machine".to_string()
        } else {
            d.holders.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>().join(", ")
        };
        let kc = matches!(d.kind, IdKind::Leaf { kubeconfig: Some(_), .. });
        s.push_str(&format!("  {:<26}{}{} [{holders}]\n", d.id, d.what, if kc { " (+ kubeconfig)" } else { "" }));
    }
    s
}

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

/// Every leaf certificate the spec calls for, in a stable order (the table's, a `kubelet`
/// certificate per node last).
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

    let mut out = Vec::new();
    let mut per_node = Vec::new();
    for d in IDS {
        let IdKind::Leaf { ca, cn, orgs, sans, server_auth, client_auth, .. } = d.kind else {
            continue;
        };
        let make = |cn: String, sans: Vec<San>| LeafDef {
            id: d.id,
            stem: d.id.to_string(),
            host: None,
            ca,
            cn,
            orgs: orgs.iter().map(|s| s.to_string()).collect(),
            sans: canonical(sans),
            server_auth,
            client_auth,
        };
        match sans {
            Sans::None => out.push(make(cn.to_string(), vec![])),
            Sans::EtcdMembers => out.push(make(cn.to_string(), etcd_sans.clone())),
            Sans::Apiserver => out.push(make(cn.to_string(), api_sans.clone())),
            Sans::Node => {
                for n in &spec.nodes {
                    let mut sans = vec![San::Ip(n.ip)];
                    sans.extend(name_san(&n.name));
                    let mut l = make(cn.replace("{node}", &n.name), sans);
                    l.stem = format!("{}-{}", d.id, n.name);
                    l.host = Some(n.host.clone());
                    per_node.push(l);
                }
            }
        }
    }
    out.extend(per_node);
    Ok(out)
}
