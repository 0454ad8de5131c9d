//! Container images in the store: OCI image layouts and the archives `ctr images import` reads.
//!
//! Two kinds fill it. Where no registry can be reached (the lab), the images pods need are
//! made here from binaries the store already verified (the pause binary of the Kubernetes
//! build, Debian's static busybox): one uncompressed layer, a config and a manifest, every byte
//! deterministic (sorted entries, mtime 0, root-owned), so the same binaries give the same
//! digest on every machine. The others are fetched from their registry by digest (`registry`).
//!
//! Every image is kept as
//! - `down/images/<set>/<name>/`: an OCI image layout (`oci-layout`, `index.json` naming the one
//!   linux/amd64 manifest under the image's reference, `blobs/sha256/<hex>`), from which a
//!   host's registry is filled blob by blob;
//! - `down/images/<set>/<name>.tar`: the same layout in one tar (what `ctr images import` reads);
//! - `down/images/<set>/<name>.json`: its record (reference, manifest digest, sha256 of the
//!   archive, and for a fetched image the digest it was pinned to).
//!
//! A fetched image's layout also keeps the pinned blob itself when it is a multi-platform index,
//! so the chain pinned digest → manifest → config and layers can be checked again from the
//! layout alone (`check_layout`: after a fetch, on a bundle's import). An archive that no
//! longer matches its record is refused when it is used.
//!
//! One file because both kinds end in the same OCI layout and import archive, written and read by
//! the same code (a tenth of the file is its tests).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ArtifactError;
use super::manifest::ImageSpec;
use super::store::Store;

pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
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
    /// For an image fetched from its registry: the digest it is pinned to in the versions
    /// manifest (the index's, for a multi-platform image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

/// A built image: its archive in the store and its record.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub archive: PathBuf,
    pub record: ImageRecord,
}

/// One blob an image is made of, in its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub path: PathBuf,
}

/// An image's manifest and the blobs it names (config first, then the layers), each a verified
/// file of its OCI layout: what a registry needs to serve it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub manifest: Blob,
    pub blobs: Vec<Blob>,
}

/// A content descriptor (media type, digest, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn image_err(name: &str, msg: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Image {
        name: name.to_string(),
        msg: msg.to_string(),
    }
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
    let io = |e: std::io::Error| image_err("layer", e);
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

/// `<layout>/blobs/sha256/<hex>` of `digest`.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Write `data` as a blob of `layout`; returns its descriptor.
fn put_blob(layout: &Path, media_type: &str, data: &[u8]) -> Result<Descriptor, ArtifactError> {
    let digest = format!("sha256:{}", sha(data));
    let path = blob_path(layout, &digest);
    super::store::mkdir_parent(&path)?;
    std::fs::write(&path, data).map_err(ArtifactError::io(&path))?;
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest,
        size: data.len() as u64,
    })
}

/// Make the image of `spec` from resolved files: its layout in `layout` (a fresh directory)
/// and its archive at `archive`; returns its record.
pub fn build(
    spec: &ImageSpec,
    files: &[(String, PathBuf)],
    layout: &Path,
    archive: &Path,
) -> Result<ImageRecord, ArtifactError> {
    let links: Vec<(String, String)> = spec
        .links
        .iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    let _ = std::fs::remove_dir_all(layout);
    let layer = put_blob(layout, MEDIA_LAYER, &layer(files, &links)?)?;
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
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }))
    .expect("json");
    let config = put_blob(layout, MEDIA_CONFIG, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }))
    .expect("json");
    let manifest = put_blob(layout, MEDIA_MANIFEST, &manifest)?;
    pack(layout, &manifest, &spec.reference, None, archive)
}

/// Finish a layout whose blobs are in place: `index.json` naming `manifest` under `reference`,
/// `oci-layout`, and the archive of it all at `archive` (deterministic: the same blobs give the
/// same bytes). Returns the record.
pub(crate) fn pack(
    layout: &Path,
    manifest: &Descriptor,
    reference: &str,
    pinned: Option<String>,
    archive: &Path,
) -> Result<ImageRecord, ArtifactError> {
    let tag = reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .expect("json");
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    for (name, data) in [("index.json", index.as_slice()), ("oci-layout", oci_layout)] {
        let p = layout.join(name);
        std::fs::write(&p, data).map_err(ArtifactError::io(&p))?;
    }
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .map_err(ArtifactError::io(layout))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    blobs.sort();
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let io = |e: std::io::Error| image_err(reference, e);
    let mut add = |name: &str, data: &[u8]| -> Result<(), ArtifactError> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).map_err(io)
    };
    add("oci-layout", oci_layout)?;
    add("index.json", &index)?;
    for hex in blobs {
        let path = layout.join("blobs/sha256").join(&hex);
        let data = std::fs::read(&path).map_err(ArtifactError::io(&path))?;
        add(&format!("blobs/sha256/{hex}"), &data)?;
    }
    let bytes = b.into_inner().map_err(io)?;
    super::store::mkdir_parent(archive)?;
    let tmp = archive.with_extension("tar.tmp");
    std::fs::write(&tmp, &bytes).map_err(ArtifactError::io(&tmp))?;
    std::fs::rename(&tmp, archive).map_err(ArtifactError::io(archive))?;
    Ok(ImageRecord {
        reference: reference.to_string(),
        digest: manifest.digest.clone(),
        archive_sha256: sha(&bytes),
        pinned,
    })
}

/// `down/images/<set>/<name>.tar`, `.json` and the layout directory `<name>/`.
pub(crate) fn paths(store: &Store, set: &str, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = store.dir().join("images").join(set);
    (
        dir.join(format!("{name}.tar")),
        dir.join(format!("{name}.json")),
        dir.join(name),
    )
}

/// Put a finished image in place: the layout from `staged` (renamed over any older one), the
/// archive from `staged_tar`, then the record (written last: present = complete).
pub(crate) fn commit(
    store: &Store,
    set: &str,
    name: &str,
    staged: &Path,
    staged_tar: &Path,
    record: &ImageRecord,
) -> Result<(), ArtifactError> {
    let (tar, json, layout) = paths(store, set, name);
    let _ = std::fs::remove_file(&json);
    if staged != layout {
        let _ = std::fs::remove_dir_all(&layout);
        std::fs::rename(staged, &layout).map_err(ArtifactError::io(&layout))?;
    }
    std::fs::rename(staged_tar, &tar).map_err(ArtifactError::io(&tar))?;
    let text = serde_json::to_vec_pretty(record).expect("json");
    std::fs::write(&json, text).map_err(ArtifactError::io(&json))
}

/// Make every image of the set `k8s_ver` that is made here (not fetched) and whose archive or
/// layout is missing or stale; each from binaries the store verified. Returns (name, record,
/// made now?).
pub fn build_set(
    store: &Store,
    k8s_ver: &str,
) -> Result<Vec<(String, ImageRecord, bool)>, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let mut out = Vec::new();
    for spec in set.images.iter().filter(|i| !i.pulled()) {
        let mut files = Vec::new();
        for (path, bin) in &spec.files {
            files.push((path.clone(), store.binary(bin, set_name)?.path));
        }
        let (tar, _, layout) = paths(store, set_name, &spec.name);
        // Making it again is cheap and deterministic: the same inputs give the same archive,
        // so an existing one is kept only if it is exactly what these inputs make.
        let staged = layout.with_extension("new");
        let staged_tar = tar.with_extension("new.tar");
        let record = build(spec, &files, &staged, &staged_tar)?;
        let same = layout.join("index.json").is_file()
            && image(store, set_name, &spec.name).is_ok_and(|l| l.record == record);
        if same {
            let _ = std::fs::remove_dir_all(&staged);
            let _ = std::fs::remove_file(&staged_tar);
        } else {
            commit(store, set_name, &spec.name, &staged, &staged_tar, &record)?;
        }
        out.push((spec.name.clone(), record, !same));
    }
    Ok(out)
}

/// The image `name` of the set `k8s_ver` in the store, re-verified against its record.
pub fn image(store: &Store, k8s_ver: &str, name: &str) -> Result<LocalImage, ArtifactError> {
    let (set_name, set) = store.manifest().set(k8s_ver)?;
    let (tar, json, _) = paths(store, set_name, name);
    let how = match set.image(name) {
        Some(i) if i.pulled() => format!("ezk download --k8s-ver {set_name}"),
        _ => format!("ezk download --k8s-ver {set_name} --from-apt"),
    };
    let missing = |why: String| image_err(name, format!("{why}; make it with: {how}"));
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

/// The manifest and blobs of image `name` (set `k8s_ver`) from its layout, for a registry to
/// serve: the layout must name the manifest its record names, and each blob must still hash
/// to its digest (a blob unchanged since it last did is not hashed again, see `verified`).
pub fn layout(store: &Store, k8s_ver: &str, name: &str) -> Result<Layout, ArtifactError> {
    let local = image(store, k8s_ver, name)?;
    let set_name = store.manifest().set(k8s_ver)?.0;
    let dir = paths(store, set_name, name).2;
    let checked = read_layout(&dir, |path, digest| {
        let (d, hex) = (path.parent().expect("in blobs/sha256"), digest.trim_start_matches("sha256:"));
        if super::verified::known(d, hex, hex) {
            return Ok(());
        }
        let got = super::sha256_file(path).map_err(|e| e.to_string())?;
        if got != hex {
            return Err(format!("{} hashes to sha256:{got}", path.display()));
        }
        super::verified::remember(d, hex, hex);
        Ok(())
    })
    .map_err(|e| image_err(name, format!("layout {}: {e}; make it again with: ezk download --k8s-ver {set_name}", dir.display())))?;
    if checked.manifest.digest != local.record.digest {
        return Err(image_err(
            name,
            format!("layout {} names manifest {}, its record {}", dir.display(), checked.manifest.digest, local.record.digest),
        ));
    }
    let blob = |digest: &String| Blob { digest: digest.clone(), path: blob_path(&dir, digest) };
    Ok(Layout {
        manifest: blob(&checked.manifest.digest),
        blobs: checked.blobs.iter().map(blob).collect(),
    })
}

/// What `read_layout` found: the manifest `index.json` names and the blobs it names.
pub(crate) struct Checked {
    pub manifest: Descriptor,
    pub blobs: Vec<String>,
}

/// Read the layout in `dir`: `index.json` must name exactly one image manifest, and that
/// manifest a config and layers; `verify(path, digest)` checks each blob's bytes (the
/// manifest's own are always hashed, since it is parsed).
pub(crate) fn read_layout(
    dir: &Path,
    verify: impl Fn(&Path, &str) -> Result<(), String>,
) -> Result<Checked, String> {
    let index = std::fs::read(dir.join("index.json")).map_err(|e| format!("index.json: {e}"))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| format!("index.json: {e}"))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let [m] = manifests.as_slice() else {
        return Err(format!("index.json names {} manifests, not one", manifests.len()));
    };
    let manifest = descriptor(m).ok_or("index.json: a manifest without mediaType, digest or size")?;
    let bytes = read_blob(dir, &manifest.digest)?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest {}: {e}", manifest.digest))?;
    let mut blobs = Vec::new();
    let config = descriptor(&parsed["config"]).ok_or("the manifest has no config")?;
    blobs.push(config.digest);
    for l in parsed["layers"].as_array().into_iter().flatten() {
        blobs.push(descriptor(l).ok_or("a layer without mediaType, digest or size")?.digest);
    }
    for d in &blobs {
        let p = blob_path(dir, d);
        if !p.is_file() {
            return Err(format!("blob {d} is missing"));
        }
        verify(&p, d)?;
    }
    Ok(Checked { manifest, blobs })
}

/// The bytes of blob `digest` of `dir`, checked against the digest.
pub(crate) fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("digest {digest:?} is not sha256:<64 hex>"))?;
    let p = blob_path(dir, digest);
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let got = sha(&bytes);
    if got != hex {
        return Err(format!("blob {digest} hashes to sha256:{got}"));
    }
    Ok(bytes)
}

/// A descriptor object (`mediaType`, `digest`, `size`).
pub(crate) fn descriptor(v: &serde_json::Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: v["mediaType"].as_str()?.to_string(),
        digest: v["digest"].as_str()?.to_string(),
        size: v["size"].as_u64()?,
    })
}

/// Whether a manifest's media type is a multi-platform index.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

/// The linux/amd64 manifest an index lists.
pub(crate) fn pick_amd64(index: &serde_json::Value) -> Option<Descriptor> {
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        (p["os"] == "linux" && p["architecture"] == "amd64").then(|| descriptor(m)).flatten()
    })
}

/// A fetched image's layout checked end to end against its pin: the pinned blob is the manifest
/// `index.json` names, or an index whose linux/amd64 entry is that manifest; every blob hashes
/// to its digest. Returns the manifest's descriptor.
pub(crate) fn check_pulled(dir: &Path, pinned: &str) -> Result<Descriptor, String> {
    let checked = read_layout(dir, |p, d| {
        let got = super::sha256_file(p).map_err(|e| e.to_string())?;
        (format!("sha256:{got}") == d).then_some(()).ok_or_else(|| format!("blob {d} hashes to sha256:{got}"))
    })?;
    if checked.manifest.digest != pinned {
        let top = read_blob(dir, pinned)?;
        let top: serde_json::Value =
            serde_json::from_slice(&top).map_err(|e| format!("index {pinned}: {e}"))?;
        let amd64 = pick_amd64(&top).ok_or_else(|| format!("index {pinned} lists no linux/amd64 manifest"))?;
        if amd64.digest != checked.manifest.digest {
            return Err(format!(
                "index {pinned} names {} for linux/amd64, the layout {}",
                amd64.digest, checked.manifest.digest
            ));
        }
    }
    Ok(checked.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            name: "t".into(),
            reference: "ezk.local/t:1".into(),
            digest: None,
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
        let a = build(&spec(), &files, &dir.path().join("a"), &dir.path().join("a.tar")).unwrap();
        let b = build(&spec(), &files, &dir.path().join("b"), &dir.path().join("b.tar")).unwrap();
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
        let c = build(&spec(), &files, &dir.path().join("c"), &dir.path().join("c.tar")).unwrap();
        assert_ne!(c.digest, a.digest);
    }
}
