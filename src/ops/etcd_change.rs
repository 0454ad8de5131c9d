//! What `add-etcd` and `del-etcd` share: the cluster's membership read over TLS from this
//! machine (`etcd_tools`), each member's health, and the rules that keep a quorum — pure
//! functions over what was read, so the refusals are tested without a cluster.
//!
//! - The members etcd lists must be the `[etcd]` group's hosts (a member that is not, or a host
//!   that is no member, is a cluster ezk does not know: refused, named).
//! - add-etcd: every member healthy; a 1-member cluster is refused (between `member add` and
//!   the new member's start, 1 of 2 members is no majority: the cluster would stop); an even
//!   count after the add only with `--allow-even`.
//! - del-etcd: never the last member; a majority of the members healthy now, and a majority of
//!   those that stay healthy after (the member removed may be the unhealthy one); an even count
//!   after the removal only with `--allow-even`, unless the member removed is not healthy:
//!   removing a dead member never lowers how many more members may fail (3 with one dead: 2 of
//!   2 must answer before and after), so it needs no flag.

use super::Error;
use super::etcd_tools::{EtcdTools, Member, quorum};
use crate::session::Session;

/// A member as the checks see it.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub member: Member,
    pub host: String,
    /// Err: why not (what etcdctl said).
    pub health: Result<(), String>,
}

impl MemberState {
    fn label(&self) -> String {
        if self.member.name.is_empty() { format!("{} (added, not started)", self.host) } else { self.member.name.clone() }
    }
}

/// The client URL of `host` (its ETCD_CLIENT_PORT, 2379 unless set).
pub fn client_url(s: &Session, host: &str) -> String {
    let port = s.inventory.var_str(host, "ETCD_CLIENT_PORT").unwrap_or_else(|| "2379".into());
    format!("https://{host}:{port}")
}

/// The peer URL of `host` (its ETCD_PEER_PORT, 2380 unless set), as the etcd role advertises it.
pub fn peer_url(s: &Session, host: &str) -> String {
    let port = s.inventory.var_str(host, "ETCD_PEER_PORT").unwrap_or_else(|| "2380".into());
    format!("https://{host}:{port}")
}

/// The membership, read through the client URLs of `hosts` (the first that answers), each
/// member's health asked at its own client URL (at once: an unhealthy member costs its
/// timeout once, not per member).
pub fn read(s: &Session, tools: &EtcdTools, hosts: &[String]) -> Result<Vec<MemberState>, Error> {
    let endpoints: Vec<String> = hosts.iter().map(|h| client_url(s, h)).collect();
    let members = tools.members(&endpoints)?;
    let states = std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|m| {
                let host = m.host();
                let url = client_url(s, &host);
                scope.spawn(move || {
                    let health = if m.name.is_empty() { Err("added but not started".to_string()) } else { tools.health(&url) };
                    MemberState { member: m, host, health }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("health check thread")).collect::<Vec<_>>()
    });
    Ok(states)
}

/// One line per member: name, host, healthy or why not.
pub fn describe(members: &[MemberState]) -> String {
    members
        .iter()
        .map(|m| match &m.health {
            Ok(()) => format!("  {} ({}): healthy", m.label(), m.host),
            Err(e) => format!("  {} ({}): NOT healthy: {}", m.label(), m.host, e.lines().next().unwrap_or("")),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The members etcd lists against `group` (the `[etcd]` hosts, `except` left out on both
/// sides): the same hosts, or an error naming the difference.
fn same_hosts(members: &[MemberState], group: &[String], except: &str, hosts_file: &str) -> Result<(), String> {
    let extra: Vec<&str> = members.iter().map(|m| m.host.as_str()).filter(|h| *h != except && !group.iter().any(|g| g == h)).collect();
    let missing: Vec<&str> = group.iter().map(String::as_str).filter(|g| *g != except && !members.iter().any(|m| m.host == *g)).collect();
    if extra.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let mut why = Vec::new();
    if !extra.is_empty() {
        why.push(format!("etcd has members on {} that [etcd] of {hosts_file} does not list", extra.join(", ")));
    }
    if !missing.is_empty() {
        why.push(format!("[etcd] of {hosts_file} lists {} that etcd has no member for", missing.join(", ")));
    }
    Err(format!(
        "{}: the inventory and the cluster disagree, and a membership change on a cluster ezk does not know could cost the quorum; make them agree first (`etcdctl member list` shows the members). Nothing was changed",
        why.join("; ")
    ))
}

fn unhealthy(members: &[MemberState]) -> Vec<&MemberState> {
    members.iter().filter(|m| m.health.is_err()).collect()
}

/// Why `n` members, an even count, is a risk (for the refusal without `--allow-even`).
fn even_risk(n: usize) -> String {
    let q = quorum(n);
    format!(
        "{n} members is an even count: a quorum is {q} of {n}, so {} may fail — no more than with {} members — while one more host can fail",
        n - q,
        n - 1
    )
}

/// Whether add-etcd of `host` goes on: `Ok(true)` adds the member, `Ok(false)`: `host` is a
/// member already (a re-run: it is started, not added again). `group`: the `[etcd]` hosts
/// without `host`.
pub fn may_add(members: &[MemberState], group: &[String], host: &str, allow_even: bool, hosts_file: &str) -> Result<bool, String> {
    same_hosts(members, group, host, hosts_file)?;
    let already = members.iter().any(|m| m.host == host);
    let others: Vec<MemberState> = members.iter().filter(|m| m.host != host).cloned().collect();
    let bad = unhealthy(&others);
    if !bad.is_empty() {
        return Err(format!(
            "add-etcd adds a member only to a cluster whose every member is healthy, and {} not:\n{}\nBring it back (`journalctl -u etcd` on it), or remove it with `ezk del-etcd`, then add. Nothing was changed",
            bad.iter().map(|m| m.label()).collect::<Vec<_>>().join(", ") + if bad.len() == 1 { " is" } else { " are" },
            describe(members)
        ));
    }
    if already {
        return Ok(false);
    }
    let n = others.len();
    if n == 1 {
        return Err(format!(
            "the cluster has one member: once `member add` makes it two, etcd needs both to answer, and the one running cannot until {host} has started — the cluster (and the API) would stop meanwhile. A 1-member etcd does not grow online: back it up (`ezk backup`), list 3 hosts in [etcd] of {hosts_file} and restore (`ezk restore`). Nothing was changed"
        ));
    }
    if (n + 1) % 2 == 0 && !allow_even {
        return Err(format!(
            "adding {host} makes {}. Pass --allow-even to accept that while it lasts (the usual way from {n} to {} members: add-etcd twice), or add none. Nothing was changed",
            even_risk(n + 1),
            n + 2
        ));
    }
    Ok(true)
}

/// Whether del-etcd of `host` goes on: `Ok(Some(member))` removes it, `Ok(None)`: it is no
/// member any more (a re-run after `member remove`). `group`: the `[etcd]` hosts, `host` among them.
pub fn may_remove(members: &[MemberState], group: &[String], host: &str, allow_even: bool, hosts_file: &str) -> Result<Option<Member>, String> {
    same_hosts(members, group, host, hosts_file)?;
    let n = members.len();
    let healthy = n - unhealthy(members).len();
    if healthy < quorum(n) {
        return Err(format!(
            "the etcd cluster has no quorum: {healthy} of {n} members healthy, {} needed:\n{}\nA membership change needs one; bring members back first (or restore a backup: `ezk restore`). Nothing was changed",
            quorum(n),
            describe(members)
        ));
    }
    let Some(me) = members.iter().find(|m| m.host == host) else {
        return Ok(None);
    };
    if n == 1 {
        return Err(format!(
            "{host} is the last etcd member: without it there is no cluster data; take the whole cluster down with `ezk destroy`. Nothing was changed"
        ));
    }
    let staying = healthy - usize::from(me.health.is_ok());
    if staying < quorum(n - 1) {
        return Err(format!(
            "without {host}, {staying} of the {} members left would be healthy, and they need {} to answer:\n{}\nBring the others back first. Nothing was changed",
            n - 1,
            quorum(n - 1),
            describe(members)
        ));
    }
    if (n - 1) % 2 == 0 && !allow_even && me.health.is_ok() {
        return Err(format!(
            "removing {host} leaves {}. Pass --allow-even to accept that (replacing a member that failed: del-etcd it, then add-etcd the new host), or remove none. Nothing was changed",
            even_risk(n - 1)
        ));
    }
    Ok(Some(me.member.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, healthy: bool) -> MemberState {
        let id = host.bytes().map(u64::from).sum();
        MemberState {
            member: Member { id, name: format!("etcd-{host}"), peer_urls: vec![format!("https://{host}:2380")] },
            host: host.into(),
            health: if healthy { Ok(()) } else { Err("context deadline exceeded".into()) },
        }
    }

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    const F: &str = "clusters/c/hosts";

    #[test]
    fn add_to_three_healthy_members_needs_allow_even_and_four_need_not() {
        let three = [m("a", true), m("b", true), m("c", true)];
        let e = may_add(&three, &hosts(&["a", "b", "c"]), "d", false, F).unwrap_err();
        assert!(e.contains("4 members is an even count") && e.contains("--allow-even") && e.contains("1 may fail"), "{e}");
        assert_eq!(may_add(&three, &hosts(&["a", "b", "c"]), "d", true, F), Ok(true));
        let four = [m("a", true), m("b", true), m("c", true), m("d", true)];
        assert_eq!(may_add(&four, &hosts(&["a", "b", "c", "d"]), "e", false, F), Ok(true));
    }

    #[test]
    fn add_refuses_an_unhealthy_member_one_member_and_a_stranger() {
        let e = may_add(&[m("a", true), m("b", false), m("c", true)], &hosts(&["a", "b", "c"]), "d", true, F).unwrap_err();
        assert!(e.contains("etcd-b is not") && e.contains("NOT healthy"), "{e}");
        let e = may_add(&[m("a", true)], &hosts(&["a"]), "b", true, F).unwrap_err();
        assert!(e.contains("one member"), "{e}");
        let e = may_add(&[m("a", true), m("x", true)], &hosts(&["a", "b"]), "d", true, F).unwrap_err();
        assert!(e.contains("members on x") && e.contains("lists b"), "{e}");
    }

    #[test]
    fn add_again_of_a_member_goes_on_without_adding_even_when_not_started() {
        let mut new = m("d", false);
        new.member.name.clear();
        let members = [m("a", true), m("b", true), m("c", true), new];
        assert_eq!(may_add(&members, &hosts(&["a", "b", "c"]), "d", false, F), Ok(false));
    }

    #[test]
    fn remove_keeps_a_majority_and_never_the_last() {
        let four = [m("a", true), m("b", true), m("c", true), m("d", true)];
        let g = hosts(&["a", "b", "c", "d"]);
        assert_eq!(may_remove(&four, &g, "d", false, F).unwrap().unwrap().name, "etcd-d");
        let e = may_remove(&[m("a", true)], &hosts(&["a"]), "a", true, F).unwrap_err();
        assert!(e.contains("last etcd member"), "{e}");
        // 3 members, one down: removing a healthy one leaves 1 of 2 healthy.
        let down = [m("a", true), m("b", true), m("c", false)];
        let g3 = hosts(&["a", "b", "c"]);
        let e = may_remove(&down, &g3, "a", true, F).unwrap_err();
        assert!(e.contains("1 of the 2 members left"), "{e}");
        // Removing the one that is down: 2 healthy of 2, an even count, but no fewer failures
        // tolerated than before (none): no --allow-even needed.
        assert_eq!(may_remove(&down, &g3, "c", false, F).unwrap().unwrap().name, "etcd-c");
        assert!(may_remove(&down, &g3, "c", true, F).unwrap().is_some());
        // A healthy one of 3 all healthy: 2 left is an even count, refused without the flag.
        let three = [m("a", true), m("b", true), m("c", true)];
        let e = may_remove(&three, &g3, "c", false, F).unwrap_err();
        assert!(e.contains("2 members is an even count") && e.contains("replacing"), "{e}");
        // 5 members, 2 down: removing a dead one leaves 3 of 4 healthy, 3 needed.
        let five = [m("a", true), m("b", true), m("c", true), m("d", false), m("e", false)];
        let g5 = hosts(&["a", "b", "c", "d", "e"]);
        assert!(may_remove(&five, &g5, "e", false, F).unwrap().is_some());
        // … but removing a healthy one leaves 2 of 4: refused.
        assert!(may_remove(&five, &g5, "a", true, F).unwrap_err().contains("2 of the 4 members left"));
        // No quorum now: nothing.
        let lost = [m("a", true), m("b", false), m("c", false)];
        assert!(may_remove(&lost, &g3, "c", true, F).unwrap_err().contains("no quorum"));
    }

    #[test]
    fn remove_again_after_member_remove_goes_on() {
        let three = [m("a", true), m("b", true), m("c", true)];
        assert_eq!(may_remove(&three, &hosts(&["a", "b", "c", "d"]), "d", false, F).unwrap().map(|m| m.id), None);
    }
}
