//! The `Transport` trait: how the runner talks to one host. One command with stdin bytes in,
//! exit code + stdout + stderr out. Everything the runner does on a host (gather, apply) is one
//! such call, so the number of calls is the number of round trips, counted here for tests and
//! the bench. The SSH implementation lives in `ssh.rs`; unit tests use a scripted double.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::inventory::Connection;

/// One piece of a command's stdin: bytes in memory, or a local file streamed as is.
#[derive(Debug, Clone)]
pub enum StdinPart {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// What a remote command returned.
#[derive(Debug, Clone, Default)]
pub struct CmdOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    /// stdout as text (lossy: remote output is for parsing markers and showing to humans).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a transport call failed. `Unreachable` means the host could not be reached at all
/// (the recap's "unreachable"); the others mean the connection broke or a limit was hit.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// The host's key is unknown or does not match known_hosts: `reason` says which, names
    /// the known_hosts file and the fix (see `hostkey::message`).
    #[error("{host}: {reason}")]
    HostKey { host: String, reason: String },
    #[error("{host}: command timed out after {secs}s")]
    Timeout { host: String, secs: u64 },
    #[error("{host}: sshd refused another session (MaxSessions reached: too many concurrent channels on one connection)")]
    TooManySessions { host: String },
    #[error("{host}: connection lost: {reason}")]
    Lost { host: String, reason: String },
    #[error("{host}: {reason}")]
    Other { host: String, reason: String },
    #[error("{host}: reading local file {path}: {source}")]
    LocalFile { host: String, path: PathBuf, source: std::io::Error },
}

impl TransportError {
    /// True when the host never answered (counts as unreachable, not failed).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. } | TransportError::HostKey { .. })
    }
    /// True when the host's key was refused (unknown or changed): a trust problem the
    /// operator must settle, unlike a host that is down.
    pub fn is_host_key(&self) -> bool {
        matches!(self, TransportError::HostKey { .. })
    }
}

/// A live connection to one host.
pub trait Transport: Send + Sync + 'static {
    /// Inventory name of the host.
    fn host(&self) -> &str;
    /// Run `script` with `sh -c` (under sudo when the connection says become), feeding `stdin`.
    /// One call is one round trip.
    fn run(
        &self,
        script: &str,
        stdin: Vec<StdinPart>,
        timeout: Duration,
    ) -> impl Future<Output = Result<CmdOutput, TransportError>> + Send;
    /// Round trips made so far on this connection.
    fn round_trips(&self) -> u64;
    /// Close the connection (end the master).
    fn close(self) -> impl Future<Output = ()> + Send;

    /// Put whole files (path, bytes, octal mode) atomically: one round trip for all of them.
    fn put_files(
        &self,
        files: Vec<(String, Vec<u8>, u32)>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        async move {
            let mut script = String::from("set -e\numask 077\n");
            let mut stdin = Vec::new();
            for (i, (path, bytes, mode)) in files.into_iter().enumerate() {
                let p = sh_quote(&path);
                let t = sh_quote(&format!("{path}.ezk-put.{i}"));
                script.push_str(&format!(
                    "head -c {} > {t}; [ \"$(wc -c < {t})\" -eq {} ] || {{ rm -f {t}; exit 3; }}; chmod {:o} {t}; mv -f {t} {p}\n",
                    bytes.len(),
                    bytes.len(),
                    mode
                ));
                stdin.push(StdinPart::Bytes(bytes));
            }
            let out = self.run(&script, stdin, timeout).await?;
            if out.code != 0 {
                return Err(TransportError::Other {
                    host: self.host().to_string(),
                    reason: format!("put files failed: {}", out.stderr_text().trim()),
                });
            }
            Ok(())
        }
    }

    /// Get one file's bytes (one round trip).
    fn get_file(
        &self,
        path: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send {
        let script = format!("cat -- {}", sh_quote(path));
        async move {
            let out = self.run(&script, Vec::new(), timeout).await?;
            if out.code != 0 {
                return Err(TransportError::Other {
                    host: self.host().to_string(),
                    reason: format!("get {path}: {}", out.stderr_text().trim()),
                });
            }
            Ok(out.stdout)
        }
    }
}

/// Opens transports; the runner asks it once per host per run.
pub trait Connector: Send + Sync + 'static {
    type T: Transport;
    fn connect(
        &self,
        host: &str,
        conn: &Connection,
    ) -> impl Future<Output = Result<Self::T, TransportError>> + Send;
}

/// Quote a string for POSIX sh: single quotes, with embedded quotes closed and escaped.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=+@,%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(sh_quote("/etc/etcd.conf"), "/etc/etcd.conf");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(x)"), "'$(x)'");
    }
}
