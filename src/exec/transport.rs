//! The `Transport` trait: how the runner talks to one host. One command with stdin bytes in,
//! exit code + stdout + stderr out. Everything the runner does on a host (gather, apply) is one
//! such call, so the number of calls is the number of round trips, counted here for tests and
//! the bench. The SSH implementation lives in `ssh.rs`; unit tests use a scripted double.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::connection::Connection;

/// One piece of a command's stdin: bytes in memory, or a local file streamed as is.
#[derive(Debug, Clone)]
pub enum StdinPart {
    /// Bytes held in memory: the plan's own allocation, shared by every host that gets them.
    Bytes(Arc<[u8]>),
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
    /// Close the connection (end the master, unless it is kept for the next run).
    fn close(self) -> impl Future<Output = ()> + Send;

    /// True when the connection was taken over from an earlier run (no handshake made).
    fn reused(&self) -> bool {
        false
    }

    /// Whether the connection still answers (checked before a later step of the run uses it).
    fn alive(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    /// Put whole files (path, bytes, octal mode) atomically: one round trip for all of them.
    /// Each lands as the apply script's files do: a temp file in the target's directory (named
    /// so the apply script's stale sweep knows it), size-checked, moded, fsynced, renamed; a
    /// failed or interrupted put removes its temp files and leaves the old targets.
    fn put_files(
        &self,
        files: Vec<(String, Vec<u8>, u32)>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        async move {
            let (script, stdin) = put_files_script(files);
            let out = self.run(&script, stdin, timeout).await?;
            if out.code != 0 {
                return Err(TransportError::Other {
                    host: self.host().to_string(),
                    reason: format!("put files failed (exit {}): {}", out.code, out.stderr_text().trim()),
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

/// The script and stdin of `Transport::put_files`.
pub fn put_files_script(files: Vec<(String, Vec<u8>, u32)>) -> (String, Vec<StdinPart>) {
    let mut script = String::from(
        "set -eu\numask 077\nL=$(mktemp /tmp/.ezk-put.XXXXXX)\n\
         trap 'while IFS= read -r t; do rm -f -- \"$t\"; done < \"$L\"; rm -f -- \"$L\"' EXIT\n\
         trap 'exit 129' HUP INT TERM PIPE\n",
    );
    let mut stdin = Vec::new();
    for (path, bytes, mode) in files {
        let (dir, base) = path.rsplit_once('/').unwrap_or((".", path.as_str()));
        let dir = if dir.is_empty() { "/" } else { dir };
        let n = bytes.len();
        script.push_str(&format!(
            "[ ! -d {p} ] || {{ echo {p}': is a directory' >&2; exit 4; }}\n\
             t={t}$$; echo \"$t\" >> \"$L\"\n\
             head -c {n} > \"$t\"; [ \"$(wc -c < \"$t\")\" -eq {n} ] || {{ echo {p}': upload truncated' >&2; exit 3; }}\n\
             chmod {mode:o} \"$t\"; sync -- \"$t\" 2>/dev/null || sync; mv -f -- \"$t\" {p}\n",
            p = sh_quote(&path),
            t = sh_quote(&format!("{dir}/.ezk-tmp.{base}.")),
        ));
        stdin.push(StdinPart::Bytes(bytes.into()));
    }
    (script, stdin)
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
    use super::{put_files_script, sh_quote, StdinPart};

    /// Run the put script in the real local `sh`, feeding only the first `parts` stdin parts.
    fn run_put(files: Vec<(String, Vec<u8>, u32)>, parts: usize) -> std::process::Output {
        use std::io::Write;
        let (script, stdin) = put_files_script(files);
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = child.stdin.take().unwrap();
        for p in stdin.into_iter().take(parts) {
            let StdinPart::Bytes(b) = p else { unreachable!("put sends bytes") };
            w.write_all(&b).unwrap();
        }
        drop(w);
        child.wait_with_output().unwrap()
    }

    #[test]
    fn put_files_lands_whole_files_or_leaves_the_old_ones_and_no_temp() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p("b.key"), "old\n").unwrap();
        let files = || vec![(p("a.conf"), b"a\n".to_vec(), 0o644), (p("b.key"), b"new key\n".to_vec(), 0o600)];
        // The connection drops after the first file: the second is truncated.
        let out = run_put(files(), 1);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(p("b.key")).unwrap(), "old\n");
        let mut names: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["a.conf", "b.key"], "temp files left");
        // Whole: both land with their modes.
        let out = run_put(files(), 2);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(p("b.key")).unwrap(), "new key\n");
        assert_eq!(std::fs::metadata(p("b.key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
        // A directory where a file is wanted is refused, not written into.
        std::fs::create_dir(p("dir")).unwrap();
        let out = run_put(vec![(p("dir"), b"x".to_vec(), 0o644)], 1);
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(std::fs::read_dir(p("dir")).unwrap().count(), 0);
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(sh_quote("/etc/etcd.conf"), "/etc/etcd.conf");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(x)"), "'$(x)'");
    }
}
