//! The etcd client tools `ezk backup`, `restore`, `add-etcd` and `del-etcd` run on the deploy
//! machine: etcdctl (and etcdutl, where the artifact set has it) from the artifact store, with
//! the cluster's etcd client certificate, against each member over TLS; and the membership
//! they read (`member list`, each member's health, the quorum).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::Error;
use crate::inventory::Inventory;
use crate::plan::DeployFiles;
use crate::session::Session;

/// What `snapshot status` says of a snapshot file.
#[derive(Debug, serde::Deserialize)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// The etcd client tools of a cluster's artifact set, and its client certificate.
pub struct EtcdTools {
    pub etcdctl: PathBuf,
    /// etcdutl (etcd 3.5+), which owns `snapshot status`/`restore` there; etcd 3.4's etcdctl
    /// does both itself.
    pub etcdutl: Option<PathBuf>,
    ssl: PathBuf,
    /// The CA file the members are verified with (`Pki::etcd_trust_path`).
    trust: PathBuf,
}

impl EtcdTools {
    pub fn for_cluster(session: &Session) -> Result<EtcdTools, Error> {
        // Issues or reuses the certificates (the etcd client one among them) and opens the store.
        let files = session.files()?;
        let etcdctl = files.binary("etcdctl")?.path;
        let provides_etcdutl = files
            .k8s_ver
            .as_deref()
            .and_then(|v| files.store.manifest().set(v).ok())
            .is_some_and(|(_, set)| set.provides("etcdutl"));
        let etcdutl = if provides_etcdutl { Some(files.binary("etcdutl")?.path) } else { None };
        Ok(EtcdTools { etcdctl, etcdutl, ssl: session.dir().join("ssl"), trust: files.pki.etcd_trust_path() })
    }

    /// etcdctl against one member, over TLS with the cluster's etcd client certificate.
    pub fn etcdctl(&self, endpoint: &str, args: &[&str]) -> std::io::Result<Output> {
        Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", self.trust.display()))
            .arg(format!("--cert={}", self.ssl.join("etcd-client.pem").display()))
            .arg(format!("--key={}", self.ssl.join("etcd-client-key.pem").display()))
            .arg("--dial-timeout=3s")
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// The tool that owns `snapshot status`/`restore`: etcdutl where the set has it.
    pub fn snapshot_tool(&self) -> &Path {
        self.etcdutl.as_ref().unwrap_or(&self.etcdctl)
    }

    /// `snapshot status` of a local snapshot file (etcdutl where the set has it).
    pub fn status(&self, file: &Path) -> Result<SnapshotStatus, String> {
        let tool = self.snapshot_tool();
        let out = Command::new(tool)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", tool.display()))?;
        if !out.status.success() {
            return Err(format!("{} is not a valid etcd snapshot: {}", file.display(), text(&out)));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{}: snapshot status said {:?}: {e}", file.display(), text(&out)))
    }
}

/// One member as `etcdctl member list -w json` gives it (a member added but not started yet
/// has no name and no client URL).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Member {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
}

impl Member {
    /// The host of its first peer URL (as the inventory names it: ezk's members advertise
    /// `https://<inventory_hostname>:<ETCD_PEER_PORT>`).
    pub fn host(&self) -> String {
        self.peer_urls.first().map(|u| url_host(u)).unwrap_or_default()
    }
    /// The ID as `member remove` takes it.
    pub fn hex_id(&self) -> String {
        format!("{:x}", self.id)
    }
}

/// `https://10.0.0.1:2380` → `10.0.0.1` (`[fd00::1]` → `fd00::1`).
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string()
}

#[derive(serde::Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<Member>,
}

impl EtcdTools {
    /// The cluster's members, from the first of `endpoints` that answers `member list`.
    pub fn members(&self, endpoints: &[String]) -> Result<Vec<Member>, Error> {
        let mut tried = Vec::new();
        for ep in endpoints {
            let out = self.etcdctl(ep, &["--command-timeout=5s", "member", "list", "-w", "json"])?;
            if out.status.success() {
                let list: MemberList = serde_json::from_slice(&out.stdout)
                    .map_err(|e| format!("{ep}: member list said {:?}: {e}", text(&out)))?;
                return Ok(list.members);
            }
            tried.push(format!("{ep}: {}", text(&out)));
        }
        Err(format!("no etcd member answered `member list`:\n  {}", tried.join("\n  ")).into())
    }

    /// Is the member at `endpoint` healthy (`endpoint health`: a linearizable read, so it
    /// answers only inside a cluster that has a leader)? Err: what etcdctl said.
    pub fn health(&self, endpoint: &str) -> Result<(), String> {
        let out = self.etcdctl(endpoint, &["--command-timeout=5s", "endpoint", "health"]).map_err(|e| e.to_string())?;
        if out.status.success() { Ok(()) } else { Err(text(&out)) }
    }
}

impl EtcdTools {
    /// The member ID of the cluster's leader, as the member at `endpoint` sees it
    /// (`endpoint status`). Err: what etcdctl said.
    pub fn leader(&self, endpoint: &str) -> Result<u64, String> {
        let out = self.etcdctl(endpoint, &["--command-timeout=5s", "endpoint", "status", "-w", "json"]).map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(text(&out));
        }
        parse_leader(&out.stdout).ok_or_else(|| format!("{endpoint}: endpoint status said {:?}", text(&out)))
    }

    /// Hand the leadership from the member at `endpoint` (the leader) to member `to`.
    pub fn move_leader(&self, endpoint: &str, to: u64) -> Result<(), String> {
        let out = self
            .etcdctl(endpoint, &["--command-timeout=15s", "move-leader", &format!("{to:x}")])
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(()) } else { Err(text(&out)) }
    }
}

/// The leader's ID in `endpoint status -w json` output (`[{"Status": {"leader": N, …}}]`).
fn parse_leader(json: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v.get(0)?.get("Status")?.get("leader")?.as_u64()
}

/// How many members must be up for a cluster of `n` to answer: a majority.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// `https://<member>:<ETCD_CLIENT_PORT>` of every etcd member, in inventory order.
pub fn endpoints(inv: &Inventory) -> Vec<String> {
    let members = inv.groups.get("etcd").cloned().unwrap_or_default();
    members
        .iter()
        .map(|h| {
            let port = inv.var_str(h, "ETCD_CLIENT_PORT").unwrap_or_else(|| "2379".into());
            format!("https://{h}:{port}")
        })
        .collect()
}

/// A tool's stdout and stderr, as one trimmed text.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string()
}

/// `clusters/<name>/backup/`, created 0700.
pub fn backup_dir(cluster_dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = cluster_dir.join("backup");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_from_endpoint_status() {
        // etcd 3.4's etcdctl, `endpoint status -w json` (trimmed).
        let json = br#"[{"Endpoint":"https://198.18.5.13:2379","Status":{"header":{"cluster_id":17237436991929493444,"member_id":9372538179322589801,"revision":9,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":10501334649042878790,"raftIndex":16,"raftTerm":2}}]"#;
        assert_eq!(parse_leader(json), Some(10501334649042878790));
        assert_eq!(parse_leader(b"[]"), None);
    }

    #[test]
    fn a_members_host_is_its_peer_urls_and_its_id_is_hex_for_member_remove() {
        let list: MemberList = serde_json::from_str(
            r#"{"header":{"cluster_id":1},"members":[{"ID":10501334649042878790,"name":"etcd-10.0.0.1","peerURLs":["https://10.0.0.1:2380"],"clientURLs":["https://10.0.0.1:2379"]},{"ID":17,"peerURLs":["https://[fd00::2]:2380"]}]}"#,
        )
        .unwrap();
        assert_eq!(list.members[0].host(), "10.0.0.1");
        assert_eq!(list.members[0].hex_id(), "91bc3c398fb3c146");
        assert_eq!(list.members[1].host(), "fd00::2");
        assert_eq!(list.members[1].name, "", "an unstarted member has no name");
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
    }
}
