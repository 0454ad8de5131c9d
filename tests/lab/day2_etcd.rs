//! add-etcd and del-etcd on the Kubernetes lab (3 etcd members on the masters; after
//! day2_master, which leaves the spare host as it found it): a 4th member is refused without
//! --allow-even, the spare host joins with it (member list, health over TLS, every apiserver's
//! --etcd-servers naming it, data written before readable through it) and leaves again — with
//! an etcd client and the API through the VIP read all along, no request failing, and no old
//! member restarted. The inventory ends as it began.
//!
//! Then del-etcd of members that are not etcd-only (kubeasz's default: etcd on the masters) and
//! of one that is dead: with the spare host a 4th member again, a master's member is removed
//! (its kube-apiserver keeps its own etcd CA file and client certificate and stays Ready, now on the
//! other members), then the spare host is powered off and its dead member removed through the
//! others (its clean skipped, said so with how to clean it; cleaned so once it is back), and the
//! master joins again: 3 members, the inventory and the data as they were.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::day2::{spare, spare_sh};
use crate::support::{json_docs, kubectl_ok, poll_vip};
use crate::kube_master::{MASTERS, ensure_control_plane};
use crate::kube_node::wait_all_ready;
use crate::steps_support::{assert_cluster_healthy, etcdctl, raft_term, text};
use crate::support::{hosts_of, ini_sections, section, with_cluster_lab};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test { name: "day2_etcd::add_etcd_then_del_etcd_keep_the_quorum_and_the_data", run: add_etcd_then_del_etcd_keep_the_quorum_and_the_data },
    Test { name: "day2_etcd::del_etcd_of_a_master_and_of_a_dead_member", run: del_etcd_of_a_master_and_of_a_dead_member },
];

const KEY: &str = "/ezk-test/day2-etcd";

/// The `[etcd]` section's hosts.
fn etcd_hosts(inv: &str) -> Vec<String> {
    hosts_of(section(&ini_sections(inv), "etcd"))
}

/// Each old member's etcd InvocationID (changes on every start).
fn etcd_invocations(lab: &Lab, members: &[usize]) -> Vec<String> {
    members.iter().map(|&i| lab.sh(i, "systemctl show -p InvocationID --value etcd")).collect()
}

/// `name peer-host` of every member, sorted.
fn member_list(lab: &Lab, via: &str) -> Vec<String> {
    let out = etcdctl(lab, via, &["member", "list", "-w", "json"]);
    assert!(out.status.success(), "member list: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m["name"].as_str().unwrap_or(""), m["peerURLs"][0].as_str().unwrap_or("")))
        .collect();
    names.sort();
    names
}

/// The member ID of the cluster's leader, as `via` sees it.
fn leader_of(lab: &Lab, via: &str) -> u64 {
    let out = etcdctl(lab, via, &["endpoint", "status", "-w", "json"]);
    assert!(out.status.success(), "endpoint status: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Status"]["leader"].as_u64().expect("a leader")
}

/// The member ID of the member on `host`.
fn member_id(lab: &Lab, via: &str, host: &str) -> u64 {
    let out = etcdctl(lab, via, &["member", "list", "-w", "json"]);
    assert!(out.status.success(), "member list: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = format!("https://{host}:2380");
    v["members"].as_array().unwrap().iter().find(|m| m["peerURLs"][0] == url.as_str()).and_then(|m| m["ID"].as_u64()).expect("member on host")
}

/// Move the leadership to the member on `host` (etcdctl move-leader, sent to the leader).
fn make_leader(lab: &Lab, via: &str, host: &str) {
    let want = member_id(lab, via, host);
    let leader = leader_of(lab, via);
    if leader == want {
        return;
    }
    let out = etcdctl(lab, via, &["member", "list", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leader_host = v["members"].as_array().unwrap().iter().find(|m| m["ID"].as_u64() == Some(leader)).and_then(|m| m["clientURLs"][0].as_str()).expect("the leader's URL");
    let leader_ip = leader_host.trim_start_matches("https://").rsplit_once(':').unwrap().0.to_string();
    let out = etcdctl(lab, &leader_ip, &["move-leader", &format!("{want:x}")]);
    assert!(out.status.success(), "move-leader: {}", text(&out));
    assert_eq!(leader_of(lab, via), want);
}

/// The --etcd-servers of every running kube-apiserver.
fn etcd_servers(lab: &Lab) -> Vec<String> {
    MASTERS
        .iter()
        .map(|&i| {
            let cmd = lab.sh(i, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value kube-apiserver)/cmdline");
            cmd.lines().find_map(|l| l.strip_prefix("--etcd-servers=")).unwrap_or_else(|| panic!("host {i}: {cmd}")).to_string()
        })
        .collect()
}

/// Reads of KEY through the old members (etcdctl balances over them) until `stop`: (reads,
/// failures, last failure).
fn poll_etcd(lab: &Lab, members: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize, String)> {
    let ssl = lab.cluster_dir().join("ssl");
    std::thread::spawn(move || {
        let endpoints = members.iter().map(|m| format!("https://{m}:2379")).collect::<Vec<_>>().join(",");
        let (mut n, mut fails, mut last) = (0, 0, String::new());
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new("/usr/bin/etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoints}"))
                .arg(format!("--cacert={}", ssl.join("etcd-ca.pem").display()))
                .arg(format!("--cert={}", ssl.join("etcd-client.pem").display()))
                .arg(format!("--key={}", ssl.join("etcd-client-key.pem").display()))
                .args(["--dial-timeout=3s", "--command-timeout=5s", "get", KEY, "--print-value-only"])
                .output()
                .unwrap();
            n += 1;
            if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "before" {
                fails += 1;
                last = text(&out);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (n, fails, last)
    })
}

/// Run `args` with an etcd reader and a VIP reader going; both must see no failure.
fn with_readers(lab: &Lab, old: &[String], what: &str, args: &[&str]) -> std::process::Output {
    let stop = Arc::new(AtomicBool::new(false));
    let vip = poll_vip(lab, stop.clone());
    let etcd = poll_etcd(lab, old.to_vec(), stop.clone());
    let term = raft_term(lab, &old[0]);
    let start = std::time::Instant::now();
    let out = lab.ezk(args);
    let secs = start.elapsed().as_secs_f32();
    stop.store(true, Ordering::SeqCst);
    let api = vip.join().unwrap();
    let (en, efails, elast) = etcd.join().unwrap();
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    let n = api.n;
    assert!(n >= 20 && en >= 20, "only {n} API and {en} etcd reads during {what}");
    // etcdctl's own client retries a read that met a leader change; kube-apiserver does not.
    api.assert_served(what, raft_term(lab, &old[0]) - term, 0);
    assert_eq!(efails, 0, "{efails} of {en} etcd reads failed during {what}; last: {elast}");
    println!("  {what}: {secs:.1}s, {n} reads through the VIP ({}) and {en} etcd reads, none failed", api.summary());
    out
}

/// The Kubernetes lab up with every node Ready: its inventory, and its 3 `[etcd]` hosts.
fn three_members(lab: &Lab) -> (String, Vec<String>) {
    ensure_control_plane(lab);
    wait_all_ready(lab, 180);
    let inv = lab.inventory();
    let old = etcd_hosts(&inv);
    assert_eq!(old.len(), 3, "{inv}");
    (inv, old)
}

/// Data written before: a key in etcd (through `via`), a ConfigMap through the API.
fn write_before(lab: &Lab, via: &str) {
    let out = etcdctl(lab, via, &["put", KEY, "before"]);
    assert!(out.status.success(), "{}", text(&out));
    kubectl_ok(lab, &["delete", "configmap", "ezk-day2-etcd", "--ignore-not-found"]);
    kubectl_ok(lab, &["create", "configmap", "ezk-day2-etcd", "--from-literal=written=before"]);
}

/// The data written before, read through member `via` and the API.
fn assert_before(lab: &Lab, via: &str) {
    let out = etcdctl(lab, via, &["get", KEY, "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "before", "{}", text(&out));
    assert_eq!(kubectl_ok(lab, &["get", "configmap", "ezk-day2-etcd", "-o", "jsonpath={.data.written}"]), "before");
}

/// The data written before, read once more and deleted.
fn delete_before(lab: &Lab, via: &str) {
    assert_before(lab, via);
    kubectl_ok(lab, &["delete", "configmap", "ezk-day2-etcd"]);
    etcdctl(lab, via, &["del", KEY]);
}

fn add_etcd_then_del_etcd_keep_the_quorum_and_the_data(_: &Lab) {
    with_cluster_lab(|lab| {
        let (inv_before, old) = three_members(lab);
        let new = spare(lab);
        let old_idx: Vec<usize> = old.iter().map(|ip| lab.hosts.iter().position(|h| &h.ip == ip).unwrap()).collect();
        let via = old[0].clone();
        let members_before = member_list(lab, &via);
        assert_eq!(members_before.len(), 3, "{members_before:?}");
        let ids_before = etcd_invocations(lab, &old_idx);

        write_before(lab, &via);

        // Bad input: refused, nothing written.
        let out = lab.ezk(&["add-etcd", &lab.name, "not-an-ip"]);
        assert!(!out.status.success() && text(&out).contains("IP address"), "{}", text(&out));
        let out = lab.ezk(&["del-etcd", &lab.name, &new.ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("not in [etcd]"), "{}", text(&out));
        // A 4th member without --allow-even: refused with the risk stated, after reading the
        // members (every one healthy), before anything changes.
        let out = lab.ezk(&["add-etcd", &lab.name, &new.ip]);
        let said = text(&out);
        assert!(!out.status.success() && said.contains("4 members is an even count") && said.contains("--allow-even"), "{said}");
        assert!(said.contains("Nothing was changed"), "{said}");
        assert_eq!(lab.inventory(), inv_before);
        assert_eq!(member_list(lab, &via), members_before);

        // --plan: the member add, the new member's unit, each apiserver's new --etcd-servers
        // shown; nothing written, no member added.
        let out = lab.ezk(&["add-etcd", &lab.name, &new.ip, "--allow-even", "--plan"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("would add member") && said.contains("/etc/systemd/system/etcd.service"), "{said}");
        let diff_line = said.lines().filter(|l| l.trim_start().starts_with("+") && l.contains("--etcd-servers=") && l.contains(&format!("https://{}:2379", new.ip))).count();
        assert!(diff_line >= MASTERS.len(), "{said}");
        assert_eq!(lab.inventory(), inv_before, "--plan wrote the inventory");
        assert_eq!(member_list(lab, &via), members_before, "--plan added a member");
        assert_eq!(spare_sh(lab, "systemctl is-active etcd || true"), "inactive");

        // add-etcd, etcd and the API read all along.
        let out = with_readers(lab, &old, "add-etcd", &["add-etcd", &lab.name, &new.ip, "--allow-even", "--json"]);
        // Three runs: 01 on every host, 02 on the new member only, 04 on the masters.
        let docs = json_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 3, "{}", text(&out));
        assert_eq!(docs[1]["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&new.ip], "{}", docs[1]);
        assert_eq!(docs[2]["hosts"].as_object().unwrap().len(), MASTERS.len(), "{}", docs[2]);

        // The members: four, every one healthy over TLS; every apiserver uses it; no old
        // member restarted; the new one joined an existing cluster.
        let members = member_list(lab, &via);
        assert_eq!(members.len(), 4, "{members:?}");
        assert!(members.contains(&format!("etcd-{0} https://{0}:2380", new.ip)), "{members:?}");
        let all: Vec<String> = old.iter().cloned().chain([new.ip.clone()]).collect();
        assert_cluster_healthy(lab, &new.ip, &all, 30);
        for servers in etcd_servers(lab) {
            assert!(servers.contains(&format!("https://{}:2379", new.ip)), "{servers}");
        }
        assert_eq!(etcd_invocations(lab, &old_idx), ids_before, "an old etcd member restarted");
        let unit = spare_sh(lab, "cat /etc/systemd/system/etcd.service");
        assert!(unit.contains("--initial-cluster-state=existing"), "{unit}");
        // Data written before, read through the new member and the API.
        assert_before(lab, &new.ip);

        // The inventory: one line more, at the end of [etcd], the rest as it was.
        let inv = lab.inventory();
        assert_eq!(etcd_hosts(&inv).last(), Some(&new.ip), "{inv}");
        assert_eq!(inv.replacen(&format!("{}\n", new.ip), "", 1), inv_before);

        // Again: converges, changes nothing anywhere.
        let out = lab.ezk(&["add-etcd", &lab.name, &new.ip, "--allow-even", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        for d in json_docs(&String::from_utf8_lossy(&out.stdout)) {
            for (ip, h) in d["hosts"].as_object().unwrap() {
                assert_eq!(h["changed"], 0, "re-run changed {ip}:\n{}", text(&out));
            }
        }
        assert_eq!(member_list(lab, &via).len(), 4);

        // del-etcd: off a terminal it needs --yes; --plan changes nothing; back to 3 is odd.
        let out = lab.ezk(&["del-etcd", &lab.name, &new.ip]);
        assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
        let out = lab.ezk(&["del-etcd", &lab.name, &new.ip, "--plan"]);
        assert!(out.status.success() && text(&out).contains("would remove member"), "{}", text(&out));
        assert_eq!(lab.inventory(), inv, "--plan wrote the inventory");
        assert_eq!(member_list(lab, &via).len(), 4, "--plan removed a member");

        let out = with_readers(lab, &old, "del-etcd", &["del-etcd", &lab.name, &new.ip, "--yes", "--json"]);
        // Three runs: 04 on the masters, the clean of the host, 01 on the others.
        let docs = json_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 3, "{}", text(&out));
        assert_eq!(docs[1]["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&new.ip]);
        for d in [&docs[0], &docs[2]] {
            assert!(d["hosts"].get(&new.ip).is_none(), "{d}");
        }

        // Gone: from the members, the apiservers, the inventory (as it began); its etcd stopped
        // and its data deleted; the others healthy, none restarted; the data still there.
        assert_eq!(member_list(lab, &via), members_before);
        assert_cluster_healthy(lab, &via, &old, 30);
        for servers in etcd_servers(lab) {
            assert!(!servers.contains(&new.ip), "{servers}");
        }
        assert_eq!(lab.inventory(), inv_before);
        assert_eq!(spare_sh(lab, "pgrep -x etcd; for p in /var/lib/etcd /etc/kubernetes/ssl/etcd.pem /etc/systemd/system/etcd.service; do test -e $p && echo $p; done"), "");
        assert_eq!(etcd_invocations(lab, &old_idx), ids_before, "an old etcd member restarted");
        delete_before(lab, &via);
        wait_all_ready(lab, 60);

        // Again: nothing to remove, said so.
        let out = lab.ezk(&["del-etcd", &lab.name, &new.ip, "--yes"]);
        assert!(!out.status.success() && text(&out).contains("not in [etcd]"), "{}", text(&out));
    });
}

/// The spare host's name and IP.
fn spare_ip(lab: &Lab) -> String {
    spare(lab).ip
}

/// What a master still serving after its etcd member left must show: no etcd there, the etcd
/// CA and the apiserver's etcd client certificate kept, its apiserver ready and answering on
/// its own address, its --etcd-servers without itself.
fn assert_master_without_member(lab: &Lab, i: usize) {
    let ip = lab.hosts[i].ip.clone();
    let left = lab.sh(i, "pgrep -x etcd; for p in /var/lib/etcd /etc/kubernetes/ssl/etcd.pem /etc/kubernetes/ssl/etcd-key.pem /etc/kubernetes/ssl/etcd-ca.pem /etc/systemd/system/etcd.service; do test -e $p && echo $p; done; true");
    assert_eq!(left, "", "etcd left on the master {ip}");
    let kept = lab.sh(i, "for p in /etc/kubernetes/ssl/apiserver-etcd-ca.pem /etc/kubernetes/ssl/apiserver-etcd-client.pem /etc/kubernetes/ssl/apiserver-etcd-client-key.pem; do test -s $p && echo $p; done");
    assert_eq!(kept.lines().count(), 3, "the master {ip} lost what its apiserver reads: {kept}");
    let api = format!("/opt/kube/bin/kubectl --kubeconfig /root/.kube/config --server https://{ip}:6443 --request-timeout 5s");
    assert_eq!(lab.sh(i, "systemctl is-active kube-apiserver"), "active");
    assert_eq!(lab.sh(i, &format!("{api} get --raw /readyz")), "ok");
    assert!(lab.sh(i, &format!("{api} get --raw /api/v1/namespaces/kube-system")).starts_with("{\"kind\":\"Namespace\""));
    let servers = etcd_servers(lab);
    assert!(servers.iter().all(|s| !s.contains(&format!("https://{ip}:2379"))), "{servers:?}");
}

fn del_etcd_of_a_master_and_of_a_dead_member(_: &Lab) {
    with_cluster_lab(|lab| {
        let (inv_before, old) = three_members(lab);
        let new = spare_ip(lab);
        // The master whose member leaves: the last of [etcd], so that its add-etcd puts the line
        // back where it was.
        let gone = old[2].clone();
        let gone_i = lab.hosts.iter().position(|h| h.ip == gone).unwrap();
        assert!(MASTERS.contains(&gone_i));
        let stay: Vec<String> = old[..2].to_vec();
        let via = stay[0].clone();
        let members_before = member_list(lab, &via);

        write_before(lab, &via);

        // 4 members: the spare host joins (add-etcd under readers is the test above).
        let out = lab.ezk(&["add-etcd", &lab.name, &new, "--allow-even"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(member_list(lab, &via).len(), 4);

        // A master's member: --plan names what stays on the host and why, changes nothing.
        let out = lab.ezk(&["del-etcd", &lab.name, &gone, "--plan"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("stays a master") && said.contains("apiserver-etcd-ca.pem (--etcd-cafile)"), "{said}");
        assert!(said.contains("would remove member"), "{said}");
        println!("  --plan said: {}", said.lines().find(|l| l.contains("stays a master")).unwrap_or(""));
        assert_eq!(member_list(lab, &via).len(), 4, "--plan removed a member");
        assert_eq!(lab.sh(gone_i, "systemctl is-active etcd"), "active");

        // The leaving member leads (moved there now, so every run takes this path): del-etcd
        // hands the leadership to a member that stays before removing it, and no read fails.
        make_leader(lab, &via, &gone);
        let gone_id = member_id(lab, &via, &gone);

        // del-etcd of the master's member (4 → 3), etcd (through the members that stay) and the
        // API through the VIP read all along.
        let readers: Vec<String> = stay.iter().cloned().chain([new.clone()]).collect();
        let out = with_readers(lab, &readers, "del-etcd of a master's member", &["del-etcd", &lab.name, &gone, "--yes", "--json"]);
        assert!(text(&out).contains("leadership handed to"), "{}", text(&out));
        assert_ne!(leader_of(lab, &via), gone_id);
        // 04 on the masters, clean-etcd on the host (that role only), 01 on the others.
        let docs = json_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 3, "{}", text(&out));
        assert_eq!(docs[1]["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(), vec![&gone], "{}", docs[1]);
        let members = member_list(lab, &via);
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(!members.iter().any(|m| m.contains(&format!("https://{gone}:2380"))), "{members:?}");
        assert_cluster_healthy(lab, &via, &readers, 30);
        assert_master_without_member(lab, gone_i);
        let inv = lab.inventory();
        assert!(!etcd_hosts(&inv).contains(&gone), "{inv}");
        assert!(hosts_of(section(&ini_sections(&inv), "kube_master")).contains(&gone), "{inv}");
        wait_all_ready(lab, 120);

        // The spare host dies: its member no longer answers, its host no more on SSH.
        lab.stop_host_named(&spare(lab).name);
        // --plan: the clean skipped, said so; nothing changed.
        let out = lab.ezk(&["del-etcd", &lab.name, &new, "--plan"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("NOT healthy") && said.contains("clean is skipped") && said.contains("would remove member"), "{said}");
        assert_eq!(member_list(lab, &via).len(), 3, "--plan removed a member");
        // 3 → 2 with the removed one dead: 2 of 2 answer before and after, no --allow-even.
        let out = with_readers(lab, &stay, "del-etcd of a dead member", &["del-etcd", &lab.name, &new, "--yes"]);
        let said = text(&out);
        assert!(said.contains("not cleaned") && said.contains("systemctl disable --now etcd; rm -rf") && said.contains("/var/lib/etcd"), "{said}");
        let members = member_list(lab, &via);
        assert_eq!(members.len(), 2, "{members:?}");
        assert_cluster_healthy(lab, &via, &stay, 30);
        for servers in etcd_servers(lab) {
            assert!(!servers.contains(&new) && !servers.contains(&gone), "{servers}");
        }
        assert_eq!(etcd_hosts(&lab.inventory()), stay);

        // Back, it is cleaned as the message said (its etcd may be restarting, refused).
        let out = lab.ezk(&["lab", "reboot", &lab.name, &spare(lab).name]);
        assert!(out.status.success(), "{}", text(&out));
        println!("  del-etcd said: {}", said.lines().find(|l| l.contains("not cleaned")).unwrap_or(""));
        let clean = said.lines().find_map(|l| l.split('`').find(|c| c.starts_with("systemctl disable --now etcd"))).expect("the clean command").to_string();
        let out = crate::support::ssh_with(&lab.key(), &lab.known_hosts(), &new).arg(&clean).stdin(std::process::Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{clean}: {}", text(&out));
        assert_eq!(spare_sh(lab, "pgrep -x etcd; for p in /var/lib/etcd /etc/kubernetes/ssl/etcd.pem /etc/kubernetes/ssl/etcd-ca.pem /etc/systemd/system/etcd.service; do test -e $p && echo $p; done"), "");

        // The master joins again (2 → 3): the inventory as it began, the data still there.
        let out = lab.ezk(&["add-etcd", &lab.name, &gone]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(lab.inventory(), inv_before);
        assert_eq!(member_list(lab, &via).len(), members_before.len());
        assert_cluster_healthy(lab, &via, &old, 30);
        for servers in etcd_servers(lab) {
            assert!(servers.contains(&format!("https://{gone}:2379")), "{servers}");
        }
        assert_before(lab, &gone);
        delete_before(lab, &via);
        wait_all_ready(lab, 120);
    });
}
