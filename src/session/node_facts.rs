//! Facts read from the running cluster for the roles that need them (`meta.yml`
//! `facts: [nodes]`): every registered node's pod subnet (given by the controller-manager) and
//! address, as templates see them in `k8s_nodes` (node name → `{pod_cidr, address}`).
//!
//! They are read from the deploy machine with the artifact set's kubectl and the cluster's admin
//! kubeconfig (`clusters/<name>/kubectl.kubeconfig`), the way kubeasz's network roles ask the
//! API from its deploy node. Nothing on a host changes for it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Error, Session};

/// One node as the network roles see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFact {
    /// `spec.podCIDR` ("" until the controller-manager gives it one).
    pub pod_cidr: String,
    /// The node's InternalIP.
    pub address: String,
}

/// The API's node list (`GET /api/v1/nodes`, as `kubectl get nodes -o json` prints it) → node
/// name → fact.
pub fn parse_nodes(json: &[u8]) -> Result<BTreeMap<String, NodeFact>, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("kubectl's node list: {e}"))?;
    let mut out = BTreeMap::new();
    for n in v["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(name) = n["metadata"]["name"].as_str() else { continue };
        let address = n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
            .and_then(|x| x["address"].as_str())
            .unwrap_or_default();
        out.insert(
            name.to_string(),
            NodeFact { pod_cidr: n["spec"]["podCIDR"].as_str().unwrap_or_default().to_string(), address: address.to_string() },
        );
    }
    Ok(out)
}

impl Session {
    /// Read the nodes from the cluster's API for later plans (`k8s_nodes`). With `wait`, keep
    /// asking until every kube_master and kube_node host has registered and has a pod subnet,
    /// for at most that long, then say which do not; without, take what there is (nothing when
    /// the API does not answer: a cluster not set up yet).
    pub fn fetch_node_facts(&mut self, wait: Option<Duration>) -> Result<(), Error> {
        let mut want: Vec<String> = Vec::new();
        for h in ["kube_master", "kube_node"].iter().flat_map(|g| self.inventory.hosts_in(g)) {
            let n = self.node_name(h);
            if !want.contains(&n) {
                want.push(n);
            }
        }
        let start = Instant::now();
        loop {
            let got = self.read_nodes();
            let missing: Vec<&String> = match &got {
                Ok(nodes) => want.iter().filter(|n| nodes.get(*n).is_none_or(|f| f.pod_cidr.is_empty() || f.address.is_empty())).collect(),
                Err(_) => want.iter().collect(),
            };
            let Some(limit) = wait else {
                self.nodes = Some(minijinja::Value::from_serialize(got.unwrap_or_default()));
                return Ok(());
            };
            if missing.is_empty() {
                self.nodes = Some(minijinja::Value::from_serialize(got.unwrap_or_default()));
                return Ok(());
            }
            if start.elapsed() >= limit {
                let why = match got {
                    Err(e) => format!("the API did not answer: {e}"),
                    Ok(_) => format!("not registered or without a pod subnet: {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                };
                return Err(format!(
                    "cluster {}: the nodes' pod subnets are needed for the network and {why} (after {}s). Run step 05 (kube-node) first; a node without a pod subnet means the controller-manager cannot give it one (CLUSTER_CIDR too small for NODE_CIDR_LEN?)",
                    self.name(),
                    limit.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// K8S_NODENAME of inventory host `host`.
    pub fn node_name(&self, host: &str) -> String {
        self.inventory.var_str(host, "K8S_NODENAME").unwrap_or_else(|| host.to_string())
    }

    /// The node list through the artifact set's kubectl and the admin kubeconfig. The API's
    /// address is tried first with a short TCP connect: on a cluster being set up from bare
    /// hosts it does not exist yet, and kubectl would spend its whole request timeout (several
    /// times over, with its discovery) finding that out. `get --raw` skips the discovery.
    pub(crate) fn read_nodes(&self) -> Result<BTreeMap<String, NodeFact>, String> {
        let kubeconfig = self.dir().join("kubectl.kubeconfig");
        if let Some(server) = kubeconfig_server(&kubeconfig)
            && !answers(&server, API_CONNECT_TIMEOUT)
        {
            return Err(format!("the API at {server} does not answer"));
        }
        let files = self.files().map_err(|e| e.to_string())?;
        let kubectl = crate::plan::DeployFiles::binary(files, "kubectl")?;
        let out = Command::new(&kubectl.path)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--request-timeout=5s", "get", "--raw", "/api/v1/nodes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", kubectl.path.display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        parse_nodes(&out.stdout)
    }
}

/// How long the API's address gets to accept a TCP connection before it is taken as not up.
const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `server:` of the kubeconfig's first cluster (`https://host:port`), if it can be read.
fn kubeconfig_server(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    v["clusters"][0]["cluster"]["server"].as_str().map(str::to_string)
}

/// Whether `https://host:port` (port 443 when absent) accepts a TCP connection within `timeout`.
/// A URL this cannot read counts as answering: kubectl then says what is wrong with it.
fn answers(server: &str, timeout: Duration) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(rest) = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://")) else { return true };
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let Ok(addrs) = with_port.to_socket_addrs() else { return true };
    addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_and_without_a_pod_subnet() {
        let json = br#"{"items":[
          {"metadata":{"name":"a"},"spec":{"podCIDR":"10.1.0.0/24"},"status":{"addresses":[{"type":"Hostname","address":"a"},{"type":"InternalIP","address":"198.18.1.11"}]}},
          {"metadata":{"name":"b"},"spec":{},"status":{"addresses":[{"type":"InternalIP","address":"198.18.1.12"}]}}]}"#;
        let n = parse_nodes(json).unwrap();
        assert_eq!(n["a"], NodeFact { pod_cidr: "10.1.0.0/24".into(), address: "198.18.1.11".into() });
        assert_eq!(n["b"].pod_cidr, "");
    }

    #[test]
    fn an_api_address_that_accepts_answers_and_a_closed_port_does_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(answers(&format!("https://127.0.0.1:{port}"), Duration::from_secs(2)));
        drop(l);
        assert!(!answers(&format!("https://127.0.0.1:{port}/"), Duration::from_secs(2)));
        // Not a URL this reads: left to kubectl to report.
        assert!(answers("unix:///x", Duration::from_secs(1)));
    }
}
