//! Host-key failures, explained. OpenSSH reports a refused host key in a screen-sized banner
//! (or one terse line for an unknown key); the operator needs three facts from it: which host,
//! which known_hosts file (and line) holds the key it did not match, and what to do. This module
//! reads those facts out of ssh's text and writes the one message ezk shows.

use std::path::PathBuf;

/// What kind of host-key refusal ssh reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyProblem {
    /// A key is recorded for the host and the host presented another one.
    Changed {
        /// SHA256 fingerprint of the key the host presented, when ssh printed it.
        presented: Option<String>,
        /// `file:line` of the recorded key that did not match.
        recorded_at: Option<String>,
        /// ssh's own removal command (`ssh-keygen -f "<file>" -R "<host>"`).
        remove_cmd: Option<String>,
    },
    /// No key is recorded for the host (strict checking refuses first contact).
    Unknown,
    /// Another host-key refusal (revoked key, DNS spoofing warning, ...).
    Other,
}

/// Whether ssh's error text is a host-key refusal at all.
pub fn is_host_key_error(ssh_text: &str) -> bool {
    let l = ssh_text.to_lowercase();
    l.contains("host key verification failed")
        || l.contains("remote host identification has changed")
        || l.contains("host key is known")
}

/// Read the problem out of ssh's error text.
pub fn classify(ssh_text: &str) -> HostKeyProblem {
    let lower = ssh_text.to_lowercase();
    if lower.contains("remote host identification has changed") || lower.contains("has changed and you have requested strict checking") {
        let presented = ssh_text
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(|w| w.trim_end_matches('.').to_string());
        let recorded_at = ssh_text.lines().find_map(|l| {
            let l = l.trim();
            l.starts_with("Offending").then(|| l.split_once(" key in ").map(|x| x.1.trim().to_string())).flatten()
        });
        let remove_cmd = ssh_text.lines().map(str::trim).find(|l| l.starts_with("ssh-keygen -f ")).map(String::from);
        return HostKeyProblem::Changed { presented, recorded_at, remove_cmd };
    }
    if lower.contains("host key is known for") {
        return HostKeyProblem::Unknown;
    }
    HostKeyProblem::Other
}

/// The message for a host-key refusal of `address` (as ssh names it: `1.2.3.4` or
/// `[1.2.3.4]:2222`), checked against `known_hosts` (the cluster's file first).
pub fn message(address: &str, known_hosts: &[PathBuf], ssh_text: &str) -> String {
    let files: Vec<String> = known_hosts.iter().map(|p| p.display().to_string()).chain(["~/.ssh/known_hosts".to_string()]).collect();
    let first = files.first().cloned().unwrap_or_default();
    match classify(ssh_text) {
        HostKeyProblem::Changed { presented, recorded_at, remove_cmd } => {
            let at = recorded_at.unwrap_or_else(|| files.join(" or "));
            let file = at.rsplit_once(':').map(|x| x.0.to_string()).unwrap_or(at.clone());
            let remove = remove_cmd.unwrap_or_else(|| format!("ssh-keygen -f \"{file}\" -R \"{address}\""));
            format!(
                "host key CHANGED: {address} presented a key{} that does not match the one recorded in {at}; \
                 ezk will not connect (someone may be intercepting the connection, or the host was reinstalled). \
                 fix: if the change is expected, remove the old key with `{remove}` and run again with \
                 --accept-new-host-keys to record the new one",
                presented.map(|p| format!(" ({p})")).unwrap_or_default()
            )
        }
        HostKeyProblem::Unknown => format!(
            "host key unknown: no key for {address} in {}; ezk checks host keys strictly. \
             fix: check the host's key fingerprint out of band, then run again with --accept-new-host-keys \
             to record it in {first}",
            files.join(" or ")
        ),
        HostKeyProblem::Other => {
            let said: Vec<&str> = ssh_text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
                .take(3)
                .collect();
            format!("host key verification failed for {address} (known_hosts: {}): {}", files.join(", "), said.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OpenSSH 9 printed here for a lab host whose host key was regenerated.
    const CHANGED: &str = "failed to connect to the remote host: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:Iz/gbkaTgDHFlDki6P8ZI66FkcFKRwz9Y5n2Fs1eNHE.
Please contact your system administrator.
Add correct host key in /tmp/audit/clusters/au/known_hosts to get rid of this message.
Offending ED25519 key in /tmp/audit/clusters/au/known_hosts:3
  remove with:
  ssh-keygen -f \"/tmp/audit/clusters/au/known_hosts\" -R \"198.18.5.13\"
Host key for 198.18.5.13 has changed and you have requested strict checking.
Host key verification failed.";

    #[test]
    fn changed_key_names_host_file_line_and_fix() {
        assert!(is_host_key_error(CHANGED));
        let kh = [PathBuf::from("/tmp/audit/clusters/au/known_hosts")];
        let m = message("198.18.5.13", &kh, CHANGED);
        assert!(m.starts_with("host key CHANGED: 198.18.5.13 presented a key (SHA256:Iz/gbkaTgDHFlDki6P8ZI66FkcFKRwz9Y5n2Fs1eNHE)"), "{m}");
        assert!(m.contains("recorded in /tmp/audit/clusters/au/known_hosts:3;"), "{m}");
        assert!(m.contains("`ssh-keygen -f \"/tmp/audit/clusters/au/known_hosts\" -R \"198.18.5.13\"`"), "{m}");
        assert!(m.contains("--accept-new-host-keys") && !m.contains("@@@"), "{m}");
    }

    #[test]
    fn unknown_key_names_the_files_and_the_flag() {
        let text = "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.";
        assert!(is_host_key_error(text));
        assert_eq!(classify(text), HostKeyProblem::Unknown);
        let m = message("[127.0.0.1]:2222", &[PathBuf::from("/h/clusters/c/known_hosts")], text);
        assert_eq!(
            m,
            "host key unknown: no key for [127.0.0.1]:2222 in /h/clusters/c/known_hosts or ~/.ssh/known_hosts; \
             ezk checks host keys strictly. fix: check the host's key fingerprint out of band, then run again \
             with --accept-new-host-keys to record it in /h/clusters/c/known_hosts"
        );
    }

    #[test]
    fn other_refusals_keep_what_ssh_said() {
        let text = "Host key for 198.18.9.9 was revoked\nHost key verification failed.";
        assert!(is_host_key_error(text));
        let m = message("198.18.9.9", &[], text);
        assert!(m.contains("was revoked") && m.contains("~/.ssh/known_hosts"), "{m}");
    }
}
