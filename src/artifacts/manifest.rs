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

/// The artifacts of one version set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSet {
    pub artifacts: Vec<Artifact>,
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
            Kind::TarGz | Kind::Deb => self
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
                    return Err(bad(set, a, format!("sha256 {:?} is not 64 hex digits", a.sha256)));
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
                if a.kind == Kind::Deb {
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
}
