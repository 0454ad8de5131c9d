//! Container images made on the deploy machine from verified binaries, as OCI archives.
//!
//! Where no registry can be reached (the lab), the images pods need are made here from binaries
//! the store already verified (the pause binary of the Kubernetes build, Debian's static
//! busybox): one uncompressed layer, a config, a manifest and an index, tarred in the OCI image
//! layout that `ctr images import` reads. Everything is deterministic (sorted entries, mtime 0,
//! root-owned), so the same binaries give the same digest on every machine.
//!
//! The store keeps each image as `down/images/<set>/<name>.tar` with `<name>.json` beside it
//! (reference, manifest digest, sha256 of the archive); an archive that no longer matches its
//! record is refused when it is used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ArtifactError;
use super::manifest::ImageSpec;
use super::store::Store;

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// What the store records of an image archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference containerd names it by, e.g. `ezk.local/pause:3.4`.
    pub reference: String,
    /// Digest of the image manifest (`sha256:...`): what `ctr images ls` shows.
    pub digest: String,
    /// sha256 of the archive file.
    pub archive_sha256: String,
}

/// A built image: its archive in the store and its record.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub archive: PathBuf,
    pub record: ImageRecord,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The uncompressed layer: parent dirs, `files` (path in image, source file), `links`.
fn layer(
    files: &[(String, PathBuf)],
    links: &[(String, String)],
) -> Result<Vec<u8>, ArtifactError> {
    let mut dirs = BTreeSet::new();
    let clean = |p: &str| p.trim_start_matches('/').to_string();
    for p in files
        .iter()
        .map(|(p, _)| p)
        .chain(links.iter().map(|(p, _)| p))
    {
        let mut parent = Path::new(&clean(p)).parent().map(Path::to_path_buf);
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.display().to_string());
            parent = d.parent().map(Path::to_path_buf);
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    };
    let io = |e: std::io::Error| ArtifactError::Image {
        name: "layer".into(),
        msg: e.to_string(),
    };
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(io)?;
    }
    let mut sorted: Vec<&(String, PathBuf)> = files.iter().collect();
    sorted.sort();
    for (p, src) in sorted {
        let data = std::fs::read(src).map_err(ArtifactError::io(src))?;
        let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
        b.append_data(&mut h, clean(p), data.as_slice())
            .map_err(io)?;
    }
    let mut sorted: Vec<&(String, String)> = links.iter().collect();
    sorted.sort();
    for (p, target) in sorted {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, clean(p), target).map_err(io)?;
    }
    b.into_inner().map_err(io)
}

/// Build the OCI archive of `spec` from resolved files into `out`; returns its record.
pub fn build(
    spec: &ImageSpec,
    files: &[(String, PathBuf)],
    out: &Path,
) -> Result<ImageRecord, ArtifactError> {
    let links: Vec<(String, String)> = spec
        .links
        .iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    let layer = layer(files, &links)?;
    let layer_digest = format!("sha256:{}", sha(&layer));
    let mut config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    if !spec.entrypoint.is_empty() {
        config["Entrypoint"] = serde_json::json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        config["Cmd"] = serde_json::json!(spec.cmd);
    }
    if let Some(u) = &spec.user {
        config["User"] = serde_json::json!(u);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .expect("json");
    let config_digest = format!("sha256:{}", sha(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .expect("json");
    let manifest_digest = format!("sha256:{}", sha(&manifest));
    let tag = spec
        .reference
        .rsplit_once(':')
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .expect("json");

    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let io = |e: std::io::Error| ArtifactError::Image {
        name: spec.name.clone(),
        msg: e.to_string(),
    };
    let mut add = |name: &str, data: &[u8]| -> Result<(), ArtifactError> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).map_err(io)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    let mut blobs = vec![
        (config_digest, config.as_slice()),
        (layer_digest, layer.as_slice()),
        (manifest_digest.clone(), manifest.as_slice()),
    ];
    blobs.sort();
    for (d, data) in blobs {
        add(
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            data,
        )?;
    }
    let archive = b.into_inner().map_err(io)?;
    let archive_sha256 = sha(&archive);
    super::store::mkdir_parent(out)?;
    let tmp = out.with_extension("tar.tmp");
    std::fs::write(&tmp, &archive).map_err(ArtifactError::io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(ArtifactError::io(out))?;
    Ok(ImageRecord {
        reference: spec.reference.clone(),
        digest: manifest_digest,
        archive_sha256,
    })
}

/// `down/images/<set>/<name>.tar` and `.json`.
fn paths(store: &Store, set: &str, name: &str) -> (PathBuf, PathBuf) {
    let dir = store.dir().join("images").join(set);
    (
        dir.join(format!("{name}.tar")),
        dir.join(format!("{name}.json")),
    )
}

/// Make every image of the set `k8s_ver` whose archive is missing or stale; each from binaries
/// the store verified. Returns (name, record, built now?).
pub fn build_set(
    store: &Store,
    k8s_ver: &str,
) -> Result<Vec<(String, ImageRecord, bool)>, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let mut out = Vec::new();
    for spec in &set.images {
        let mut files = Vec::new();
        for (path, bin) in &spec.files {
            files.push((path.clone(), store.binary(bin, set_name)?.path));
        }
        let (tar, json) = paths(store, set_name, &spec.name);
        // Rebuilding is cheap and deterministic: the same inputs give the same archive, so an
        // existing one is kept only if it is exactly what these inputs make.
        let tmp = tar.with_extension("new.tar");
        let record = build(spec, &files, &tmp)?;
        let same = image(store, set_name, &spec.name).is_ok_and(|l| l.record == record);
        if same {
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, &tar).map_err(ArtifactError::io(&tar))?;
            let text = serde_json::to_vec_pretty(&record).expect("json");
            std::fs::write(&json, text).map_err(ArtifactError::io(&json))?;
        }
        out.push((spec.name.clone(), record, !same));
    }
    Ok(out)
}

/// The image `name` of the set `k8s_ver` in the store, re-verified against its record.
pub fn image(store: &Store, k8s_ver: &str, name: &str) -> Result<LocalImage, ArtifactError> {
    let set_name = store.manifest().set(k8s_ver)?.0;
    let (tar, json) = paths(store, set_name, name);
    let missing = |why: String| ArtifactError::Image {
        name: name.to_string(),
        msg: format!("{why}; make it with: ezk download --k8s-ver {set_name} --from-apt"),
    };
    let text = std::fs::read(&json).map_err(|e| missing(format!("{}: {e}", json.display())))?;
    let record: ImageRecord =
        serde_json::from_slice(&text).map_err(|e| missing(format!("{}: {e}", json.display())))?;
    let got = super::sha256_file(&tar).map_err(|e| missing(e.to_string()))?;
    if got != record.archive_sha256 {
        return Err(ArtifactError::BinaryMismatch {
            path: tar,
            binary: format!("image {name}"),
            expected: record.archive_sha256,
            got,
        });
    }
    Ok(LocalImage {
        archive: tar,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            name: "t".into(),
            reference: "ezk.local/t:1".into(),
            files: [("/bin/tool".to_string(), "tool".to_string())]
                .into_iter()
                .collect(),
            links: [("/bin/sh".to_string(), "tool".to_string())]
                .into_iter()
                .collect(),
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            user: None,
        }
    }

    #[test]
    fn same_binaries_same_digest_and_a_readable_layout() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, b"#!/bin/true\n").unwrap();
        let files = vec![("/bin/tool".to_string(), bin.clone())];
        let a = build(&spec(), &files, &dir.path().join("a.tar")).unwrap();
        let b = build(&spec(), &files, &dir.path().join("b.tar")).unwrap();
        assert_eq!(a, b, "deterministic");
        assert_eq!(
            std::fs::read(dir.path().join("a.tar")).unwrap(),
            std::fs::read(dir.path().join("b.tar")).unwrap()
        );
        // The layout: oci-layout, index.json naming the ref, and every blob under its digest.
        let mut ar = tar::Archive::new(std::fs::File::open(dir.path().join("a.tar")).unwrap());
        let mut names = Vec::new();
        let mut index = String::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut e, &mut index).unwrap();
            } else if let Some(d) = name.strip_prefix("blobs/sha256/") {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                assert_eq!(sha(&data), d, "blob {name} is stored under its digest");
            }
            names.push(name);
        }
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(
            index.contains("\"io.containerd.image.name\":\"ezk.local/t:1\""),
            "{index}"
        );
        assert!(index.contains(&a.digest), "{index}");
        // A changed binary changes the digest.
        std::fs::write(&bin, b"#!/bin/false\n").unwrap();
        let c = build(&spec(), &files, &dir.path().join("c.tar")).unwrap();
        assert_ne!(c.digest, a.digest);
    }
}
