//! Filling the store over HTTP: parallel (bounded), resumable with `Range`, verified. Release
//! files here; the set's container images pinned by digest through `registry`, in the same
//! bounded pool.
//!
//! Each artifact downloads to `<file>.part`. An interrupted run leaves the `.part`; the next
//! run asks for `Range: bytes=<len>-` and appends. A connection cut mid-transfer within a run
//! is retried the same way. Only after the complete file's digest matches does it move into
//! the store (see `Store::ingest`); a mismatch is quarantined. Artifacts already extracted
//! are skipped without touching the network.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::ArtifactError;
use super::manifest::{Artifact, ImageSpec, VersionSet};
use super::progress::Progress;
use super::store::{Store, mkdir_parent};

/// What `ezk download` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL replacing upstream hosts: files are fetched from
    /// `<mirror>/<name>/<version>/<filename>` (the layout of the store's `files/`).
    pub mirror: Option<String>,
    /// Artifact names or binary names to fetch (empty: the whole set).
    pub only: Vec<String>,
    /// Concurrent downloads.
    pub jobs: usize,
    /// Attempts per file after a failed or cut transfer (each resumes with Range).
    pub attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mirror: None,
            only: Vec::new(),
            jobs: 4,
            attempts: 5,
        }
    }
}

/// What happened to one artifact.
#[derive(Debug)]
pub enum Status {
    /// Already verified and extracted; nothing was requested.
    AlreadyVerified,
    /// Fetched (`resumed_from` > 0 when an earlier `.part` was continued) and verified.
    Downloaded {
        bytes: u64,
        resumed_from: u64,
        attempts: u32,
    },
    /// Built from source on this machine now, or installed from an earlier build in the
    /// machine's build cache (`cached`); every pinned output verified.
    Built { secs: f32, cached: bool },
    /// Made from verified inputs (an image); `what` says what it is.
    Made { what: String },
}

/// Per-artifact result, in manifest order.
#[derive(Debug)]
pub struct Outcome {
    pub artifact: String,
    pub url: String,
    pub result: Result<Status, ArtifactError>,
}

/// The artifacts of `set` selected by `only` (artifact or binary names; unknown names are an error).
pub fn select<'a>(
    set_name: &str,
    set: &'a VersionSet,
    only: &[String],
) -> Result<Vec<&'a Artifact>, ArtifactError> {
    if only.is_empty() {
        return Ok(set.artifacts.iter().collect());
    }
    let mut out: Vec<&Artifact> = Vec::new();
    for n in only {
        let a = set
            .artifacts
            .iter()
            .find(|a| &a.name == n || a.provides(n))
            .ok_or_else(|| ArtifactError::NotProvided {
                name: n.clone(),
                set: set_name.to_string(),
            })?;
        if !out.iter().any(|o| std::ptr::eq(*o, a)) {
            out.push(a);
        }
    }
    Ok(out)
}

/// The images of `set` fetched from registries that `only` selects (all of them when `only` is
/// empty; else those it names), and the names of `only` that are not such images.
pub fn split_images(set: &VersionSet, only: &[String]) -> (Vec<ImageSpec>, Vec<String>) {
    let pulled = set.images.iter().filter(|i| i.pulled());
    if only.is_empty() {
        return (pulled.cloned().collect(), Vec::new());
    }
    let images = pulled.filter(|i| only.contains(&i.name)).cloned().collect();
    let rest = only
        .iter()
        .filter(|n| !set.images.iter().any(|i| i.pulled() && &i.name == *n))
        .cloned()
        .collect();
    (images, rest)
}

/// The URL to fetch `a` from: upstream, or the mirror's `<name>/<version>/<filename>`.
pub fn url_for(a: &Artifact, mirror: Option<&str>) -> String {
    match mirror {
        Some(m) => format!(
            "{}/{}/{}/{}",
            m.trim_end_matches('/'),
            a.name,
            a.version,
            a.filename()
        ),
        None => a.url.clone(),
    }
}

/// Download every selected artifact of `k8s_ver` into `store`.
pub async fn download_all(
    store: Arc<Store>,
    k8s_ver: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Outcome>, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let (images, only) = split_images(set, &opts.only);
    let arts: Vec<Artifact> = if opts.only.is_empty() || !only.is_empty() {
        select(set_name, set, &only)?.into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("ezk/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ArtifactError::Http {
            url: String::new(),
            msg: e.to_string(),
        })?;
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut tasks = Vec::new();
    for a in arts {
        let url = url_for(&a, opts.mirror.as_deref());
        let (store, client, sem, progress) =
            (store.clone(), client.clone(), sem.clone(), progress.clone());
        let attempts = opts.attempts.max(1);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore never closed");
            let result = fetch_one(&store, &client, &a, &url, attempts, progress.as_ref()).await;
            match &result {
                Ok(Status::AlreadyVerified) => progress.note(&a.name, "already verified"),
                Ok(Status::Downloaded { .. } | Status::Built { .. } | Status::Made { .. }) => {
                    progress.finish(&a.name, true, "verified")
                }
                Err(e) => progress.finish(&a.name, false, &e.to_string()),
            }
            Outcome {
                artifact: a.name.clone(),
                url,
                result,
            }
        }));
    }
    for spec in images {
        let (store, client, sem, progress) =
            (store.clone(), client.clone(), sem.clone(), progress.clone());
        let (set_name, attempts) = (set_name.to_string(), opts.attempts.max(1));
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore never closed");
            let name = format!("image {}", spec.name);
            let result =
                super::registry::pull(&store, &set_name, &spec, &client, attempts, progress.as_ref())
                    .await;
            match &result {
                Ok(Status::AlreadyVerified) => progress.note(&name, "already verified"),
                Ok(_) => progress.finish(&name, true, "verified"),
                Err(e) => progress.finish(&name, false, &e.to_string()),
            }
            Outcome {
                artifact: name,
                url: format!("{}@{}", spec.reference, spec.digest.clone().unwrap_or_default()),
                result,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(|e| ArtifactError::Http {
            url: String::new(),
            msg: e.to_string(),
        })?);
    }
    Ok(out)
}

async fn fetch_one(
    store: &Arc<Store>,
    client: &reqwest::Client,
    a: &Artifact,
    url: &str,
    attempts: u32,
    progress: &dyn Progress,
) -> Result<Status, ArtifactError> {
    if store.is_complete(a) {
        return Ok(Status::AlreadyVerified);
    }
    let done = store.file_path(a);
    if done.exists() {
        // Verified earlier but extraction did not finish: re-verify and extract, no network.
        ingest(store, a, done.clone(), url).await?;
        return Ok(Status::Downloaded {
            bytes: 0,
            resumed_from: 0,
            attempts: 0,
        });
    }
    let part = store.part_path(a);
    mkdir_parent(&part)?;
    let resumed_from = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut started = false;
    let mut tries = 0;
    let mut last_err = String::new();
    loop {
        if tries == attempts {
            return Err(ArtifactError::Http {
                url: url.to_string(),
                msg: format!(
                    "gave up after {tries} attempts ({last_err}); rerun to resume from {}",
                    part.display()
                ),
            });
        }
        tries += 1;
        if tries > 1 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
        }
        match transfer(client.get(url), &part, &a.name, progress, &mut started, None).await {
            Ok(()) => break,
            Err(Transfer::Unauthorized(_)) => {
                return Err(ArtifactError::Http {
                    url: url.to_string(),
                    msg: "HTTP 401 Unauthorized".into(),
                });
            }
            Err(Transfer::Fatal(msg)) => {
                return Err(ArtifactError::Http {
                    url: url.to_string(),
                    msg,
                });
            }
            Err(Transfer::Retry(msg)) => {
                let have = tokio::fs::metadata(&part)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                progress.note(&a.name, &format!("{msg}; resuming at byte {have}"));
                last_err = msg;
            }
        }
    }
    let bytes = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    ingest(store, a, part, url).await?;
    Ok(Status::Downloaded {
        bytes,
        resumed_from,
        attempts: tries,
    })
}

async fn ingest(
    store: &Arc<Store>,
    a: &Artifact,
    src: std::path::PathBuf,
    url: &str,
) -> Result<(), ArtifactError> {
    let (store, a, url) = (store.clone(), a.clone(), url.to_string());
    tokio::task::spawn_blocking(move || store.ingest(&a, &src, &url))
        .await
        .map_err(|e| ArtifactError::Http {
            url: String::new(),
            msg: e.to_string(),
        })?
}

/// Why one request did not complete a file.
pub(crate) enum Transfer {
    /// Worth another request (a cut connection, a 5xx): it resumes where the file ends.
    Retry(String),
    Fatal(String),
    /// HTTP 401, with the `WWW-Authenticate` challenge (a registry's token has to be fetched).
    Unauthorized(Option<String>),
}

/// One request (`req`, a GET): continue `part` from its current length; Ok when the body ended
/// complete. `hasher`, when given, holds the sha256 state of the bytes already in `part` and
/// is fed every byte written (reset when the server sends the whole file again), so the
/// digest is known when the last byte arrives.
pub(crate) async fn transfer(
    mut req: reqwest::RequestBuilder,
    part: &std::path::Path,
    name: &str,
    progress: &dyn Progress,
    started: &mut bool,
    mut hasher: Option<&mut sha2::Sha256>,
) -> Result<(), Transfer> {
    use sha2::Digest as _;
    let have = tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| Transfer::Retry(format!("request failed: {e}")))?;
    let status = resp.status();
    let append = match status.as_u16() {
        206 => {
            let cr = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            match cr {
                Some(cr) if cr.starts_with(&format!("bytes {have}-")) => true,
                other => {
                    return Err(Transfer::Fatal(format!(
                        "server answered Range bytes={have}- with Content-Range {other:?}"
                    )));
                }
            }
        }
        // The .part already holds the whole file (e.g. cut right after the last byte).
        416 if have > 0 => return Ok(()),
        200 => false,
        401 => {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(Transfer::Unauthorized(challenge));
        }
        s if (500..600).contains(&s) || s == 429 => {
            return Err(Transfer::Retry(format!("HTTP {status}")));
        }
        _ => return Err(Transfer::Fatal(format!("HTTP {status}"))),
    };
    let offset = if append { have } else { 0 };
    if !append && let Some(h) = hasher.as_deref_mut() {
        *h = sha2::Sha256::new();
    }
    let total = resp.content_length().map(|l| l + offset);
    if !*started {
        progress.start(name, total, offset);
        *started = true;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| Transfer::Fatal(format!("{}: {e}", part.display())))?;
    let mut got = offset;
    let res = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = f.write_all(&chunk).await {
                    break Err(Transfer::Fatal(format!("{}: {e}", part.display())));
                }
                if let Some(h) = hasher.as_deref_mut() {
                    h.update(&chunk);
                }
                got += chunk.len() as u64;
                progress.advance(name, chunk.len() as u64);
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                break Err(Transfer::Retry(format!(
                    "connection lost after {got} bytes: {e}"
                )));
            }
        }
    };
    // Keep what arrived even when the connection dropped: the next request resumes after it.
    f.flush()
        .await
        .map_err(|e| Transfer::Fatal(format!("{}: {e}", part.display())))?;
    f.sync_all()
        .await
        .map_err(|e| Transfer::Fatal(format!("{}: {e}", part.display())))?;
    res?;
    match total {
        Some(t) if got < t => Err(Transfer::Retry(format!("body ended at {got} of {t} bytes"))),
        _ => Ok(()),
    }
}
