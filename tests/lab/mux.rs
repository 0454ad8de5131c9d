//! SSH masters kept between runs (`--ssh-persist 60`; off by default): a later run reuses each
//! host's master without a handshake; a master is not trusted once known_hosts changed (a
//! wrong key for a host is refused as a fresh handshake would refuse it); `--ssh-persist 0`
//! keeps nothing; `ezk lab down` ends the kept masters (checked in `lifecycle`'s own lab: here,
//! on the shared lab, whose down is the harness's).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use crate::Lab;
use crate::steps_support::{assert_nothing_changed, fill_store, setup, setup_ok};
use crate::support::Test;

pub const TESTS: &[Test] = &[Test {
    name: "mux::kept_masters_reused_and_rechecked",
    run: kept_masters_reused_and_rechecked,
}];

/// Keep masters 60 s (the feature is off by default).
const KEEP: &[&str] = &["--ssh-persist", "60"];

fn handshakes(r: &crate::steps_support::Run, ip: &str) -> u64 {
    r.count(ip, "handshakes")
}

fn kept_masters_reused_and_rechecked(lab: &Lab) {
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    // Converge 01 (earlier tests may have left a kept master or none): then a second run
    // within the idle time reuses every master: no handshake, the usual round trips.
    fill_store(lab);
    setup_ok(lab, "01", KEEP);
    let r = setup_ok(lab, "01", KEEP);
    assert_nothing_changed(&r, &ips);
    for ip in &ips {
        assert_eq!(handshakes(&r, ip), 0, "{ip}: a kept master was not reused:\n{}", r.output);
        assert_eq!(r.count(ip, "round_trips"), 1, "{ip}: a no-op 01 is one gather:\n{}", r.output);
    }
    let mux = lab.cluster_dir().join("mux");
    let mode = std::fs::metadata(&mux).expect("clusters/<name>/mux exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", mux.display());
    let entries: Vec<_> = std::fs::read_dir(&mux).unwrap().flatten().collect();
    let sockets = entries.iter().filter(|e| e.file_type().is_ok_and(|t| t.is_socket())).count();
    assert_eq!(sockets, ips.len(), "one kept master per host in {}", mux.display());
    for e in entries.iter().filter(|e| e.path().extension().is_some_and(|x| x == "trust")) {
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{}", e.path().display());
    }

    // A host's key changes in known_hosts while its master is alive (here: host 1's real key
    // recorded for host 0): the kept master is not used, and the fresh handshake refuses host
    // 0 as it would with no master at all. No host is changed.
    let known = lab.known_hosts();
    let before = std::fs::read_to_string(&known).unwrap();
    let key1 = before.lines().find(|l| l.starts_with(&format!("{} ", ips[1]))).unwrap().to_string();
    let wrong: String = before
        .lines()
        .filter(|l| !l.starts_with(&format!("{} ", ips[0])))
        .map(|l| format!("{l}\n"))
        .chain(std::iter::once(key1.replacen(&ips[1], &ips[0], 1) + "\n"))
        .collect();
    std::fs::write(&known, &wrong).unwrap();
    let r = setup(lab, "01", KEEP);
    std::fs::write(&known, &before).unwrap();
    assert_ne!(r.code, 0, "a run with a wrong key for {} succeeded:\n{}", ips[0], r.output);
    assert!(
        r.output.contains(&ips[0]) && r.output.to_lowercase().contains("host key"),
        "the refusal names the host and its key:\n{}",
        r.output
    );
    for ip in &ips {
        assert_eq!(r.recap["hosts"][ip]["changed"].as_u64().unwrap_or(0), 0, "{ip} changed:\n{}", r.output);
    }

    // known_hosts back as it was: every host connects again, fresh (the records no longer
    // match the file), and nothing changes.
    let r = setup_ok(lab, "01", KEEP);
    assert_nothing_changed(&r, &ips);

    // The default (no --ssh-persist): no kept master is used; every host is connected afresh.
    let r = setup_ok(lab, "01", &[]);
    for ip in &ips {
        assert_eq!(handshakes(&r, ip), 1, "{ip}:\n{}", r.output);
    }
}
