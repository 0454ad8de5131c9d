//! Image download against a real registry on loopback: Debian's `docker-registry` run by the
//! test on 127.0.0.1, a test image made by `oci` pushed into it (our own small push client,
//! below), then `ezk download`'s image fetch: digests verified, a multi-platform index resolved
//! to its linux/amd64 manifest, resume after a connection cut mid-blob (a cutting proxy in
//! front of the registry), a tampered blob refused and quarantined, and the registry's token
//! auth (docker-registry configured with `auth: token`, tokens from a tiny loopback token
//! server, a test double signing real ES256 JWTs the registry verifies).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ezk::artifacts::download::{self, Options, Status};
use ezk::artifacts::progress::Silent;
use ezk::artifacts::{ArtifactError, Manifest, Store, bundle, oci};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REGISTRY: &str = "/usr/bin/docker-registry";

fn skip() -> bool {
    if Path::new(REGISTRY).exists() {
        return false;
    }
    eprintln!("SKIPPED: {REGISTRY} not installed (tests/deps.sh installs docker-registry)");
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// docker-registry on 127.0.0.1, killed (by its pid) when dropped.
struct Registry {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Start it with `auth` (YAML under `auth:`, or empty) on its own storage in `dir`.
    async fn start(dir: &Path, auth: &str) -> Registry {
        let port = free_port();
        let root = dir.join("registry-storage");
        std::fs::create_dir_all(&root).unwrap();
        let config = dir.join(format!("registry-{port}.yml"));
        let auth = if auth.is_empty() { String::new() } else { format!("auth:\n{auth}") };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry { child, port, root };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/v2/")).send().await
                && (r.status() == 200 || r.status() == 401)
            {
                return reg;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("docker-registry did not answer on 127.0.0.1:{port}");
    }

    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

/// A test image made by `oci::build` from a file of `size` pseudo-random bytes (so its layer
/// is a blob worth cutting), as an OCI layout: (layout dir, its manifest digest, layer digest).
fn make_image(dir: &Path, name: &str, size: usize, seed: u8) -> (PathBuf, String, String) {
    let data: Vec<u8> = (0..size).map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect();
    let bin = dir.join(format!("{name}.bin"));
    std::fs::write(&bin, &data).unwrap();
    let spec: ezk::artifacts::manifest::ImageSpec = serde_yaml::from_str(&format!(
        "{{name: {name}, ref: \"ezk.test/{name}:1\", files: {{/bin/tool: tool}}, cmd: [/bin/tool]}}"
    ))
    .unwrap();
    let layout = dir.join(format!("{name}-layout"));
    let rec = oci::build(&spec, &[("/bin/tool".into(), bin)], &layout, &dir.join(format!("{name}.tar"))).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci::blob_path(&layout, &rec.digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    (layout, rec.digest, layer)
}

/// Our small push client: every blob of `layout`, its manifest under `tag`, and, when
/// `index_with` names another pushed manifest, an OCI index over both (arm64: the other one,
/// amd64: this one) pushed under `tag` instead. Returns the digest `tag` names. Answers a 401
/// with a token from the challenge's realm (push scope).
async fn push(base: &str, repo: &str, tag: &str, layout: &Path, manifest: &str, index_with: Option<&str>) -> String {
    let client = reqwest::Client::new();
    let token: Mutex<Option<String>> = Mutex::new(None);
    let send = |req: reqwest::RequestBuilder| {
        let t = token.lock().unwrap().clone();
        match t {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    };
    // One authenticated round: a 401 fetches a push token and the request is made again.
    macro_rules! call {
        ($mk:expr) => {{
            let mut resp = send($mk).send().await.unwrap();
            if resp.status() == 401 {
                let ch = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
                let realm = ch.split("realm=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
                let service = ch.split("service=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
                let body = client
                    .get(realm)
                    .query(&[("service", service), ("scope", format!("repository:{repo}:pull,push"))])
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                *token.lock().unwrap() = Some(v["token"].as_str().unwrap().to_string());
                resp = send($mk).send().await.unwrap();
            }
            resp
        }};
    }
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let digest = format!("sha256:{}", e.file_name().to_string_lossy());
        let data = std::fs::read(e.path()).unwrap();
        let resp = call!(client.post(format!("{base}/v2/{repo}/blobs/uploads/")));
        assert_eq!(resp.status(), 202, "start upload");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") { loc } else { format!("{base}{loc}") };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = call!(client.put(format!("{loc}{sep}digest={digest}")).body(data.clone()));
        assert_eq!(resp.status(), 201, "upload {digest}: {:?}", resp.text().await);
    }
    let put_manifest = |reference: String, media: &'static str, bytes: Vec<u8>| (reference, media, bytes);
    let bytes = std::fs::read(oci::blob_path(layout, manifest)).unwrap();
    let mut manifests = vec![put_manifest(manifest.to_string(), "application/vnd.oci.image.manifest.v1+json", bytes.clone())];
    let named = if let Some(other) = index_with {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }))
        .unwrap();
        let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&index)));
        manifests.push(put_manifest(tag.to_string(), "application/vnd.oci.image.index.v1+json", index));
        d
    } else {
        manifests.push(put_manifest(tag.to_string(), "application/vnd.oci.image.manifest.v1+json", bytes));
        manifest.to_string()
    };
    for (reference, media, bytes) in manifests {
        let resp = call!(client
            .put(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("content-type", media)
            .body(bytes.clone()));
        assert_eq!(resp.status(), 201, "manifest {reference}: {:?}", resp.text().await);
    }
    named
}

/// A versions manifest with one set `test` of no artifacts and the image `img` pinned.
fn store_for(dir: &Path, reference: &str, digest: &str) -> Arc<Store> {
    let y = format!("sets:\n  test:\n    artifacts: []\n    images:\n      - name: img\n        ref: \"{reference}\"\n        digest: \"{digest}\"\n");
    Arc::new(Store::at(dir.join("down"), Manifest::parse(&y, "test manifest").unwrap()))
}

async fn fetch(store: &Arc<Store>) -> download::Outcome {
    let opts = Options { attempts: 3, ..Options::default() };
    let mut out = download::download_all(store.clone(), "test", &opts, Arc::new(Silent)).await.unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// A TCP proxy to `target` that logs each request line (and its Range header) and, for the
/// first request whose line contains `cut_path`, closes the connection after `cut_after`
/// bytes of the answer.
struct CutProxy {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl CutProxy {
    async fn start(target: u16, cut_path: String, cut_after: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let armed = Arc::new(Mutex::new(Some((cut_path, cut_after))));
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (log, armed) = (l.clone(), armed.clone());
                tokio::spawn(async move {
                    let upstream = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    // Bytes of the answer still allowed through on this connection (None: all).
                    let budget: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
                    let b = budget.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            if let Some(line) = text.lines().next().filter(|l| l.starts_with("GET ")) {
                                let range = text.lines().find(|h| h.to_ascii_lowercase().starts_with("range:")).unwrap_or("");
                                log.lock().unwrap().push(format!("{line} {range}").trim().to_string());
                                let mut a = armed.lock().unwrap();
                                if a.as_ref().is_some_and(|(p, _)| line.contains(p.as_str())) {
                                    *b.lock().unwrap() = Some(a.take().unwrap().1);
                                }
                            }
                            if uw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let allowed = match *budget.lock().unwrap() {
                            Some(left) => left.min(n),
                            None => n,
                        };
                        if cw.write_all(&buf[..allowed]).await.is_err() {
                            break;
                        }
                        let mut bl = budget.lock().unwrap();
                        if let Some(left) = bl.as_mut() {
                            *left -= allowed;
                            if *left == 0 {
                                break;
                            }
                        }
                    }
                    up.abort();
                });
            }
        });
        CutProxy { port, log }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_from_a_real_registry_is_verified_resumed_and_tamper_proof() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), "").await;
    let base = format!("http://127.0.0.1:{}", reg.port);
    let (layout, manifest, layer) = make_image(dir.path(), "a", 3 << 20, 1);
    let (other_layout, other, _) = make_image(dir.path(), "b", 1000, 2);
    push(&base, "ezk/other", "1", &other_layout, &other, None).await;
    // The other platform's manifest must exist in the same repository for the index.
    push(&base, "ezk/img", "0", &other_layout, &other, None).await;
    let index = push(&base, "ezk/img", "1", &layout, &manifest, Some(&other)).await;

    // Through a proxy that cuts the layer's first transfer after 1 MiB of the answer.
    let proxy = CutProxy::start(reg.port, format!("/blobs/{layer}"), 1 << 20).await;
    let reference = format!("127.0.0.1:{}/ezk/img:1", proxy.port);
    let store = store_for(dir.path(), &reference, &index);
    let out = fetch(&store).await;
    match &out.result {
        Ok(Status::Downloaded { attempts, .. }) => assert!(*attempts >= 3, "config + layer, the layer twice: {attempts}"),
        other => panic!("{other:?}"),
    }
    let log = proxy.log.lock().unwrap().clone();
    let layer_gets: Vec<&String> = log.iter().filter(|l| l.contains(&format!("/blobs/{layer}"))).collect();
    assert_eq!(layer_gets.len(), 2, "{log:?}");
    assert!(!layer_gets[0].to_ascii_lowercase().contains("range"), "{log:?}");
    let resumed_at: u64 = layer_gets[1].rsplit("bytes=").next().unwrap().trim_end_matches('-').parse().unwrap();
    assert!(resumed_at > 0 && resumed_at < (1 << 20), "resumed within the first MiB: {log:?}");
    assert!(log.iter().any(|l| l.contains(&format!("/manifests/{index}"))), "asked by the pinned digest, not the tag: {log:?}");
    assert!(!log.iter().any(|l| l.contains(&format!("/blobs/{}", other.replace("sha256:", "sha256:")))) , "{log:?}");

    // What the store holds: the amd64 manifest under the reference, every blob at its digest.
    let img = oci::image(&store, "test", "img").unwrap();
    assert_eq!(img.record.digest, manifest, "the index's linux/amd64 manifest");
    assert_eq!(img.record.pinned.as_deref(), Some(index.as_str()));
    let l = oci::layout(&store, "test", "img").unwrap();
    assert_eq!(l.blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>().last().unwrap(), &layer);
    for b in l.blobs.iter().chain([&l.manifest]) {
        assert_eq!(format!("sha256:{}", crate::support::sha256_path(&b.path)), b.digest);
    }
    let again = fetch(&store).await;
    assert!(matches!(again.result, Ok(Status::AlreadyVerified)), "{:?}", again.result);

    // The archive is what `ctr images import` reads: index.json names the reference.
    let mut ar = tar::Archive::new(std::fs::File::open(&img.archive).unwrap());
    let mut index_json = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            std::io::Read::read_to_string(&mut e, &mut index_json).unwrap();
        }
    }
    assert!(index_json.contains(&reference) && index_json.contains(&manifest), "{index_json}");

    // Bundle → import into an empty store: the image comes along, re-checked against its pin.
    let bundle_path = dir.path().join("bundle.tar");
    bundle::write_bundle(&store, &bundle_path).unwrap();
    let other_store = Store::at(dir.path().join("other"), store.manifest().clone());
    let got = bundle::import_bundle(&other_store, &bundle_path).unwrap();
    assert!(got.iter().any(|(n, _)| n == "image img"), "{got:?}");
    assert_eq!(oci::image(&other_store, "test", "img").unwrap().record, img.record);

    // A tampered layer on the registry's disk: refused, quarantined, the store unchanged.
    let fresh = store_for(&dir.path().join("fresh"), &format!("127.0.0.1:{}/ezk/img:1", reg.port), &index);
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let out = fetch(&fresh).await;
    match &out.result {
        Err(ArtifactError::Mismatch { expected, got, quarantined, .. }) => {
            assert_eq!(expected, &layer);
            assert_eq!(got, &format!("sha256:{}", crate::support::sha256(&bytes)));
            assert_eq!(std::fs::read(quarantined).unwrap(), bytes, "the bad bytes are kept aside");
            assert!(quarantined.starts_with(fresh.quarantine_dir()));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(oci::image(&fresh, "test", "img").is_err(), "nothing unverified entered the store");

    // Import of a bundle whose image blob was changed: rejected whole, the store untouched.
    let mut raw = std::fs::read(&bundle_path).unwrap();
    let src = std::fs::read(oci::blob_path(&layout, &layer)).unwrap();
    let at = raw.windows(64).position(|w| w == &src[4096..4160]).expect("layer in the bundle");
    raw[at] ^= 0xff;
    let tampered = dir.path().join("tampered.tar");
    std::fs::write(&tampered, raw).unwrap();
    let third = Store::at(dir.path().join("third"), store.manifest().clone());
    let err = bundle::import_bundle(&third, &tampered).unwrap_err().to_string();
    assert!(err.contains("image img") && err.contains(&layer), "{err}");
    assert!(oci::image(&third, "test", "img").is_err());
}

/// A token server test double: hands out ES256 JWTs for whatever scope is asked (no password),
/// signed with a key whose self-signed certificate the registry trusts; logs each request's
/// query.
struct TokenServer {
    port: u16,
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
    cert_pem: String,
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// libtrust's key id, the registry's `kid`: sha256 of the DER public key, 240 bits, base32 in
/// 12 groups of 4.
fn libtrust_kid(spki_der: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let h = sha2::Sha256::digest(spki_der);
    let mut bits = String::new();
    for b in &h[..30] {
        bits.push_str(&format!("{b:08b}"));
    }
    let chars: Vec<char> = bits.as_bytes().chunks(5).map(|c| A[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char).collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(":")
}

/// An ECDSA signature as DER (r, s) → JWS's fixed 64 bytes.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

impl TokenServer {
    async fn start() -> TokenServer {
        use rcgen::{PublicKeyData, SigningKey};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ezk-test-token".into()]).unwrap().self_signed(&key).unwrap();
        let kid = libtrust_kid(&key.subject_public_key_info());
        let key = Arc::new(key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (key, kid, log) = (key.clone(), kid.clone(), l.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let target = req.split_whitespace().nth(1).unwrap_or("").to_string();
                    let query: HashMap<String, String> = target
                        .split_once('?')
                        .map(|(_, q)| q)
                        .unwrap_or("")
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",")))
                        .collect();
                    log.lock().unwrap().push(query.clone());
                    let access: Vec<serde_json::Value> = query
                        .get("scope")
                        .map(|s| {
                            let parts: Vec<&str> = s.split(':').collect();
                            vec![serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()})]
                        })
                        .unwrap_or_default();
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
                    let claims = serde_json::json!({
                        "iss": "ezk-test-issuer", "sub": "", "aud": query.get("service").cloned().unwrap_or_default(),
                        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{n}"), "access": access,
                    });
                    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
                    let sig = der_to_fixed(&key.sign(signing_input.as_bytes()).unwrap());
                    let token = format!("{signing_input}.{}", b64url(&sig));
                    let body = serde_json::json!({"token": token}).to_string();
                    let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        TokenServer { port, log, cert_pem: cert.pem() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_token_auth_gets_an_anonymous_pull_token() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start().await;
    let bundle_pem = dir.path().join("token-ca.pem");
    std::fs::write(&bundle_pem, &tokens.cert_pem).unwrap();
    let auth = format!(
        "  token:\n    realm: http://127.0.0.1:{}/token\n    service: ezk-test-registry\n    issuer: ezk-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        bundle_pem.display()
    );
    let reg = Registry::start(dir.path(), &auth).await;
    let base = format!("http://127.0.0.1:{}", reg.port);
    let anon = reqwest::get(format!("{base}/v2/")).await.unwrap();
    assert_eq!(anon.status(), 401, "the registry wants a token");
    let (layout, manifest, _) = make_image(dir.path(), "t", 4096, 3);
    push(&base, "ezk/secured", "1", &layout, &manifest, None).await;
    tokens.log.lock().unwrap().clear();

    let store = store_for(dir.path(), &format!("127.0.0.1:{}/ezk/secured:1", reg.port), &manifest);
    let out = fetch(&store).await;
    assert!(matches!(out.result, Ok(Status::Downloaded { .. })), "{:?}", out.result);
    assert_eq!(oci::image(&store, "test", "img").unwrap().record.digest, manifest);
    let log = tokens.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "one token for the whole image: {log:?}");
    assert_eq!(log[0].get("scope").map(String::as_str), Some("repository:ezk/secured:pull"), "{log:?}");
    assert_eq!(log[0].get("service").map(String::as_str), Some("ezk-test-registry"), "{log:?}");
}
