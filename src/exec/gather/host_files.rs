//! Fact kind for reports: files read back from many hosts at once (`ezk certs`): one
//! connection per host, all hosts in parallel, ONE command per host that answers for every
//! requested path. Not part of a role's gather: it runs outside any plan.
//!
//! Each path gets a probe: its bytes (certificates), only its sha256 (private keys: the key
//! never crosses the wire, yet a stale key is still detected), or only whether it exists
//! (files a host must not hold). The answer is a stream of `#ezk-fetch <i> <kind> ...` header
//! lines; file bytes follow their header, length-prefixed, so no file content is ever parsed
//! as a marker. Nothing is written on the hosts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::exec::connection::Connection;
use crate::exec::limits::{DEFAULT_FORKS, Limits};
use crate::exec::ssh::{SshConnector, SshOptions};
use crate::exec::transport::{Connector, Transport, TransportError, sh_quote};

/// Header prefix of every answer line.
const MARK: &str = "#ezk-fetch";
/// Larger files are not fetched (a certificate is a few KiB): the answer says `toolarge`.
pub const MAX_FILE: u64 = 256 * 1024;

/// What to learn about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The file's bytes.
    Content,
    /// Only the hex sha256 of the file (secrets).
    Sha256,
    /// Only whether something is at the path.
    Exists,
}

/// One path to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub probe: Probe,
}

/// The answer for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Content(Vec<u8>),
    Sha256(String),
    /// Something exists at the path (an `Exists` probe).
    Present,
    Missing,
    /// Present but not readable as asked (not a regular file, permission, too large).
    Problem(String),
}

/// The shell script that answers `reqs` in one round trip. Read-only.
pub fn script(reqs: &[Request]) -> String {
    let mut s = String::from("LC_ALL=C; export LC_ALL\n");
    if reqs.iter().any(|r| matches!(r.probe, Probe::Sha256)) {
        // OpenSSL's SHA-256 where the host has it (the CPU's SHA instructions), else coreutils'.
        s.push_str("if command -v openssl >/dev/null 2>&1; then ezk_sha() { openssl dgst -sha256 -r; }; else ezk_sha() { sha256sum; }; fi\n");
    }
    for (i, r) in reqs.iter().enumerate() {
        let p = sh_quote(&r.path);
        let m = format!("{MARK} {i}");
        let body = match r.probe {
            Probe::Exists => format!("echo '{m} present'"),
            Probe::Content => format!(
                "n=$(($(wc -c < {p}))); if [ \"$n\" -gt {MAX_FILE} ]; then echo \"{m} toolarge $n\"; \
                 else echo \"{m} data $n\"; cat -- {p}; echo; echo '{m} end'; fi"
            ),
            Probe::Sha256 => {
                format!("echo \"{m} sha256 $(ezk_sha < {p} | cut -d' ' -f1)\"")
            }
        };
        let check = match r.probe {
            Probe::Exists => format!("[ -e {p} ] || [ -L {p} ]"),
            _ => format!("[ -f {p} ] && [ -r {p} ]"),
        };
        s.push_str(&format!(
            "if {check}; then {body}; elif [ -e {p} ]; then echo '{m} problem'; else echo '{m} missing'; fi\n"
        ));
    }
    s
}

/// Parse what `script(reqs)` printed: one `Found` per request, in order. A request the output
/// does not answer (the command died half-way) gets a `Problem` saying so.
pub fn parse(out: &[u8], reqs: &[Request]) -> Vec<Found> {
    let mut found: Vec<Option<Found>> = vec![None; reqs.len()];
    let mut pos = 0;
    while pos < out.len() {
        let end = out[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(out.len(), |e| pos + e);
        let line = String::from_utf8_lossy(&out[pos..end]).into_owned();
        pos = (end + 1).min(out.len());
        let mut f = line.split(' ');
        if f.next() != Some(MARK) {
            continue;
        }
        let Some(i) = f.next().and_then(|i| i.parse::<usize>().ok()).filter(|&i| i < reqs.len())
        else {
            continue;
        };
        let rest: Vec<&str> = f.collect();
        if rest == ["end"] {
            continue;
        }
        found[i] = Some(match rest.as_slice() {
            ["present"] => Found::Present,
            ["missing"] => Found::Missing,
            ["problem"] => Found::Problem("not a readable regular file".into()),
            ["toolarge", n] => Found::Problem(format!("{n} bytes, too large to be a certificate")),
            ["sha256", h] if h.len() == 64 => Found::Sha256(h.to_string()),
            ["sha256", ..] => Found::Problem("could not hash the file".into()),
            ["data", n] => match n.parse::<usize>() {
                // Bytes, then the newline the script adds, then the end marker.
                Ok(n) if pos + n < out.len() && out[pos + n] == b'\n' => {
                    let data = out[pos..pos + n].to_vec();
                    pos += n + 1;
                    Found::Content(data)
                }
                _ => Found::Problem("the file changed while it was read".into()),
            },
            _ => Found::Problem(format!("unexpected answer `{line}`")),
        });
    }
    found
        .into_iter()
        .map(|f| f.unwrap_or_else(|| Found::Problem("no answer (the command stopped early)".into())))
        .collect()
}

/// Probe one host: one round trip.
pub async fn fetch_host<T: Transport>(
    t: &T,
    reqs: &[Request],
    timeout: Duration,
) -> Result<Vec<Found>, TransportError> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    let out = t.run(&script(reqs), Vec::new(), timeout).await?;
    if out.code != 0 {
        return Err(TransportError::Other {
            host: t.host().to_string(),
            reason: format!("reading files failed (exit {}): {}", out.code, out.stderr_text().trim()),
        });
    }
    Ok(parse(&out.stdout, reqs))
}

/// What each host answered, in the order of `hosts`; a host that could not be reached or
/// whose command failed has the error instead.
pub type Answers = IndexMap<String, Result<Vec<Found>, TransportError>>;

/// Connect to every host at once (at most `forks` hosts and `limits::DEFAULT_HANDSHAKES`
/// handshakes at a time), probe, close.
pub async fn fetch_all<C: Connector>(
    connector: Arc<C>,
    hosts: &IndexMap<String, (Connection, Vec<Request>)>,
    forks: usize,
    timeout: Duration,
) -> Answers {
    let limits = Arc::new(Limits::new(forks));
    let mut jobs = tokio::task::JoinSet::new();
    for (i, (host, (conn, reqs))) in hosts.iter().enumerate() {
        let (host, conn, reqs) = (host.clone(), conn.clone(), reqs.clone());
        let (connector, limits) = (connector.clone(), limits.clone());
        jobs.spawn(async move {
            let _host = limits.hosts.acquire().await.expect("never closed");
            let connected = {
                let _handshake = limits.handshakes.acquire().await.expect("never closed");
                connector.connect(&host, &conn).await
            };
            let r = match connected {
                Ok(t) => {
                    let r = fetch_host(&t, &reqs, timeout).await;
                    t.close().await;
                    r
                }
                Err(e) => Err(e),
            };
            (i, host, r)
        });
    }
    let mut done = Vec::new();
    while let Some(j) = jobs.join_next().await {
        done.push(j.expect("fetch task does not panic"));
    }
    done.sort_by_key(|(i, ..)| *i);
    done.into_iter().map(|(_, h, r)| (h, r)).collect()
}

/// `fetch_all` over SSH with the cluster's strict host keys (clusters/<name>/known_hosts plus
/// the user's): never accepts an unknown key, since a report must not trust a new host.
pub fn fetch_over_ssh(
    cluster_dir: &Path,
    hosts: &IndexMap<String, (Connection, Vec<Request>)>,
    connect_timeout: Duration,
) -> Result<Answers, std::io::Error> {
    let mut keys: Vec<_> = hosts.values().filter_map(|(c, _)| c.key_file.clone()).collect();
    keys.sort();
    keys.dedup();
    let opts = SshOptions {
        known_hosts: vec![cluster_dir.join("known_hosts")],
        accept_new_host_keys: false,
        connect_timeout,
        connect_attempts: 1,
        identity_files: keys,
        ..SshOptions::default()
    };
    fetch_with(opts, hosts)
}

/// `fetch_all` over SSH with these options (a run's: its jump hosts, its host-key policy).
pub fn fetch_with(
    opts: SshOptions,
    hosts: &IndexMap<String, (Connection, Vec<Request>)>,
) -> Result<Answers, std::io::Error> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let command_timeout = opts.connect_timeout.max(Duration::from_secs(30));
    Ok(rt.block_on(fetch_all(
        Arc::new(SshConnector::new(opts)),
        hosts,
        DEFAULT_FORKS,
        command_timeout,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::transport::{CmdOutput, StdinPart};

    fn req(path: &str, probe: Probe) -> Request {
        Request { path: path.into(), probe }
    }

    /// The script run by the real local `sh` on real files, its output parsed.
    #[test]
    fn script_answers_every_probe_and_parse_reads_it_back() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).display().to_string();
        // Content that looks like our own markers must come back as bytes, not as answers.
        let tricky = format!("-----BEGIN X-----\n{MARK} 1 missing\n\0binary\n");
        std::fs::write(p("cert.pem"), &tricky).unwrap();
        std::fs::write(p("no-newline"), "abc").unwrap();
        std::fs::write(p("key.pem"), "secret").unwrap();
        std::fs::create_dir(p("adir")).unwrap();
        std::fs::write(p("big"), vec![b'x'; MAX_FILE as usize + 1]).unwrap();
        std::fs::write(p("it's here"), "quoted").unwrap();
        let reqs = vec![
            req(&p("cert.pem"), Probe::Content),
            req(&p("gone.pem"), Probe::Content),
            req(&p("no-newline"), Probe::Content),
            req(&p("key.pem"), Probe::Sha256),
            req(&p("gone-key.pem"), Probe::Sha256),
            req(&p("key.pem"), Probe::Exists),
            req(&p("nothing"), Probe::Exists),
            req(&p("adir"), Probe::Content),
            req(&p("big"), Probe::Content),
            req(&p("it's here"), Probe::Content),
        ];
        let out = std::process::Command::new("sh").arg("-c").arg(script(&reqs)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = parse(&out.stdout, &reqs);
        assert_eq!(got[0], Found::Content(tricky.into_bytes()));
        assert_eq!(got[1], Found::Missing);
        assert_eq!(got[2], Found::Content(b"abc".to_vec()));
        // sha256("secret")
        assert_eq!(
            got[3],
            Found::Sha256("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".into())
        );
        assert_eq!(got[4], Found::Missing);
        assert_eq!(got[5], Found::Present);
        assert_eq!(got[6], Found::Missing);
        assert!(matches!(&got[7], Found::Problem(m) if m.contains("regular file")), "{:?}", got[7]);
        assert!(matches!(&got[8], Found::Problem(m) if m.contains("too large")), "{:?}", got[8]);
        assert_eq!(got[9], Found::Content(b"quoted".to_vec()));
    }

    /// Test double: a "host" is a local directory; its commands run in the real local `sh`.
    /// Host names starting with `down` cannot be reached. Connecting takes 200 ms.
    struct LocalHosts {
        trips: Arc<std::sync::Mutex<Vec<String>>>,
    }
    struct LocalHost {
        name: String,
        trips: Arc<std::sync::Mutex<Vec<String>>>,
    }
    impl Connector for LocalHosts {
        type T = LocalHost;
        async fn connect(&self, host: &str, _: &Connection) -> Result<LocalHost, TransportError> {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if host.starts_with("down") {
                return Err(TransportError::Unreachable { host: host.into(), reason: "timed out".into() });
            }
            Ok(LocalHost { name: host.into(), trips: self.trips.clone() })
        }
    }
    impl Transport for LocalHost {
        fn host(&self) -> &str {
            &self.name
        }
        async fn run(
            &self,
            script: &str,
            _: Vec<StdinPart>,
            _: Duration,
        ) -> Result<CmdOutput, TransportError> {
            self.trips.lock().unwrap().push(self.name.clone());
            let o = tokio::process::Command::new("sh").arg("-c").arg(script).output().await.unwrap();
            Ok(CmdOutput {
                code: o.status.code().unwrap_or(-1),
                stdout: o.stdout,
                stderr: o.stderr,
            })
        }
        fn round_trips(&self) -> u64 {
            0
        }
        async fn close(self) {}
    }

    #[test]
    fn every_host_at_once_one_round_trip_each_unreachable_kept_apart() {
        let d = tempfile::tempdir().unwrap();
        let conn = Connection {
            address: "unused".into(),
            port: 22,
            user: "root".into(),
            key_file: None,
            become_root: false,
            jump: None,
        };
        let mut hosts = IndexMap::new();
        for h in ["h1", "down-1", "h2", "h3", "h4"] {
            let dir = d.path().join(h);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("a.pem"), h).unwrap();
            let reqs = vec![
                req(&dir.join("a.pem").display().to_string(), Probe::Content),
                req(&dir.join("b.key").display().to_string(), Probe::Sha256),
            ];
            hosts.insert(h.to_string(), (conn.clone(), reqs));
        }
        let trips = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let started = std::time::Instant::now();
        let got = rt.block_on(fetch_all(
            Arc::new(LocalHosts { trips: trips.clone() }),
            &hosts,
            DEFAULT_FORKS,
            Duration::from_secs(10),
        ));
        // Five 200 ms connects at once, not one after another.
        assert!(started.elapsed() < Duration::from_millis(700), "{:?}", started.elapsed());
        assert_eq!(got.keys().collect::<Vec<_>>(), ["h1", "down-1", "h2", "h3", "h4"]);
        for h in ["h1", "h2", "h3", "h4"] {
            assert_eq!(
                got[h].as_ref().unwrap(),
                &vec![Found::Content(h.as_bytes().to_vec()), Found::Missing]
            );
        }
        assert!(got["down-1"].as_ref().unwrap_err().is_unreachable());
        let mut t = trips.lock().unwrap().clone();
        t.sort();
        assert_eq!(t, ["h1", "h2", "h3", "h4"], "one round trip per reachable host");
    }

    #[test]
    fn truncated_output_leaves_the_rest_unanswered() {
        let reqs = vec![req("/a", Probe::Content), req("/b", Probe::Exists)];
        // Header promises 10 bytes, the stream ends after 3.
        let out = format!("{MARK} 0 data 10\nabc");
        let got = parse(out.as_bytes(), &reqs);
        assert!(matches!(&got[0], Found::Problem(m) if m.contains("changed")), "{got:?}");
        assert!(matches!(&got[1], Found::Problem(m) if m.contains("no answer")), "{got:?}");
    }

    #[test]
    fn stray_lines_and_unknown_indices_are_ignored() {
        let reqs = vec![req("/a", Probe::Exists)];
        let out = format!("motd noise\n{MARK} 7 present\n{MARK} 0 present\n");
        assert_eq!(parse(out.as_bytes(), &reqs), vec![Found::Present]);
    }
}
