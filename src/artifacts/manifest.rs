//! The versions manifest: for each supported `K8S_VER`, every release artifact with its pinned
//! upstream URL and digest, and which installed binaries it provides.
//!
//! The shipped manifest (`versions.yml` and the upstream catalog of `catalog.rs`, embedded) is
//! the only source of truth for what a file must hash to; a file is never trusted because of
//! where it came from. The one exception is asked for by name: `ezk download --sha256sums`
//! pins a release the catalog lists as unpinned from the checksum file the operator names
//! (`pin_release`), kept in the store (`Store::open` reads it back).
//!
//! One file because it is one data model: the manifest's types, their loading and checks, and the
//! queries the store and the planner make on them (the upstream catalog is apart, in `catalog.rs`).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use serde::Deserialize;

use super::ArtifactError;
use super::catalog::{self, KubeFiles, Minor, minor_of, normalize, version_key};

/// The Kubernetes binaries of a release (for manifests without the catalog, which names them).
const KUBE_BINARIES: &[&str] =
    &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl"];

/// The manifest shipped in the binary.
pub const SHIPPED: &str = include_str!("versions.yml");

/// Where the shipped manifest lives in the repository (for error messages).
pub const SHIPPED_PATH: &str = "src/artifacts/versions.yml";

/// All version sets, keyed by `K8S_VER` without its leading `v` (e.g. `1.35.4`, `lab-debian`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub sets: IndexMap<String, VersionSet>,
    /// The YAML this was parsed from (written into bundles for reference).
    #[serde(skip)]
    pub text: String,
    /// Per minor version (`1.31`), what its releases install besides Kubernetes (catalog).
    #[serde(skip)]
    pub minors: IndexMap<String, Minor>,
    /// Releases known but not pinned -> what is missing (catalog).
    #[serde(skip)]
    pub unpinned: IndexMap<String, String>,
    /// Where the Kubernetes binaries of a catalog release come from (catalog).
    #[serde(skip)]
    pub kubernetes: Option<KubeFiles>,
}

/// The artifacts of one version set, and the container images made from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSet {
    pub artifacts: Vec<Artifact>,
    /// Images built on the deploy machine from this set's binaries (see `images`).
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    /// None: pinned by this ezk. Some: an unpinned release whose Kubernetes digests the
    /// operator took from this checksum file (`ezk download --sha256sums`).
    #[serde(skip)]
    pub pinned_from: Option<String>,
}

/// A container image of the set, in the store as an OCI layout and archive. Either made on the
/// deploy machine from binaries (`files`, `links`: one layer; no registry involved) or fetched
/// from its registry (`digest`: the reference pinned to that manifest or index digest).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Store name (`down/images/<set>/<name>/`).
    pub name: String,
    /// The reference containerd knows it by (`SANDBOX_IMAGE` and pod specs name it).
    #[serde(rename = "ref")]
    pub reference: String,
    /// For an image fetched from its registry: the digest (`sha256:<hex>`) its reference is
    /// pinned to, as the registry publishes it (a multi-platform index or one manifest).
    #[serde(default)]
    pub digest: Option<String>,
    /// Path in the image -> binary of this set (`pause`: the `pause` output of a build).
    #[serde(default)]
    pub files: IndexMap<String, String>,
    /// Symlinks: path in the image -> target.
    #[serde(default)]
    pub links: IndexMap<String, String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `uid:gid` the process runs as (default root).
    #[serde(default)]
    pub user: Option<String>,
}

/// How an artifact file becomes installed binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Kind {
    /// The file is the binary itself.
    #[serde(rename = "binary")]
    Binary,
    /// A gzip'd tar; `members` maps paths inside it to binary names.
    #[serde(rename = "tar.gz")]
    TarGz,
    /// A Debian package; `members` maps paths of its data tree to binary names, and
    /// `member_sha256` pins each extracted binary (so installed packages can fill the store).
    #[serde(rename = "deb")]
    Deb,
    /// An upstream source tarball as a Debian source package ships it (`url`, `sha256`), built
    /// on the deploy machine by a recipe shipped in ezk (`build`); `members` maps the recipe's
    /// outputs to binary names and `member_sha256` pins each (the build is reproducible).
    #[serde(rename = "debian-source")]
    DebianSource,
}

impl Kind {
    /// Kinds whose binaries are pinned one by one (`member_sha256`), so they can enter the
    /// store from files that are not the artifact itself (installed packages, a build, a bundle).
    pub fn pins_members(self) -> bool {
        matches!(self, Kind::Deb | Kind::DebianSource)
    }
}

/// How a `debian-source` artifact is built: the recipe, the Debian source package whose
/// upstream tarball is the artifact's file, the toolchain .debs, and the recipe's environment.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// A recipe shipped in ezk: `src/artifacts/recipes/<recipe>.sh`.
    pub recipe: String,
    /// `package=version` of the Debian source package.
    pub source: String,
    /// The Debian suite that serves it.
    pub suite: String,
    /// Toolchain packages, unpacked into the build's scratch dir (never installed).
    pub toolchain: Vec<ToolchainDeb>,
    /// Environment for the recipe (e.g. the version stamp).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Outputs besides the pinned members, kept with the sha256 they had when built (e.g.
    /// `pause`, C built with this machine's gcc and glibc, whose digest follows those).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Pins for outputs whose bytes do not depend on the machine (Go built static and
    /// trimmed): checked when built and each time the cache entry is installed.
    #[serde(default)]
    pub output_sha256: IndexMap<String, String>,
    /// Source files that ship inside ezk (`src/artifacts/sources/`), each handed to the recipe
    /// in the environment variable `env` once it matched its pin.
    #[serde(default)]
    pub bundled: Vec<BundledSource>,
}

/// A source file compiled into ezk, given to a recipe.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundledSource {
    pub file: String,
    pub sha256: String,
    /// The recipe's environment variable that holds the file's path.
    pub env: String,
}

/// One pinned toolchain .deb.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainDeb {
    /// `package=version`.
    pub deb: String,
    pub suite: String,
    /// sha256 of the .deb (from the suite's signed Packages index).
    pub sha256: String,
}

/// One release file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub url: String,
    /// The upstream-published sha256 of the file at `url`.
    pub sha256: String,
    pub kind: Kind,
    /// Installed name for `kind: binary` (default: `name`).
    #[serde(default)]
    pub binary: Option<String>,
    #[serde(default)]
    pub members: IndexMap<String, String>,
    #[serde(default)]
    pub member_sha256: IndexMap<String, String>,
    /// For `debian-source`: how it is built.
    #[serde(default)]
    pub build: Option<BuildSpec>,
}

/// A sha256 of a whole file, lowercase hex; shown as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(pub String);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl Artifact {
    /// The file name on disk, in the store and on a mirror: the URL's last path segment.
    pub fn filename(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    /// The pinned digest.
    pub fn digest(&self) -> Digest {
        Digest(self.sha256.to_ascii_lowercase())
    }

    /// The digest installed binary `name` of this artifact has, when the manifest pins the
    /// file itself: a plain binary's own, a deb's or build's member, a reproducible build
    /// output. None for an archive member (only the archive is pinned) or a recorded output.
    pub fn file_sha256(&self, name: &str) -> Option<String> {
        let pin = match self.kind {
            Kind::Binary => Some(&self.sha256),
            _ => self.member_sha256.get(name).or_else(|| self.build.as_ref()?.output_sha256.get(name)),
        };
        pin.map(|s| s.to_ascii_lowercase())
    }

    /// `(path in archive or None for kind binary, installed binary name)` pairs.
    pub fn binaries(&self) -> Vec<(Option<&str>, &str)> {
        match self.kind {
            Kind::Binary => vec![(None, self.binary.as_deref().unwrap_or(&self.name))],
            Kind::TarGz | Kind::Deb | Kind::DebianSource => self
                .members
                .iter()
                .map(|(p, b)| (Some(p.as_str()), b.as_str()))
                .collect(),
        }
    }

    /// Whether this artifact installs a binary called `name`.
    pub fn provides(&self, name: &str) -> bool {
        self.binaries().iter().any(|(_, b)| *b == name)
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Manifest {
    /// The manifest embedded in the binary: `versions.yml` plus the upstream catalog, parsed
    /// once per process (a command asks for it from several places).
    pub fn shipped() -> Result<Arc<Manifest>, ArtifactError> {
        static SHIPPED_MANIFEST: OnceLock<Result<Arc<Manifest>, String>> = OnceLock::new();
        SHIPPED_MANIFEST
            .get_or_init(|| {
                let mut m = Manifest::parse(SHIPPED, SHIPPED_PATH).map_err(|e| e.to_string())?;
                catalog::expand(&mut m).map_err(|e| e.to_string())?;
                m.validate(catalog::UPSTREAM_PATH).map_err(|e| e.to_string())?;
                Ok(Arc::new(m))
            })
            .clone()
            .map_err(|msg| ArtifactError::Manifest { path: "the shipped versions manifest".into(), msg })
    }

    /// Load a manifest from a YAML file (tests, or an operator's own pinned set).
    pub fn load(path: &Path) -> Result<Manifest, ArtifactError> {
        let text = std::fs::read_to_string(path).map_err(|err| ArtifactError::Io {
            path: path.to_path_buf(),
            err,
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parse and validate; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ArtifactError> {
        let mut m: Manifest = serde_yaml::from_str(text).map_err(|e| ArtifactError::Manifest {
            path: origin.to_string(),
            msg: e.to_string(),
        })?;
        m.validate(origin)?;
        m.text = text.to_string();
        Ok(m)
    }

    /// Structural checks: one digest of the right length, members where the kind needs them,
    /// a pinned sha256 for every deb member, no binary provided twice within a set.
    fn validate(&self, origin: &str) -> Result<(), ArtifactError> {
        let bad = |set: &str, a: &Artifact, msg: String| ArtifactError::Manifest {
            path: origin.to_string(),
            msg: format!("set {set}, artifact {} {}: {msg}", a.name, a.version),
        };
        for (set, vs) in &self.sets {
            let mut seen: IndexMap<&str, &str> = IndexMap::new();
            for a in &vs.artifacts {
                if !is_hex(&a.sha256, 64) {
                    return Err(bad(
                        set,
                        a,
                        format!("sha256 {:?} is not 64 hex digits", a.sha256),
                    ));
                }
                if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
                    return Err(bad(set, a, format!("url {:?} is not http(s)", a.url)));
                }
                if a.kind == Kind::Binary && !a.members.is_empty() {
                    return Err(bad(set, a, "kind binary takes no members".into()));
                }
                if a.kind != Kind::Binary && a.members.is_empty() {
                    return Err(bad(
                        set,
                        a,
                        "an archive needs members (path -> binary name)".into(),
                    ));
                }
                if a.kind == Kind::DebianSource {
                    match &a.build {
                        None => {
                            return Err(bad(set, a, "a debian-source artifact needs build".into()));
                        }
                        Some(b) => {
                            if !super::source_build::recipe_exists(&b.recipe) {
                                return Err(bad(
                                    set,
                                    a,
                                    format!("no recipe {:?} in this ezk", b.recipe),
                                ));
                            }
                            for t in &b.toolchain {
                                if !is_hex(&t.sha256, 64) || !t.deb.contains('=') {
                                    return Err(bad(
                                        set,
                                        a,
                                        format!(
                                            "toolchain {:?}: needs package=version and a 64-hex sha256",
                                            t.deb
                                        ),
                                    ));
                                }
                            }
                            if !b.source.contains('=') {
                                return Err(bad(
                                    set,
                                    a,
                                    format!("build.source {:?} is not package=version", b.source),
                                ));
                            }
                            for s in &b.bundled {
                                if !super::source_build::bundled_exists(&s.file) {
                                    return Err(bad(
                                        set,
                                        a,
                                        format!("build.bundled {:?}: no such file ships in this ezk (src/artifacts/sources/)", s.file),
                                    ));
                                }
                                if !is_hex(&s.sha256, 64) {
                                    return Err(bad(set, a, format!("build.bundled {:?}: sha256 is not 64 hex digits", s.file)));
                                }
                            }
                            for (o, s) in &b.output_sha256 {
                                if !b.outputs.contains(o) || !is_hex(s, 64) {
                                    return Err(bad(
                                        set,
                                        a,
                                        format!("build.output_sha256 {o:?}: pins an output listed in build.outputs, by 64 hex digits"),
                                    ));
                                }
                            }
                        }
                    }
                } else if a.build.is_some() {
                    return Err(bad(
                        set,
                        a,
                        "only a debian-source artifact has build".into(),
                    ));
                }
                if a.kind.pins_members() {
                    for (_, b) in &a.members {
                        match a.member_sha256.get(b) {
                            Some(h) if is_hex(h, 64) => {}
                            _ => {
                                return Err(bad(
                                    set,
                                    a,
                                    format!("member_sha256 for {b} missing or not 64 hex"),
                                ));
                            }
                        }
                    }
                }
                for (_, b) in a.binaries() {
                    if b.contains('/') || b.is_empty() {
                        return Err(bad(
                            set,
                            a,
                            format!("binary name {b:?} is not a plain file name"),
                        ));
                    }
                    if let Some(other) = seen.insert(b, &a.name) {
                        return Err(bad(
                            set,
                            a,
                            format!("binary {b} is also provided by {other}"),
                        ));
                    }
                }
            }
            for img in &vs.images {
                let bad = |msg: &str| ArtifactError::Manifest {
                    path: origin.to_string(),
                    msg: format!("set {set}, image {}: {msg}", img.name),
                };
                match &img.digest {
                    Some(d) if !d.strip_prefix("sha256:").is_some_and(|h| is_hex(h, 64)) => {
                        return Err(bad("digest is not sha256:<64 hex digits>"));
                    }
                    Some(_) if !img.files.is_empty() || !img.links.is_empty() || img.user.is_some() || !img.entrypoint.is_empty() || !img.cmd.is_empty() => {
                        return Err(bad("an image pulled by digest takes no files, links, entrypoint, cmd or user"));
                    }
                    None if img.files.is_empty() => {
                        return Err(bad("needs files (made here) or digest (pulled from its registry)"));
                    }
                    _ => {}
                }
                for bin in img.files.values() {
                    if !vs.provides(bin) && vs.build_output(bin).is_none() {
                        return Err(ArtifactError::Manifest {
                            path: origin.to_string(),
                            msg: format!(
                                "set {set}, image {}: no artifact provides {bin}",
                                img.name
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The set for a `K8S_VER` value: `v1.35.4` and `1.35.4` both match `1.35.4`; a minor
    /// version (`v1.35`) matches when exactly one set has it. A release the catalog knows but
    /// has not pinned is `ArtifactError::Unpinned`, which says how to pin it.
    pub fn set(&self, k8s_ver: &str) -> Result<(&str, &VersionSet), ArtifactError> {
        let want = normalize(k8s_ver);
        if let Some((k, v)) = self.sets.get_key_value(want) {
            return Ok((k.as_str(), v));
        }
        if let Some(missing) = self.unpinned.get(want) {
            return Err(ArtifactError::Unpinned {
                ver: want.to_string(),
                missing: missing.clone(),
                minor: minor_of(want).unwrap_or(want).to_string(),
            });
        }
        let prefix = format!("{want}.");
        let hits: Vec<_> = self
            .sets
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        if let [(k, v)] = hits.as_slice() {
            return Ok((k.as_str(), v));
        }
        let known = if hits.is_empty() {
            format!("known sets: {}", self.summary())
        } else {
            let line = self.by_minor().into_iter().find(|l| l.minor == want).map(|l| l.describe());
            format!("{want} is a minor version; name one of its releases: {}", line.unwrap_or_default())
        };
        Err(ArtifactError::UnknownVersion { ver: k8s_ver.to_string(), known })
    }

    /// The Kubernetes version `K8S_VER` installs: its set's kube-apiserver (the lab's
    /// `lab-debian`: `1.20.2`), or an unpinned release itself (its roles render all the same).
    pub fn kube_version(&self, k8s_ver: &str) -> Option<String> {
        match self.set(k8s_ver) {
            Ok((_, set)) => set.artifact_for("kube-apiserver").map(|a| a.version.clone()),
            Err(ArtifactError::Unpinned { ver, .. }) => Some(ver),
            Err(_) => None,
        }
    }

    /// Pin the unpinned release `k8s_ver` with the Kubernetes digests read from the checksum
    /// file `from` (binary -> sha256, every binary of the catalog's `kubernetes.binaries`); its
    /// other artifacts are its minor's. For a release this ezk pins already, the digests must
    /// agree with its own (nothing changes); any other release is refused.
    pub fn pin_release(
        &mut self,
        k8s_ver: &str,
        digests: &IndexMap<String, String>,
        from: &str,
    ) -> Result<String, ArtifactError> {
        let ver = normalize(k8s_ver).to_string();
        let refuse = |msg: String| ArtifactError::Pin { ver: ver.clone(), from: from.to_string(), msg };
        let kube = self
            .kubernetes
            .clone()
            .ok_or_else(|| refuse("this manifest has no catalog of Kubernetes releases".into()))?;
        for b in &kube.binaries {
            if !digests.contains_key(b) {
                return Err(refuse(format!("it has no line for bin/linux/amd64/{b}")));
            }
        }
        if let Some(set) = self.sets.get(&ver) {
            for b in &kube.binaries {
                let ours = set.artifact_for(b).map(|a| a.sha256.as_str()).unwrap_or("");
                if ours != digests[b] {
                    let by = set.pinned_from.as_deref().map_or("this ezk".to_string(), |f| format!("you from {f}"));
                    return Err(refuse(format!(
                        "{b} is pinned by {by} as sha256:{ours}, the file says sha256:{}; nothing was changed",
                        digests[b]
                    )));
                }
            }
            return Ok(ver);
        }
        if !self.unpinned.contains_key(&ver) {
            return Err(refuse(format!("{ver} is not a release this ezk knows (known: {})", self.summary())));
        }
        let minor = &self.minors[minor_of(&ver).expect("catalog releases are x.y.z")];
        let mut set = kube.release_set(&ver, digests, minor);
        set.pinned_from = Some(from.to_string());
        self.unpinned.shift_remove(&ver);
        self.sets.insert(ver.clone(), set);
        Ok(ver)
    }

    /// The releases of each minor version, newest minor first, then the other sets
    /// (`lab-debian`) each on its own line.
    pub fn by_minor(&self) -> Vec<MinorLine> {
        let mut lines: Vec<MinorLine> = Vec::new();
        let mut add = |release: &str, pinned: bool| {
            let minor = minor_of(release).unwrap_or(release);
            let i = match lines.iter().position(|l| l.minor == minor) {
                Some(i) => i,
                None => {
                    lines.push(MinorLine { minor: minor.to_string(), pinned: Vec::new(), unpinned: Vec::new() });
                    lines.len() - 1
                }
            };
            if minor_of(release).is_none() {
                // A set of another name (lab-debian) is a line of its own.
            } else if pinned {
                lines[i].pinned.push(release.to_string());
            } else {
                lines[i].unpinned.push(release.to_string());
            }
        };
        for k in self.sets.keys() {
            add(k, true);
        }
        for k in self.unpinned.keys() {
            add(k, false);
        }
        for l in &mut lines {
            l.pinned.sort_by_key(|v| version_key(v));
            l.unpinned.sort_by_key(|v| version_key(v));
        }
        lines.sort_by_key(|l| (minor_of(&format!("{}.0", l.minor)).is_none(), std::cmp::Reverse(version_key(&l.minor))));
        lines
    }

    /// What `release` installs besides the Kubernetes binaries: its minor's companions, or for a
    /// set outside the catalog its artifacts other than Kubernetes' own.
    pub fn companions(&self, release: &str) -> Vec<&Artifact> {
        if let Some(m) = minor_of(release).and_then(|m| self.minors.get(m)) {
            return m.companions.iter().collect();
        }
        let kube: &[String] = self.kubernetes.as_ref().map_or(&[], |k| &k.binaries);
        self.sets.get(release).map_or_else(Vec::new, |vs| {
            vs.artifacts
                .iter()
                .filter(|a| !kube.contains(&a.name) && !KUBE_BINARIES.contains(&a.name.as_str()))
                .collect()
        })
    }

    /// The images `release`'s set names no digest for (its minor's `images_unpinned`: image ->
    /// which tag, and why), so a listing can say so instead of leaving them out silently.
    pub fn unpinned_images(&self, release: &str) -> Option<&IndexMap<String, String>> {
        minor_of(normalize(release)).and_then(|m| self.minors.get(m)).map(|m| &m.images_unpinned).filter(|u| !u.is_empty())
    }

    /// Every release in one line, per minor (for messages).
    pub fn summary(&self) -> String {
        self.by_minor().iter().map(MinorLine::describe).collect::<Vec<_>>().join("; ")
    }

    /// The artifact called `name` at `version` whose file is `filename`, in any set.
    pub fn find_file(&self, name: &str, version: &str, filename: &str) -> Option<&Artifact> {
        self.sets
            .values()
            .flat_map(|s| s.artifacts.iter())
            .find(|a| a.name == name && a.version == version && a.filename() == filename)
    }

    /// Every distinct artifact (by name and version) across sets.
    pub fn all_artifacts(&self) -> Vec<&Artifact> {
        let mut out: Vec<&Artifact> = Vec::new();
        for a in self.sets.values().flat_map(|s| s.artifacts.iter()) {
            if !out
                .iter()
                .any(|o| o.name == a.name && o.version == a.version)
            {
                out.push(a);
            }
        }
        out
    }

    /// Whether some set provides an installable binary called `name` (used to check that every
    /// binary a role's `binary` task references is pinned here).
    pub fn provides(&self, name: &str) -> bool {
        self.sets
            .values()
            .any(|s| s.artifacts.iter().any(|a| a.provides(name)))
    }
}

/// The releases of one minor version (or one set of another name, like `lab-debian`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinorLine {
    /// `1.31`, or the set's name.
    pub minor: String,
    /// Pinned releases, in version order (empty for a set of another name).
    pub pinned: Vec<String>,
    /// Known but unpinned releases, in version order.
    pub unpinned: Vec<String>,
}

impl MinorLine {
    /// `1.31.0 … 1.31.14` (a run of consecutive patches as its ends), `(1.35.8, 1.35.9
    /// unpinned)`; a set of another name is its name.
    pub fn describe(&self) -> String {
        if self.pinned.is_empty() && self.unpinned.is_empty() {
            return self.minor.clone();
        }
        let mut s = runs(&self.pinned);
        if !self.unpinned.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("({} unpinned)", runs(&self.unpinned)));
        }
        s
    }
}

/// Sorted releases of one minor as `a … b` runs of consecutive patches, comma-separated.
fn runs(releases: &[String]) -> String {
    let patch = |v: &str| v.rsplit('.').next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < releases.len() {
        let mut j = i;
        while j + 1 < releases.len() && patch(&releases[j + 1]) == patch(&releases[j]) + 1 {
            j += 1;
        }
        out.push(match j - i {
            0 => releases[i].clone(),
            1 => format!("{}, {}", releases[i], releases[j]),
            _ => format!("{} … {}", releases[i], releases[j]),
        });
        i = j + 1;
    }
    out.join(", ")
}

impl VersionSet {
    /// The artifact that provides binary `name`.
    pub fn artifact_for(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.provides(name))
    }

    /// Whether this set provides binary `name`.
    pub fn provides(&self, name: &str) -> bool {
        self.artifact_for(name).is_some()
    }

    /// The build whose recorded (unpinned) outputs include `name`.
    pub fn build_output(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| {
            a.build
                .as_ref()
                .is_some_and(|b| b.outputs.iter().any(|o| o == name))
        })
    }

    /// The image called `name`.
    pub fn image(&self, name: &str) -> Option<&ImageSpec> {
        self.images.iter().find(|i| i.name == name)
    }
}

impl ImageSpec {
    /// Whether this image is fetched from its registry (else made here from binaries).
    pub fn pulled(&self) -> bool {
        self.digest.is_some()
    }
}
