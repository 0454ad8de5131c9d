//! Offline bundles: a verified store in one tar, and its re-verified import.
//!
//! A bundle holds `manifest.yml` (the writer's manifest, for reference only), every verified
//! release file under `files/<name>/<version>/<filename>`, and, for `deb` artifacts that were
//! filled from installed packages (no `.deb` in the store), their binaries under
//! `bin/<name>/<version>/`. Import trusts nothing in the bundle: each file must match the
//! importing ezk's own manifest, binaries are re-extracted from verified files, and deb
//! binaries must match their pinned sha256. Any failure rejects the whole bundle and leaves
//! the store as it was. Taken from the bundle as the operator's own choice: `pins/<release>.sha256`, the
//! Kubernetes digests an operator took for an unpinned release (`ezk download --sha256sums`),
//! accepted only for releases this ezk lists as unpinned and never against its own pins.
//!
//! Container images fetched by digest travel as their OCI layouts under
//! `images/<set>/<name>/`; on import each is checked end to end against the importing ezk's pin
//! (`oci::check_pulled`: the pinned blob, its linux/amd64 manifest, every blob's digest) before
//! it is packed into the store. Images made from binaries are not carried: the import makes
//! them again from the binaries it verified (the same binaries give the same image).

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::manifest::{Artifact, Kind};
use super::store::Store;
use super::{ArtifactError, digest_file};

/// What a bundle holds: `(artifact name, version)` pairs.
pub type Contents = Vec<(String, String)>;

/// Write every complete artifact of the store into a tar at `out`.
pub fn write_bundle(store: &Store, out: &Path) -> Result<Contents, ArtifactError> {
    let bad = |msg: String| ArtifactError::Bundle {
        path: out.to_path_buf(),
        msg,
    };
    let tmp = out.with_extension("tar.part");
    let f = fs::File::create(&tmp).map_err(ArtifactError::io(&tmp))?;
    let mut b = tar::Builder::new(f);
    b.mode(tar::HeaderMode::Deterministic);
    let mut text = store.manifest().text.as_bytes();
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.yml", &mut text)
        .map_err(|e| bad(e.to_string()))?;
    // Before the files they pin, which import reads in order.
    for (release, pins) in store.pin_files()? {
        let mut h = tar::Header::new_gnu();
        h.set_size(pins.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("pins/{release}.sha256"), pins.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
    }
    let mut contents = Contents::new();
    for a in store.manifest().all_artifacts() {
        if !store.is_complete(a) {
            continue;
        }
        let file = store.file_path(a);
        let rel = Store::rel(a);
        // A build's source tarball cannot be unpacked into binaries: its binaries travel.
        if file.is_file() && a.kind != Kind::DebianSource {
            let name = Path::new("files").join(&rel).join(a.filename());
            b.append_path_with_name(&file, name)
                .map_err(|e| bad(e.to_string()))?;
        } else if a.kind.pins_members() {
            for (_, bin) in a.binaries() {
                let name = Path::new("bin").join(&rel).join(bin);
                b.append_path_with_name(store.bin_dir(a).join(bin), name)
                    .map_err(|e| bad(e.to_string()))?;
            }
        } else {
            continue;
        }
        contents.push((a.name.clone(), a.version.clone()));
    }
    for (set, vs) in &store.manifest().sets {
        for img in vs.images.iter().filter(|i| i.pulled()) {
            let have = super::oci::image(store, set, &img.name);
            if !have.is_ok_and(|i| i.record.pinned == img.digest) {
                continue;
            }
            let dir = super::oci::paths(store, set, &img.name).2;
            let name = Path::new("images").join(set).join(&img.name);
            b.append_dir_all(&name, &dir).map_err(|e| bad(e.to_string()))?;
            contents.push((format!("image {}", img.name), set.clone()));
        }
    }
    b.into_inner()
        .and_then(|f| f.sync_all())
        .map_err(|e| bad(e.to_string()))?;
    fs::rename(&tmp, out).map_err(ArtifactError::io(out))?;
    Ok(contents)
}

/// Import a bundle into `store`, re-verifying everything first; all or nothing.
pub fn import_bundle(store: &Store, bundle: &Path) -> Result<Contents, ArtifactError> {
    let bad = |msg: String| ArtifactError::Bundle {
        path: bundle.to_path_buf(),
        msg,
    };
    let staging = store.dir().join(format!(".import-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(ArtifactError::io(&staging))?;
    let pins = bundle_pins(bundle)?;
    let mut pinned = store.clone();
    for (release, text) in &pins {
        pinned
            .apply_pins(release, text, &format!("bundle {}", bundle.display()))
            .map_err(|e| bad(format!("rejected, store unchanged: {e}")))?;
    }
    let store = &pinned;
    let result = stage_and_verify(store, bundle, &staging).and_then(|plan| {
        let mut contents = Contents::new();
        for (a, staged) in &plan.artifacts {
            match staged {
                Staged::File(p) => store.ingest(a, p, &format!("bundle {}", bundle.display()))?,
                Staged::Bins(dir) => store.install_pinned(a, |_, bin| dir.join(bin))?,
            }
            contents.push((a.name.clone(), a.version.clone()));
        }
        for img in &plan.images {
            let (tar, _, _) = super::oci::paths(store, &img.set, &img.name);
            let staged_tar = tar.with_extension("new.tar");
            let record = super::oci::pack(&img.dir, &img.manifest, &img.reference, Some(img.pinned.clone()), &staged_tar)?;
            super::oci::commit(store, &img.set, &img.name, &img.dir, &staged_tar, &record)?;
            contents.push((format!("image {}", img.name), img.set.clone()));
        }
        // Images made from binaries: made again here, for every set whose binaries are now all
        // in the store (best effort: a set that lacks some stays without its images).
        for set in store.manifest().sets.keys() {
            if let Ok(made) = super::oci::build_set(store, set) {
                contents.extend(made.into_iter().map(|(n, _, _)| (format!("image {n}"), set.clone())));
            }
        }
        Ok(contents)
    });
    let _ = fs::remove_dir_all(&staging);
    if result.is_ok() {
        for (release, text) in &pins {
            store.keep_pins(release, text)?;
        }
    }
    result.map_err(|e| match e {
        ArtifactError::Bundle { .. } => e,
        other => bad(format!("rejected, store unchanged: {other}")),
    })
}

/// The `pins/<release>.sha256` entries of a bundle: `(release, text)`.
fn bundle_pins(bundle: &Path) -> Result<Vec<(String, String)>, ArtifactError> {
    let bad = |msg: String| ArtifactError::Bundle { path: bundle.to_path_buf(), msg: format!("rejected, store unchanged: {msg}") };
    let f = fs::File::open(bundle).map_err(ArtifactError::io(bundle))?;
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy().into_owned();
        let Some(release) = path.strip_prefix("pins/").and_then(|p| p.strip_suffix(".sha256")) else { continue };
        let release = release.to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).map_err(|e| bad(format!("{path}: {e}")))?;
        out.push((release, text));
    }
    Ok(out)
}

enum Staged {
    File(PathBuf),
    Bins(PathBuf),
}

/// An image of the bundle, staged and checked against its pin.
struct StagedImage {
    set: String,
    name: String,
    reference: String,
    pinned: String,
    dir: PathBuf,
    manifest: super::oci::Descriptor,
}

/// What an import installs, once everything in it was checked.
struct Plan<'m> {
    artifacts: Vec<(&'m Artifact, Staged)>,
    images: Vec<StagedImage>,
}

/// Unpack into `staging` and check every entry against the manifest; nothing touches the store.
fn stage_and_verify<'m>(
    store: &'m Store,
    bundle: &Path,
    staging: &Path,
) -> Result<Plan<'m>, ArtifactError> {
    let bad = |msg: String| ArtifactError::Bundle {
        path: bundle.to_path_buf(),
        msg: format!("rejected, store unchanged: {msg}"),
    };
    let f = fs::File::open(bundle).map_err(ArtifactError::io(bundle))?;
    let mut ar = tar::Archive::new(f);
    let mut plan: Vec<(&Artifact, Staged)> = Vec::new();
    let mut bin_dirs: Vec<(&Artifact, PathBuf)> = Vec::new();
    let mut image_dirs: Vec<(String, String)> = Vec::new();
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        match entry.header().entry_type() {
            t if t.is_dir() => continue,
            t if t.is_file() => {}
            // A link could point a verified name at anything on the importing machine.
            t => {
                return Err(bad(format!(
                    "entry {} is a {t:?}, only regular files are accepted",
                    path.display()
                )));
            }
        }
        let parts: Vec<String> = path
            .components()
            .map(|c| match c {
                Component::Normal(s) => Ok(s.to_string_lossy().into_owned()),
                _ => Err(bad(format!(
                    "entry {} is not a plain relative path",
                    path.display()
                ))),
            })
            .collect::<Result<_, _>>()?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["manifest.yml"] | ["pins", _] => continue,
            ["images", set, name, rest @ ..] if !rest.is_empty() => {
                let pulled = store.manifest().sets.get(*set).and_then(|s| s.image(name)).is_some_and(|i| i.pulled());
                if !pulled {
                    return Err(bad(format!("{} is not an image fetched by digest in this ezk's manifest", path.display())));
                }
                let dest = staging.join(&path);
                fs::create_dir_all(dest.parent().expect("has parent")).map_err(ArtifactError::io(staging))?;
                entry.unpack(&dest).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                let key = (set.to_string(), name.to_string());
                if !image_dirs.contains(&key) {
                    image_dirs.push(key);
                }
            }
            ["files", name, version, filename] => {
                let a = store
                    .manifest()
                    .find_file(name, version, filename)
                    .ok_or_else(|| {
                        bad(format!(
                            "{} is not an artifact of this ezk's manifest",
                            path.display()
                        ))
                    })?;
                let dest = staging.join(&path);
                fs::create_dir_all(dest.parent().expect("has parent"))
                    .map_err(ArtifactError::io(staging))?;
                entry
                    .unpack(&dest)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                let got = digest_file(&dest)?;
                if got != a.digest() {
                    return Err(bad(format!(
                        "{}: checksum mismatch, expected {}, got {got}",
                        path.display(),
                        a.digest()
                    )));
                }
                plan.push((a, Staged::File(dest)));
            }
            ["bin", name, version, bin] => {
                let a = store
                    .manifest()
                    .all_artifacts()
                    .into_iter()
                    .find(|a| {
                        a.name == *name
                            && a.version == *version
                            && a.kind.pins_members()
                            && a.provides(bin)
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "{} is not a pinned binary of this ezk's manifest",
                            path.display()
                        ))
                    })?;
                let dir = staging.join("bin").join(name).join(version);
                fs::create_dir_all(&dir).map_err(ArtifactError::io(&dir))?;
                let dest = dir.join(bin);
                entry
                    .unpack(&dest)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                let got = super::sha256_file(&dest)?;
                let want = a.member_sha256.get(*bin).cloned().unwrap_or_default();
                if got != want {
                    return Err(bad(format!(
                        "{}: checksum mismatch, expected sha256:{want}, got sha256:{got}",
                        path.display()
                    )));
                }
                if !bin_dirs.iter().any(|(o, _)| std::ptr::eq(*o, a)) {
                    bin_dirs.push((a, dir));
                }
            }
            _ => return Err(bad(format!("unexpected entry {}", path.display()))),
        }
    }
    for (a, dir) in bin_dirs {
        for (_, bin) in a.binaries() {
            if !dir.join(bin).is_file() {
                return Err(bad(format!("bin/{}/{}: {bin} missing", a.name, a.version)));
            }
        }
        plan.push((a, Staged::Bins(dir)));
    }
    let mut images = Vec::new();
    for (set, name) in image_dirs {
        let spec = store.manifest().sets[&set].image(&name).expect("checked above");
        let pinned = spec.digest.clone().expect("pulled");
        let dir = staging.join("images").join(&set).join(&name);
        let manifest = super::oci::check_pulled(&dir, &pinned)
            .map_err(|e| bad(format!("image {name} (set {set}, pinned {pinned}): {e}")))?;
        images.push(StagedImage { set, name, reference: spec.reference.clone(), pinned, dir, manifest });
    }
    Ok(Plan { artifacts: plan, images })
}
