//! The versions manifest: for each supported `K8S_VER`, every release artifact with its pinned
//! upstream URL and digest, and which installed binaries it provides.
//!
//! The shipped manifest (`versions.yml`, embedded) is the only source of truth for what a file
//! must hash to; a file is never trusted because of where it came from.

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;

use super::ArtifactError;

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
}

/// The artifacts of one version set, and the container images made from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSet {
    pub artifacts: Vec<Artifact>,
    /// Images built on the deploy machine from this set's binaries (see `images`).
    #[serde(default)]
    pub images: Vec<ImageSpec>,
}

/// A container image made on the deploy machine from binaries (no registry involved): one
/// layer holding `files` and `links`, written as an OCI archive into the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Store name (`down/images/<name>/`).
    pub name: String,
    /// The reference containerd knows it by (`SANDBOX_IMAGE` and pod specs name it).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Path in the image -> binary of this set (`pause`: the `pause` output of a build).
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
    /// The manifest embedded in the binary.
    pub fn shipped() -> Result<Manifest, ArtifactError> {
        Manifest::parse(SHIPPED, SHIPPED_PATH)
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
    /// version (`v1.35`) matches when exactly one set has it.
    pub fn set(&self, k8s_ver: &str) -> Result<(&str, &VersionSet), ArtifactError> {
        let want = k8s_ver.trim().trim_start_matches('v');
        if let Some((k, v)) = self.sets.get_key_value(want) {
            return Ok((k.as_str(), v));
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
        Err(ArtifactError::UnknownVersion {
            ver: k8s_ver.to_string(),
            known: self.sets.keys().cloned().collect::<Vec<_>>().join(", "),
        })
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
