//! Container images fetched from their registry over the HTTP API v2, pinned by digest.
//!
//! For each image of a version set that has a `digest` (see `manifest::ImageSpec`): the
//! manifest is asked for by that digest (never by tag, so a moved tag changes nothing) and must
//! hash to it; a multi-platform index gives its linux/amd64 manifest, which must hash to the
//! digest the index names; the manifest names the config and layer blobs, each streamed into
//! `<blob>.part`, hashed as it arrives and kept only when it matches (else quarantined, like a
//! release file). A cut transfer resumes with `Range` (the same request loop as release files,
//! `download::transfer`), and the blobs already fetched stay in the image's staging layout
//! between runs. Anonymous bearer tokens are fetched when the registry asks for them (its 401's
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…`). The finished layout and archive go
//! into the store through `oci::pack`/`oci::commit`.
//!
//! Under 400 lines of code (the rest is its tests): one client of one API.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::ArtifactError;
use super::download::{Status, Transfer, transfer};
use super::manifest::ImageSpec;
use super::oci::{self, Descriptor};
use super::progress::Progress;
use super::store::Store;

/// An image reference split the way the registry API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port) as the reference writes it: `registry.k8s.io`, `docker.io`.
    pub registry: String,
    /// Repository within it: `coredns/coredns`, `library/busybox`.
    pub repository: String,
    /// Tag (`latest` when the reference names none).
    pub tag: String,
}

impl ImageRef {
    /// Split `registry.k8s.io/coredns/coredns:v1.12.1` (a trailing `@sha256:…` is ignored; a
    /// first component without a dot, colon or `localhost` is a Docker Hub repository).
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let r = reference.split('@').next().unwrap_or(reference);
        let (name, tag) = match r.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (r, "latest"),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let ok_repo = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        let ok_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok_repo || !ok_tag {
            return Err(format!("{reference:?} is not an image reference (registry/repository:tag)"));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.to_string(),
        })
    }

    /// Where its API lives: `https://<registry>` (Docker Hub's API host for `docker.io`), or
    /// plain HTTP for a registry on this machine's loopback, as docker and containerd treat
    /// `localhost` registries.
    pub fn api_base(&self) -> String {
        let host = self.registry.rsplit_once(':').map_or(self.registry.as_str(), |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) { h } else { self.registry.as_str() }
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match self.registry.as_str() {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            r if loopback => format!("http://{r}"),
            r => format!("https://{r}"),
        }
    }

    /// `<registry>/<repository>`: the repository a cluster's own registry serves the image
    /// under, so images of several registries cannot collide there.
    pub fn mirror_repository(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests are small; a larger answer is not one.
const MANIFEST_MAX: usize = 4 << 20;

/// One repository of one registry, with the bearer token it handed out (if it asked).
struct Repo<'a> {
    client: &'a reqwest::Client,
    base: String,
    repository: String,
    token: std::sync::Mutex<Option<String>>,
}

fn http_err(url: &str, msg: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Http {
        url: url.to_string(),
        msg: msg.to_string(),
    }
}

/// The `key="value"` parameters of a `Bearer` challenge; None for another scheme.
fn bearer_params(challenge: &str) -> Option<Vec<(String, String)>> {
    let rest = challenge.trim().strip_prefix("Bearer ")?;
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, n)| (v, n)),
        };
        out.push((key.trim().to_string(), value.to_string()));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

impl<'a> Repo<'a> {
    fn new(client: &'a reqwest::Client, r: &ImageRef) -> Repo<'a> {
        Repo {
            client,
            base: r.api_base(),
            repository: r.repository.clone(),
            token: std::sync::Mutex::new(None),
        }
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let req = self.client.get(url);
        match self.token.lock().expect("token lock").as_deref() {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Answer a 401: fetch an anonymous token from the challenge's realm for pulling this
    /// repository. Registries that want a password are not supported (ezk pulls public images).
    async fn authenticate(&self, url: &str, challenge: Option<&str>) -> Result<(), ArtifactError> {
        let params = challenge.and_then(bearer_params).ok_or_else(|| {
            http_err(url, format!("HTTP 401, and the registry asks for {:?}, not an anonymous bearer token", challenge.unwrap_or("nothing")))
        })?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = get("realm").filter(|r| r.starts_with("https://") || r.starts_with("http://"));
        let realm = realm.ok_or_else(|| http_err(url, "HTTP 401 with a Bearer challenge that names no http(s) realm"))?;
        let scope = get("scope").map_or_else(|| format!("repository:{}:pull", self.repository), str::to_string);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = get("service") {
            query.push(("service", service));
        }
        let resp = self.client.get(realm).query(&query).send().await.map_err(|e| http_err(realm, format!("token request: {e}")))?;
        if !resp.status().is_success() {
            return Err(http_err(realm, format!("token request: HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| http_err(realm, format!("token answer: {e}")))?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| http_err(realm, format!("token answer: {e}")))?;
        let token = body["token"].as_str().or(body["access_token"].as_str());
        let token = token.ok_or_else(|| http_err(realm, "token answer holds no token"))?;
        *self.token.lock().expect("token lock") = Some(token.to_string());
        Ok(())
    }

    /// The manifest (or index) `digest`: its media type and bytes, as sent.
    async fn manifest(&self, digest: &str) -> Result<(String, Vec<u8>), ArtifactError> {
        let url = self.url("manifests", digest);
        for round in 0..2 {
            let resp = self
                .get(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES)
                .send()
                .await
                .map_err(|e| http_err(&url, e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && round == 0 {
                let challenge = resp.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
                self.authenticate(&url, challenge.as_deref()).await?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(http_err(&url, format!("HTTP {}", resp.status())));
            }
            let media_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
                .unwrap_or_default();
            let bytes = resp.bytes().await.map_err(|e| http_err(&url, e))?;
            if bytes.len() > MANIFEST_MAX {
                return Err(http_err(&url, format!("a manifest of {} bytes", bytes.len())));
            }
            return Ok((media_type, bytes.to_vec()));
        }
        Err(http_err(&url, "HTTP 401 again with a fresh token"))
    }
}

/// Everything that can go wrong with one fetched blob or manifest when its digest is not the
/// one asked for: the bytes go to quarantine, the error names both digests and where they are.
fn mismatch(store: &Store, url: &str, expected: &str, got: &str, src: &Path) -> ArtifactError {
    let name = format!("blob-{}", expected.trim_start_matches("sha256:"));
    match store.quarantine_as(&name, src) {
        Ok(q) => ArtifactError::Mismatch {
            url: url.to_string(),
            expected: expected.to_string(),
            got: format!("sha256:{got}"),
            quarantined: q,
        },
        Err(e) => e,
    }
}

/// Keep manifest bytes that match `digest` as a blob of `layout`; else quarantine them.
fn keep_manifest(
    store: &Store,
    layout: &Path,
    url: &str,
    digest: &str,
    bytes: &[u8],
) -> Result<(), ArtifactError> {
    let path = oci::blob_path(layout, digest);
    super::store::mkdir_parent(&path)?;
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(ArtifactError::io(&tmp))?;
    let got = hex::encode(Sha256::digest(bytes));
    if format!("sha256:{got}") != digest {
        return Err(mismatch(store, url, digest, &got, &tmp));
    }
    std::fs::rename(&tmp, &path).map_err(ArtifactError::io(&path))
}

/// sha256 state of a file's current bytes (empty when it does not exist).
fn hash_of(path: &Path) -> Result<(Sha256, u64), ArtifactError> {
    let mut h = Sha256::new();
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok((h, 0));
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ArtifactError::io(path))?;
        if n == 0 {
            return Ok((h, n_total));
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
}

/// Counters of one image's fetch, for its outcome line.
#[derive(Default)]
struct Fetched {
    bytes: u64,
    resumed_from: u64,
    attempts: u32,
}

/// Fetch blob `d` into `layout` (skipped when a verified copy is there), resuming a `.part`.
async fn blob(
    store: &Store,
    repo: &Repo<'_>,
    layout: &Path,
    d: &Descriptor,
    attempts: u32,
    progress: &dyn Progress,
    label: &str,
    stats: &mut Fetched,
) -> Result<(), ArtifactError> {
    let dest = oci::blob_path(layout, &d.digest);
    let want = d.digest.trim_start_matches("sha256:");
    if dest.is_file() && super::sha256_file(&dest)? == want {
        return Ok(());
    }
    let part = dest.with_extension("part");
    super::store::mkdir_parent(&part)?;
    let (mut hasher, have) = hash_of(&part)?;
    stats.resumed_from += have;
    let url = repo.url("blobs", &d.digest);
    let (mut tries, mut started, mut last) = (0, false, String::new());
    let mut auth_rounds = 0;
    loop {
        if tries == attempts {
            return Err(http_err(&url, format!("gave up after {tries} attempts ({last}); rerun to resume from {}", part.display())));
        }
        tries += 1;
        if tries > 1 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
        }
        match transfer(repo.get(&url), &part, label, progress, &mut started, Some(&mut hasher)).await {
            Ok(()) => break,
            Err(Transfer::Unauthorized(challenge)) if auth_rounds < 2 => {
                auth_rounds += 1;
                tries -= 1;
                repo.authenticate(&url, challenge.as_deref()).await?;
            }
            Err(Transfer::Unauthorized(_)) => return Err(http_err(&url, "HTTP 401 again with a fresh token")),
            Err(Transfer::Fatal(msg)) => return Err(http_err(&url, msg)),
            Err(Transfer::Retry(msg)) => {
                let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                progress.note(label, &format!("{msg}; resuming at byte {have}"));
                last = msg;
            }
        }
    }
    stats.attempts += tries;
    stats.bytes += std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let got = hex::encode(hasher.finalize());
    if got != want {
        return Err(mismatch(store, &url, &d.digest, &got, &part));
    }
    std::fs::rename(&part, &dest).map_err(ArtifactError::io(&dest))
}

/// Fetch image `spec` of set `set` into the store, unless the store already holds it at its
/// pinned digest. Blobs already fetched by an interrupted run are kept and not fetched again.
pub async fn pull(
    store: &Store,
    set: &str,
    spec: &ImageSpec,
    client: &reqwest::Client,
    attempts: u32,
    progress: &dyn Progress,
) -> Result<Status, ArtifactError> {
    let pinned = spec.digest.as_deref().ok_or_else(|| ArtifactError::Image {
        name: spec.name.clone(),
        msg: "made here from binaries, not fetched".into(),
    })?;
    let (tar, _, layout) = oci::paths(store, set, &spec.name);
    let have = oci::image(store, set, &spec.name);
    if have.is_ok_and(|i| i.record.pinned.as_deref() == Some(pinned)) && layout.join("index.json").is_file() {
        return Ok(Status::AlreadyVerified);
    }
    let r = ImageRef::parse(&spec.reference).map_err(|msg| ArtifactError::Image { name: spec.name.clone(), msg })?;
    let repo = Repo::new(client, &r);
    // Kept between runs, so an interrupted fetch resumes; renamed into place when complete.
    let staged = layout.with_extension("partial");
    std::fs::create_dir_all(staged.join("blobs/sha256")).map_err(ArtifactError::io(&staged))?;
    let url = repo.url("manifests", pinned);
    let (media_type, top) = repo.manifest(pinned).await?;
    keep_manifest(store, &staged, &url, pinned, &top)?;
    let manifest = if oci::is_index(&media_type) {
        let index: serde_json::Value = serde_json::from_slice(&top).map_err(|e| http_err(&url, format!("index: {e}")))?;
        let d = oci::pick_amd64(&index).ok_or_else(|| http_err(&url, "the index lists no linux/amd64 image"))?;
        let (media_type, bytes) = repo.manifest(&d.digest).await?;
        keep_manifest(store, &staged, &repo.url("manifests", &d.digest), &d.digest, &bytes)?;
        Descriptor { media_type: if media_type.is_empty() { d.media_type } else { media_type }, digest: d.digest, size: bytes.len() as u64 }
    } else {
        Descriptor { media_type, digest: pinned.to_string(), size: top.len() as u64 }
    };
    let parsed: serde_json::Value = serde_json::from_slice(&oci::read_blob(&staged, &manifest.digest).map_err(|e| http_err(&url, e))?)
        .map_err(|e| http_err(&url, format!("manifest: {e}")))?;
    let mut blobs = vec![oci::descriptor(&parsed["config"]).ok_or_else(|| http_err(&url, "the manifest has no config"))?];
    for l in parsed["layers"].as_array().into_iter().flatten() {
        blobs.push(oci::descriptor(l).ok_or_else(|| http_err(&url, "a layer without mediaType, digest or size"))?);
    }
    let mut stats = Fetched::default();
    for d in &blobs {
        let label = format!("{} {}", spec.name, &d.digest.trim_start_matches("sha256:")[..12.min(d.digest.len() - 7)]);
        blob(store, &repo, &staged, d, attempts, progress, &label, &mut stats).await?;
    }
    // Every blob was checked as it arrived (or found matching), the manifest against the pin or
    // the digest the pinned index names: the layout is complete and verified.
    let staged_tar = tar.with_extension("new.tar");
    let record = oci::pack(&staged, &manifest, &spec.reference, Some(pinned.to_string()), &staged_tar)?;
    oci::commit(store, set, &spec.name, &staged, &staged_tar, &record)?;
    Ok(Status::Downloaded { bytes: stats.bytes, resumed_from: stats.resumed_from, attempts: stats.attempts.max(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_registries_read_them() {
        let r = ImageRef::parse("registry.k8s.io/coredns/coredns:v1.12.1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_str()), ("registry.k8s.io", "coredns/coredns", "v1.12.1"));
        assert_eq!(r.api_base(), "https://registry.k8s.io");
        assert_eq!(r.mirror_repository(), "registry.k8s.io/coredns/coredns");
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_str()), ("docker.io", "library/busybox", "latest"));
        assert_eq!(r.api_base(), "https://registry-1.docker.io");
        let r = ImageRef::parse("127.0.0.1:5000/ezk/busybox:1.35.0@sha256:abc").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_str()), ("127.0.0.1:5000", "ezk/busybox", "1.35.0"));
        assert_eq!(r.api_base(), "http://127.0.0.1:5000", "loopback registries speak plain HTTP");
        assert_eq!(ImageRef::parse("localhost:5000/a:1").unwrap().api_base(), "http://localhost:5000");
        assert_eq!(ImageRef::parse("10.0.0.1:5000/a:1").unwrap().api_base(), "https://10.0.0.1:5000");
        assert!(ImageRef::parse("registry.k8s.io/Pause:3.10").is_err());
        assert!(ImageRef::parse("registry.k8s.io/pause:").is_err());
    }

    #[test]
    fn bearer_challenges_parse() {
        let p = bearer_params(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#).unwrap();
        assert_eq!(p, vec![
            ("realm".to_string(), "https://auth.docker.io/token".to_string()),
            ("service".to_string(), "registry.docker.io".to_string()),
            ("scope".to_string(), "repository:library/busybox:pull".to_string()),
        ]);
        assert!(bearer_params(r#"Basic realm="registry""#).is_none());
    }
}
