//! The local artifact store under the home's `down/`.
//!
//! Layout (a mirror uses the same `files/` layout, so a store can be served as a mirror):
//!
//! ```text
//! down/files/<name>/<version>/<filename>        verified release file
//! down/files/<name>/<version>/<filename>.part   download in progress (resumed with Range)
//! down/bin/<name>/<version>/<binary>            extracted binary, mode 0755
//! down/bin/<name>/<version>/SHA256SUMS          "<sha256>  <binary>" — written last: present = complete
//! down/quarantine/<filename>.<unix time>        a file whose digest did not match; never used
//! down/images/<set>/<name>/, .tar, .json         container images (see `oci`)
//! down/pins/<release>.sha256                     Kubernetes digests the operator took for an
//!                                                unpinned release (`ezk download --sha256sums`)
//! ```
//!
//! A file reaches `files/` only by rename after its digest matched; binaries are extracted
//! into a temporary directory that is renamed into `bin/` once every member is there.
//!
//! One file because it is the store's one type and its on-disk layout: reading, ingesting and
//! verifying keep the same invariant (nothing unverified under `files/` or `bin/`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::extract::{self, Extracted};
use super::manifest::{Artifact, Manifest};
use super::{ArtifactError, digest_file, sha256_file};
use crate::home::Home;

/// A verified binary on the deploy machine, ready to be pushed to hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBinary {
    pub path: PathBuf,
    /// sha256 hex; the `binary` task compares it with the host's copy and skips equal ones.
    pub sha256: String,
}

/// The store: a directory plus the manifest that says what its files must hash to.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    manifest: Arc<Manifest>,
}

const SUMS: &str = "SHA256SUMS";
const PINS: &str = "pins";

impl Store {
    /// The home's store with the shipped manifest, plus the releases the operator pinned in
    /// this store with `ezk download --sha256sums` (`down/pins/`).
    pub fn open(home: &Home) -> Result<Store, ArtifactError> {
        let mut store = Store::at(home.store_dir(), Manifest::shipped()?);
        store.read_pins()?;
        Ok(store)
    }

    /// A store in `dir` governed by `manifest` (tests use their own manifest).
    pub fn at(dir: impl Into<PathBuf>, manifest: impl Into<Arc<Manifest>>) -> Store {
        Store {
            dir: dir.into(),
            manifest: manifest.into(),
        }
    }

    fn pin_path(&self, release: &str) -> PathBuf {
        self.dir.join(PINS).join(format!("{release}.sha256"))
    }

    /// Pin the unpinned release `k8s_ver` with the Kubernetes digests of the checksum file
    /// `from` (see `Manifest::pin_release`) and keep them in `down/pins/<release>.sha256`, so
    /// later commands (`ezk setup`) find the release. Returns the release.
    pub fn pin_release(&mut self, k8s_ver: &str, digests: &IndexMap<String, String>, from: &str) -> Result<String, ArtifactError> {
        let already = self.manifest.sets.contains_key(super::catalog::normalize(k8s_ver));
        let release = Arc::make_mut(&mut self.manifest).pin_release(k8s_ver, digests, from)?;
        if already {
            return Ok(release);
        }
        let mut text = format!(
            "# Kubernetes {release}: Kubernetes binaries pinned by `ezk download --sha256sums`\n# from: {from}\n"
        );
        for (bin, sha) in digests {
            text.push_str(&format!("{sha}  {bin}\n"));
        }
        self.keep_pins(&release, &text)?;
        Ok(release)
    }

    /// Add the operator's pins under `down/pins/` to the manifest (a release the manifest pins
    /// itself keeps its own pins: a file that disagrees is an error).
    fn read_pins(&mut self) -> Result<(), ArtifactError> {
        for (release, text) in self.pin_files()? {
            let path = self.pin_path(&release);
            self.apply_pins(&release, &text, &path.display().to_string())?;
        }
        Ok(())
    }

    /// `(release, text)` of every file under `down/pins/`, by name.
    pub fn pin_files(&self) -> Result<Vec<(String, String)>, ArtifactError> {
        let dir = self.dir.join(PINS);
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sha256"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let release = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let text = fs::read_to_string(&path).map_err(ArtifactError::io(&path))?;
                Ok((release, text))
            })
            .collect()
    }

    /// Pin `release` with the digests of a pins file's `text` (as `pin_release` writes it), read
    /// from `origin`.
    pub fn apply_pins(&mut self, release: &str, text: &str, origin: &str) -> Result<(), ArtifactError> {
        let from = text
            .lines()
            .find_map(|l| l.strip_prefix("# from: "))
            .map_or_else(|| origin.to_string(), |f| format!("{f} (kept in {origin})"));
        let mut digests = IndexMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((sha, bin)) = line.split_once("  ") else {
                return Err(ArtifactError::Manifest {
                    path: origin.to_string(),
                    msg: format!("line {line:?} is not `<sha256>  <binary>`; remove the file and pin the release again"),
                });
            };
            digests.insert(bin.to_string(), sha.to_string());
        }
        Arc::make_mut(&mut self.manifest).pin_release(release, &digests, &from)?;
        Ok(())
    }

    /// Keep a pins file's `text` for `release` in this store (a bundle's, once imported).
    pub fn keep_pins(&self, release: &str, text: &str) -> Result<(), ArtifactError> {
        let path = self.pin_path(release);
        mkdir_parent(&path)?;
        let tmp = path.with_extension("sha256.tmp");
        fs::write(&tmp, text).map_err(ArtifactError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(ArtifactError::io(&path))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest, shared.
    pub fn manifest_arc(&self) -> Arc<Manifest> {
        self.manifest.clone()
    }

    /// Relative `<name>/<version>` of an artifact, shared by `files/`, `bin/` and mirrors.
    pub fn rel(a: &Artifact) -> PathBuf {
        Path::new(&a.name).join(&a.version)
    }

    /// Where the verified file lives.
    pub fn file_path(&self, a: &Artifact) -> PathBuf {
        self.dir
            .join("files")
            .join(Store::rel(a))
            .join(a.filename())
    }

    /// Where a download in progress lives.
    pub fn part_path(&self, a: &Artifact) -> PathBuf {
        let mut p = self.file_path(a).into_os_string();
        p.push(".part");
        PathBuf::from(p)
    }

    /// Directory of the binaries extracted from `a`.
    pub fn bin_dir(&self, a: &Artifact) -> PathBuf {
        self.dir.join("bin").join(Store::rel(a))
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    /// The recorded sha256 of each binary extracted from `a`, if extraction completed.
    pub fn recorded(&self, a: &Artifact) -> Option<BTreeMap<String, String>> {
        let text = fs::read_to_string(self.bin_dir(a).join(SUMS)).ok()?;
        let mut m = BTreeMap::new();
        for line in text.lines() {
            let (sum, name) = line.split_once("  ")?;
            m.insert(name.to_string(), sum.to_string());
        }
        Some(m)
    }

    /// Whether every binary of `a` is in the store (nothing to fetch).
    pub fn is_complete(&self, a: &Artifact) -> bool {
        match self.recorded(a) {
            // A build's outputs too (a manifest that adds one, e.g. CoreDNS beside pause,
            // installs the build again), each pinned one with its pinned digest.
            Some(m) => {
                a.binaries().iter().all(|(_, b)| m.contains_key(*b))
                    && a.build.as_ref().is_none_or(|b| {
                        b.outputs.iter().all(|o| match b.output_sha256.get(o) {
                            Some(pin) => m.get(o).is_some_and(|s| s.eq_ignore_ascii_case(pin)),
                            None => m.contains_key(o),
                        })
                    })
            }
            None => false,
        }
    }

    /// A verified, extracted binary of the set `k8s_ver` (or a recorded output of one of its
    /// builds, such as `pause`). The file is re-hashed against the record unless it is
    /// unchanged since it last matched (`verified.rs`), so a binary changed on disk after
    /// extraction is refused.
    pub fn binary(&self, name: &str, k8s_ver: &str) -> Result<LocalBinary, ArtifactError> {
        let (set_name, set) = self.manifest.set(k8s_ver)?;
        let a = set
            .artifact_for(name)
            .or_else(|| set.build_output(name))
            .ok_or_else(|| ArtifactError::NotProvided {
                name: name.to_string(),
                set: set_name.to_string(),
            })?;
        let missing = || ArtifactError::Missing {
            name: name.to_string(),
            set: set_name.to_string(),
            dir: self.dir.clone(),
            cmd: fetch_command(set_name, &[a]),
        };
        let recorded = self.recorded(a).ok_or_else(missing)?;
        let want = recorded.get(name).ok_or_else(missing)?;
        let path = self.bin_dir(a).join(name);
        if !path.exists() {
            return Err(missing());
        }
        let dir = self.bin_dir(a);
        if super::verified::known(&dir, name, want) {
            return Ok(LocalBinary {
                path,
                sha256: want.clone(),
            });
        }
        let got = sha256_file(&path)?;
        if &got != want {
            return Err(ArtifactError::BinaryMismatch {
                path,
                binary: name.to_string(),
                expected: want.clone(),
                got,
            });
        }
        super::verified::remember(&dir, name, &got);
        Ok(LocalBinary { path, sha256: got })
    }

    /// Which of `names` are unknown to the set or absent from the store, each with a reason.
    /// `ezk setup` refuses a step when this is non-empty and prints [`Store::fetch_hint`].
    pub fn missing(&self, names: &[&str], k8s_ver: &str) -> Vec<String> {
        let (set_name, set) = match self.manifest.set(k8s_ver) {
            Ok(s) => s,
            Err(e) => return names.iter().map(|n| format!("{n}: {e}")).collect(),
        };
        let mut out = Vec::new();
        for n in names {
            match set.artifact_for(n) {
                None => out.push(format!("{n}: not in artifact set {set_name}")),
                Some(a) if !self.is_complete(a) => out.push(format!(
                    "{n}: artifact {} {} not downloaded",
                    a.name, a.version
                )),
                Some(_) => {}
            }
        }
        out
    }

    /// The command that fetches what `names` need (for messages).
    pub fn fetch_hint(&self, names: &[&str], k8s_ver: &str) -> String {
        match self.manifest.set(k8s_ver) {
            Ok((set_name, set)) => {
                let mut arts: Vec<&Artifact> =
                    names.iter().filter_map(|n| set.artifact_for(n)).collect();
                arts.dedup_by(|a, b| a.name == b.name);
                fetch_command(set_name, &arts)
            }
            Err(_) => format!("ezk download --k8s-ver {k8s_ver}"),
        }
    }

    /// Verify `src` against `a`'s digest; on a match move it to `files/` and extract its
    /// binaries; on a mismatch move it to quarantine and report URL, expected and got.
    pub fn ingest(&self, a: &Artifact, src: &Path, url: &str) -> Result<(), ArtifactError> {
        let expected = a.digest();
        let got = digest_file(src)?;
        if got != expected {
            let q = self.quarantine(a, src)?;
            return Err(ArtifactError::Mismatch {
                url: url.to_string(),
                expected: expected.to_string(),
                got: got.to_string(),
                quarantined: q,
            });
        }
        let dest = self.file_path(a);
        mkdir_parent(&dest)?;
        if src != dest {
            move_file(src, &dest)?;
        }
        self.extract_from(a, &dest)
    }

    /// (Re-)extract the binaries of a verified file into `bin/`, atomically per artifact.
    pub fn extract_from(&self, a: &Artifact, file: &Path) -> Result<(), ArtifactError> {
        let tmp = self.tmp_bin_dir(a)?;
        let sums = extract::extract(a, file, &tmp);
        let sums = match sums {
            Ok(s) => s,
            Err(e) => {
                remove_staging(&tmp);
                return Err(e);
            }
        };
        if a.kind.pins_members() {
            check_member_sums(a, &sums, &tmp, &[], |_| file.to_path_buf())?;
        }
        self.commit_bin(a, &tmp, &sums)
    }

    /// Install a build's outputs from `out`: every member checked against its pin, and each of
    /// `extras` (output name, sha256 recorded at build time) against its record.
    pub fn install_build(
        &self,
        a: &Artifact,
        out: &Path,
        extras: &[(String, String)],
    ) -> Result<(), ArtifactError> {
        self.install_checked(a, |path, _| out.join(path), extras)
    }

    /// Install the binaries of a `deb` artifact from an installed tree (`root`, usually `/`):
    /// each file must match its pinned `member_sha256`.
    pub fn install_deb_members(&self, a: &Artifact, root: &Path) -> Result<(), ArtifactError> {
        self.install_pinned(a, |path, _| root.join(extract::normalize(path)))
    }

    /// Install the binaries of a `deb` artifact from files located by `locate(member path,
    /// binary name)`; each must match its pinned `member_sha256`.
    pub fn install_pinned(
        &self,
        a: &Artifact,
        locate: impl Fn(&str, &str) -> PathBuf,
    ) -> Result<(), ArtifactError> {
        self.install_checked(a, locate, &[])
    }

    /// `install_pinned` plus unpinned `extras` (file name in the members' dir, expected sha256).
    fn install_checked(
        &self,
        a: &Artifact,
        locate: impl Fn(&str, &str) -> PathBuf,
        extras: &[(String, String)],
    ) -> Result<(), ArtifactError> {
        let tmp = self.tmp_bin_dir(a)?;
        let mut sums = Extracted::new();
        let extra_files: Vec<(&str, &str)> = extras
            .iter()
            .map(|(n, _)| (n.as_str(), n.as_str()))
            .collect();
        let members = a.members.iter().map(|(p, b)| (p.as_str(), b.as_str()));
        for (path, bin) in members.chain(extra_files) {
            let src = locate(path, bin);
            let f = fs::File::open(&src).map_err(ArtifactError::io(&src));
            let r = f.and_then(|f| extract::write_binary(f, &tmp.join(bin)));
            match r {
                Ok(sum) => {
                    sums.insert(bin.to_string(), sum);
                }
                Err(e) => {
                    remove_staging(&tmp);
                    return Err(e);
                }
            }
        }
        let origin = |bin: &str| {
            let member = a
                .members
                .iter()
                .find(|(_, b)| *b == bin)
                .map(|(p, _)| p.as_str())
                .unwrap_or(bin);
            locate(member, bin)
        };
        check_member_sums(a, &sums, &tmp, extras, origin)?;
        self.commit_bin(a, &tmp, &sums)
    }

    fn tmp_bin_dir(&self, a: &Artifact) -> Result<PathBuf, ArtifactError> {
        let final_dir = self.bin_dir(a);
        let tmp = final_dir.with_file_name(format!(".{}.tmp-{}", a.version, std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(ArtifactError::io(&tmp))?;
        Ok(tmp)
    }

    fn commit_bin(&self, a: &Artifact, tmp: &Path, sums: &Extracted) -> Result<(), ArtifactError> {
        let text: String = sums.iter().map(|(b, s)| format!("{s}  {b}\n")).collect();
        let sums_path = tmp.join(SUMS);
        fs::write(&sums_path, text).map_err(ArtifactError::io(&sums_path))?;
        let final_dir = self.bin_dir(a);
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(ArtifactError::io(&final_dir))?;
        }
        fs::rename(tmp, &final_dir).map_err(ArtifactError::io(&final_dir))
    }

    fn quarantine(&self, a: &Artifact, src: &Path) -> Result<PathBuf, ArtifactError> {
        self.quarantine_as(a.filename(), src)
    }

    /// Move `src` (a file whose digest did not match) into quarantine as `<name>.<time>`.
    pub fn quarantine_as(&self, name: &str, src: &Path) -> Result<PathBuf, ArtifactError> {
        let qd = self.quarantine_dir();
        fs::create_dir_all(&qd).map_err(ArtifactError::io(&qd))?;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let q = qd.join(format!("{name}.{ts}"));
        move_file(src, &q)?;
        Ok(q)
    }
}

/// Every binary of a deb or debian-source artifact must match its pin, and each extra its
/// recorded sha256; on a mismatch the staging dir goes away.
fn check_member_sums(
    a: &Artifact,
    sums: &Extracted,
    tmp: &Path,
    extras: &[(String, String)],
    origin: impl Fn(&str) -> PathBuf,
) -> Result<(), ArtifactError> {
    for (bin, got) in sums {
        let want = a
            .member_sha256
            .get(bin)
            .or_else(|| extras.iter().find(|(n, _)| n == bin).map(|(_, s)| s))
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        if *got != want {
            remove_staging(tmp);
            return Err(ArtifactError::BinaryMismatch {
                path: origin(bin),
                binary: format!("{bin} (pinned for {} {})", a.name, a.version),
                expected: want,
                got: got.clone(),
            });
        }
    }
    Ok(())
}

/// The command that fetches `artifacts` of `set`: `ezk download --k8s-ver SET --only a,b`.
/// Debian packages (the lab-debian set) have no upstream release URL to download from, so for
/// them it is `--from-apt` (apt-get download of the pinned .deb), the one source that works
/// without preparing files by hand.
pub fn fetch_command(set: &str, artifacts: &[&Artifact]) -> String {
    let mut cmd = format!("ezk download --k8s-ver {set}");
    if !artifacts.is_empty() && artifacts.iter().all(|a| a.kind.pins_members()) {
        cmd.push_str(" --from-apt");
    }
    if !artifacts.is_empty() {
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        cmd.push_str(&format!(" --only {}", names.join(",")));
    }
    cmd
}

/// Remove a staging dir and its parent if that is now empty (so a refused artifact leaves no trace).
fn remove_staging(tmp: &Path) {
    let _ = fs::remove_dir_all(tmp);
    if let Some(parent) = tmp.parent() {
        let _ = fs::remove_dir(parent);
    }
}

pub(crate) fn mkdir_parent(p: &Path) -> Result<(), ArtifactError> {
    let parent = p.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(ArtifactError::io(parent))
}

/// Rename, or copy + remove across file systems.
pub(crate) fn move_file(src: &Path, dest: &Path) -> Result<(), ArtifactError> {
    if fs::rename(src, dest).is_ok() {
        return Ok(());
    }
    fs::copy(src, dest).map_err(ArtifactError::io(dest))?;
    fs::remove_file(src).map_err(ArtifactError::io(src))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_store(dir: &Path) -> Store {
        Store::at(dir, Manifest::shipped().unwrap())
    }

    /// Regression: the hint for the lab-debian set said `ezk download --k8s-ver lab-debian
    /// --only etcd-server`, which tries an upstream download a .deb set does not have.
    #[test]
    fn hint_for_a_deb_set_fetches_through_apt() {
        let dir = tempfile::tempdir().unwrap();
        let store = shipped_store(dir.path());
        assert_eq!(
            store.fetch_hint(&["etcd", "etcdctl"], "lab-debian"),
            "ezk download --k8s-ver lab-debian --from-apt --only etcd-server,etcd-client"
        );
        // The error of a missing binary carries the same command.
        let err = store
            .binary("kubectl", "lab-debian")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("fetch it with: ezk download --k8s-ver lab-debian --from-apt --only kubernetes-server"),
            "{err}"
        );
    }

    #[test]
    fn hint_for_a_release_set_downloads_from_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let store = shipped_store(dir.path());
        let hint = store.fetch_hint(&["etcd", "etcdctl"], "v1.35.4");
        assert!(!hint.contains("--from-apt"), "{hint}");
        assert!(hint.ends_with(" --only etcd"), "{hint}");
        let err = store.binary("etcd", "v1.35.4").unwrap_err().to_string();
        assert!(!err.contains("--from-apt"), "{err}");
    }
}
