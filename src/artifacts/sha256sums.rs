//! A release's own checksum file (`https://dl.k8s.io/release/vX.Y.Z/SHA256SUMS`), which the
//! operator names with `ezk download --sha256sums` to pin a release ezk has no digests for.
//! ezk reads it from where the operator said, takes the Kubernetes binaries' lines and nothing
//! else: no digest is guessed, and a binary the file does not list is an error.

use std::time::Duration;

use indexmap::IndexMap;

use super::ArtifactError;

/// A checksum file larger than this is not one (the real ones are a few KB).
const MAX_BYTES: usize = 4 << 20;

/// The text at `src`: an `http(s)://` URL, a `file://` URL or a path on this machine.
pub async fn read(src: &str) -> Result<String, ArtifactError> {
    let fail = |msg: String| ArtifactError::Sums { src: src.to_string(), msg };
    if !(src.starts_with("http://") || src.starts_with("https://")) {
        let path = std::path::Path::new(src.strip_prefix("file://").unwrap_or(src));
        let bytes = std::fs::read(path).map_err(ArtifactError::io(path))?;
        return text_of(bytes, src);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("ezk/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client.get(src).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    text_of(bytes.to_vec(), src)
}

fn text_of(bytes: Vec<u8>, src: &str) -> Result<String, ArtifactError> {
    if bytes.len() > MAX_BYTES {
        return Err(ArtifactError::Sums {
            src: src.to_string(),
            msg: format!("{} bytes: too large for a checksum file", bytes.len()),
        });
    }
    String::from_utf8(bytes).map_err(|_| ArtifactError::Sums { src: src.to_string(), msg: "not a text file".into() })
}

/// The linux/amd64 digest of each of `binaries` in the sha256sum-style `text` read from `src`:
/// lines `<sha256>  <path>` (path `bin/linux/amd64/<binary>`, or ending in it; a `*` or `./`
/// before it is allowed), optionally inside a PGP clear-signed envelope. Other lines are
/// ignored; a binary listed twice with two digests, or not at all, is an error.
pub fn kubernetes_digests(text: &str, binaries: &[String], src: &str) -> Result<IndexMap<String, String>, ArtifactError> {
    let refuse = |msg: String| ArtifactError::Sums { src: src.to_string(), msg };
    let mut found: IndexMap<String, String> = IndexMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN PGP SIGNATURE-----" {
            break;
        }
        let mut words = line.split_whitespace();
        let (Some(sha), Some(path), None) = (words.next(), words.next(), words.next()) else { continue };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = path.trim_start_matches('*').trim_start_matches("./");
        let Some(bin) = binaries.iter().find(|b| {
            let tail = format!("bin/linux/amd64/{b}");
            path == tail || path.ends_with(&format!("/{tail}"))
        }) else {
            continue;
        };
        let sha = sha.to_ascii_lowercase();
        if let Some(other) = found.insert(bin.clone(), sha.clone())
            && other != sha
        {
            return Err(refuse(format!("{bin} is listed twice, as sha256:{other} and sha256:{sha}")));
        }
    }
    let missing: Vec<&str> = binaries.iter().filter(|b| !found.contains_key(*b)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "no `<sha256>  bin/linux/amd64/<binary>` line for {}: is it the release's SHA256SUMS?",
            missing.join(", ")
        )));
    }
    Ok(binaries.iter().map(|b| (b.clone(), found[b].clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> Vec<String> {
        ["kubelet", "kubectl"].map(String::from).to_vec()
    }

    #[test]
    fn takes_the_amd64_lines_only() {
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let text = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{c}  bin/linux/arm64/kubelet\n{a}  bin/linux/amd64/kubelet\n\
             {b} *./bin/linux/amd64/kubectl\n{c}  kubernetes-server-linux-amd64.tar.gz\n-----BEGIN PGP SIGNATURE-----\n{c}  bin/linux/amd64/kubectl\n"
        );
        let got = kubernetes_digests(&text, &bins(), "s").unwrap();
        assert_eq!(got["kubelet"], a);
        assert_eq!(got["kubectl"], b);
    }

    #[test]
    fn a_missing_or_contradicting_line_is_an_error() {
        let a = "a".repeat(64);
        let err = kubernetes_digests(&format!("{a}  bin/linux/amd64/kubelet\n"), &bins(), "s").unwrap_err();
        assert!(err.to_string().contains("line for kubectl"), "{err}");
        let twice = format!("{a}  bin/linux/amd64/kubelet\n{}  v1.2.3/bin/linux/amd64/kubelet\n", "b".repeat(64));
        let err = kubernetes_digests(&twice, &bins(), "s").unwrap_err();
        assert!(err.to_string().contains("kubelet is listed twice"), "{err}");
        let err = kubernetes_digests("<html>404</html>", &bins(), "s").unwrap_err();
        assert!(err.to_string().contains("kubelet, kubectl"), "{err}");
    }
}
