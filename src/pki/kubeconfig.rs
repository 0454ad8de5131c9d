//! Kubeconfig files (YAML, certificates embedded as base64), shaped like `kubectl config`
//! writes them, with CLUSTER_NAME and CONTEXT_NAME from config.yml.

use serde::Serialize;

use super::cert_ids::Server;

use super::error::PkiError;
use super::{CertFiles, Pki};

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a, ClusterBody>>,
    contexts: Vec<Named<'a, ContextBody<'a>>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
    preferences: serde_yaml::Mapping,
    users: Vec<Named<'a, UserBody>>,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct ClusterBody {
    cluster: ClusterInner,
}

#[derive(Serialize)]
struct ClusterInner {
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
    server: String,
}

#[derive(Serialize)]
struct ContextBody<'a> {
    context: ContextInner<'a>,
}

#[derive(Serialize)]
struct ContextInner<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct UserBody {
    user: UserInner,
}

#[derive(Serialize)]
struct UserInner {
    #[serde(rename = "client-certificate-data")]
    cert_data: String,
    #[serde(rename = "client-key-data")]
    key_data: String,
}

/// What goes into one kubeconfig.
pub struct KubeconfigInput<'a> {
    pub cluster: &'a str,
    pub context: &'a str,
    pub user: &'a str,
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

/// Render a kubeconfig with one cluster, one user, one context (the current one).
pub fn render(i: &KubeconfigInput<'_>) -> String {
    let kc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: i.cluster,
            body: ClusterBody {
                cluster: ClusterInner {
                    ca_data: base64(i.ca_pem.as_bytes()),
                    server: i.server.to_string(),
                },
            },
        }],
        contexts: vec![Named {
            name: i.context,
            body: ContextBody {
                context: ContextInner {
                    cluster: i.cluster,
                    user: i.user,
                },
            },
        }],
        current_context: i.context,
        preferences: serde_yaml::Mapping::new(),
        users: vec![Named {
            name: i.user,
            body: UserBody {
                user: UserInner {
                    cert_data: base64(i.cert_pem.as_bytes()),
                    key_data: base64(i.key_pem.as_bytes()),
                },
            },
        }],
    };
    serde_yaml::to_string(&kc).expect("kubeconfig serializes")
}

/// `https://host:port`, with brackets for IPv6.
pub fn server_url(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(a) => format!("https://{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("https://[{a}]:{port}"),
    }
}

/// Standard base64 with padding (RFC 4648) — the only encoding kubeconfigs need; not worth a crate.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Which server each kubeconfig points at, and the kubeconfigs a host receives.
impl Pki {
    /// Kubeconfig `name` (an id of the catalog with a kubeconfig) for `host`, pointing where
    /// the catalog says: admin → VIP:EX_APISERVER_PORT (else the first master:SECURE_PORT);
    /// controller-manager and scheduler → their own master's apiserver (its address:
    /// SECURE_PORT: kube-apiserver binds the host address, and 127.0.0.1:SECURE_PORT is kube-lb
    /// on a master that is also a node); kube-proxy and kubelet → the node-local kube-lb.
    pub fn kubeconfig(&self, name: &str, host: &str) -> Result<String, PkiError> {
        let Some((_, to)) = super::kubeconfigs().find(|(n, _)| *n == name) else {
            return Err(PkiError::Unknown {
                id: name.into(),
                known: super::kubeconfigs().map(|(n, _)| n).collect::<Vec<_>>().join(", "),
            });
        };
        let files = self.cert_files(name, host)?;
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let server = match to {
            Server::Admin => self.admin_server(),
            Server::OwnMaster => {
                let me = self.spec.masters.iter().find(|m| m.host == host);
                server_url(me.map_or(loopback, |m| m.ip), self.spec.secure_port)
            }
            Server::NodeLb => server_url(loopback, self.spec.node_lb_port),
        };
        let user = match name {
            "kubelet" => self.kubelet_def(host)?.cn.clone(),
            other => other.to_string(),
        };
        Ok(self.render_kubeconfig(&user, &server, &files))
    }

    /// The admin kubeconfig for the deploy machine (same as a master's).
    pub fn local_admin_kubeconfig(&self) -> Result<String, PkiError> {
        let files = self.files_for("admin", "admin")?;
        Ok(self.render_kubeconfig("admin", &self.admin_server(), &files))
    }

    fn render_kubeconfig(&self, user: &str, server: &str, f: &CertFiles) -> String {
        render(&KubeconfigInput {
            cluster: &self.spec.cluster_name,
            context: &self.spec.context_name,
            user,
            server,
            ca_pem: f.ca_pem.as_deref().unwrap_or_default(),
            cert_pem: &f.cert_pem,
            key_pem: f.key_pem.as_ref().map(|k| k.expose()).unwrap_or_default(),
        })
    }

    fn admin_server(&self) -> String {
        match self.spec.vips.first() {
            Some(vip) => server_url(*vip, self.spec.ex_apiserver_port),
            None => server_url(self.spec.masters[0].ip, self.spec.secure_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn ipv6_server_is_bracketed() {
        assert_eq!(
            server_url("fd00::1".parse().unwrap(), 6443),
            "https://[fd00::1]:6443"
        );
    }
}
