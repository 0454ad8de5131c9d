//! Readiness: a lab host is ready when it answers SSH with the host key recorded in the lab's
//! known_hosts (strict checking, key login) and `systemctl is-system-running` reports
//! `running` or `degraded`, with /run/nologin gone (logins no longer refused or noisy).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::state::HostState;
use super::{HostFailure, LabError, check_interrupted, sys};

/// ssh options every lab connection uses: the lab key and known_hosts only, strict.
pub fn ssh_command(key: &Path, known_hosts: &Path, ip: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("-F")
        .arg("/dev/null")
        .arg(format!("root@{ip}"));
    c
}

/// Ask the host once: its `systemctl is-system-running` output, or why we could not.
pub fn probe(key: &Path, known_hosts: &Path, ip: &str) -> Result<String, String> {
    let out = ssh_command(key, known_hosts, ip)
        // Also wait for /run/nologin to go: until then logins print "System is booting up".
        // systemd-user-sessions removes it; on a loaded machine it was seen failing once at
        // boot, which left the host "degraded, /run/nologin" until the boot timeout. It is
        // retried (the real unit, not a removal by hand), so a transient failure heals.
        .arg(concat!(
            "[ -e /run/nologin ] && systemctl is-failed --quiet systemd-user-sessions.service ",
            "&& systemctl restart systemd-user-sessions.service >/dev/null 2>&1; ",
            "s=$(systemctl is-system-running); [ -e /run/nologin ] && s=\"$s, /run/nologin\"; echo \"$s\""
        ))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ssh: {e}"))?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Exit 255 is ssh's own failure (connection, host key); otherwise the state is on stdout.
    if out.status.code() == Some(255) {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    } else {
        Ok(state)
    }
}

/// Wait for every host in parallel. `children` are the nspawn processes (same order), polled
/// so a host that dies during boot fails fast with its log tail. Returns each host's state.
pub fn wait_all(
    hosts: &[HostState],
    children: &mut [Child],
    key: &Path,
    known_hosts: &Path,
    timeout: Duration,
) -> Result<Vec<String>, LabError> {
    let start = Instant::now();
    let mut states: Vec<Option<String>> = vec![None; hosts.len()];
    let mut last: Vec<String> = vec!["no answer yet".to_string(); hosts.len()];
    loop {
        check_interrupted()?;
        for (i, h) in hosts.iter().enumerate() {
            if states[i].is_none()
                && let Ok(Some(_)) = children[i].try_wait()
            {
                return Err(LabError::BootFailed(Box::new(HostFailure {
                    host: h.name.clone(),
                    ip: h.ip.to_string(),
                    secs: 0,
                    last: "exited".into(),
                    tail: sys::log_tail(&h.log(), 30),
                })));
            }
        }
        let pending: Vec<usize> = (0..hosts.len()).filter(|&i| states[i].is_none()).collect();
        if pending.is_empty() {
            return Ok(states.into_iter().map(|s| s.unwrap_or_default()).collect());
        }
        // No new round after the deadline (so `--timeout 0` never waits).
        if start.elapsed() >= timeout {
            let h = &hosts[pending[0]];
            return Err(LabError::Timeout(Box::new(HostFailure {
                host: h.name.clone(),
                ip: h.ip.to_string(),
                secs: timeout.as_secs(),
                last: last[pending[0]].clone(),
                tail: sys::log_tail(&h.log(), 30),
            })));
        }
        let results: Vec<(usize, Result<String, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = pending
                .iter()
                .map(|&i| {
                    let ip = hosts[i].ip.to_string();
                    (i, s.spawn(move || probe(key, known_hosts, &ip)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| (i, h.join().unwrap_or_else(|_| Err("probe panicked".into()))))
                .collect()
        });
        for (i, r) in results {
            match r {
                Ok(s) if s == "running" || s == "degraded" => states[i] = Some(s),
                Ok(s) => last[i] = format!("system {s}"),
                Err(e) => last[i] = e,
            }
        }
        std::thread::sleep(Duration::from_millis(700));
    }
}
