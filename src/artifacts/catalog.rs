//! The upstream catalog: every Kubernetes release 1.28 .. 1.36 that `versions.yml` does not
//! spell out, kept small and expanded into ordinary version sets when the manifest loads.
//!
//! - `versions-upstream.yml`: per minor version the artifacts each of its releases installs
//!   besides Kubernetes (etcd, containerd, runc, CNI plugins, crictl, helm, calicoctl) with the
//!   source of their digests, the container images its releases name (pinned by digest, or
//!   listed unpinned with the reason), where the Kubernetes binaries are fetched, and every
//!   source cited.
//! - `versions-kubernetes.sha256`: `<sha256> <release> <binary> <source>`, six lines a release.
//! - `versions-unpinned.txt`: `<release>: <what is missing>` for releases ezk knows but could
//!   not pin; `ezk download --sha256sums` pins one from the release's own checksum file.
//!
//! Reading these, building the sets and validating them takes about 2 ms (release build, this
//! project's 2-core machine; once per process), where the same sets written out in YAML were
//! 450 KB; the sets built here are the same shape as `versions.yml`'s and go through the same
//! validation.

use indexmap::IndexMap;
use serde::Deserialize;

use super::ArtifactError;
use super::manifest::{Artifact, ImageSpec, Kind, Manifest, VersionSet};

pub const UPSTREAM: &str = include_str!("versions-upstream.yml");
pub const UPSTREAM_PATH: &str = "src/artifacts/versions-upstream.yml";
pub const KUBERNETES: &str = include_str!("versions-kubernetes.sha256");
pub const KUBERNETES_PATH: &str = "src/artifacts/versions-kubernetes.sha256";
pub const UNPINNED: &str = include_str!("versions-unpinned.txt");
pub const UNPINNED_PATH: &str = "src/artifacts/versions-unpinned.txt";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upstream {
    kubernetes: KubeFiles,
    sources: IndexMap<String, String>,
    minors: IndexMap<String, MinorSpec>,
}

/// Where a release's Kubernetes binaries come from, and which they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeFiles {
    /// URL with `{version}` (no `v`) and `{name}` (the binary) to fill in.
    pub url: String,
    /// The binaries each release pins.
    pub binaries: Vec<String>,
    /// The images every release's set names (its minor's `images`, or `images_unpinned` with
    /// the reason), each with the keys of `sources` its digests were read from.
    pub images: IndexMap<String, Vec<String>>,
    /// The cluster add-ons' images (step 07), the same in every release's set, each pinned.
    #[serde(default)]
    pub addon_images: Vec<AddonImage>,
}

/// A cluster add-on's image: the same for every release, at the version the cluster-addon
/// role defaults to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonImage {
    /// Store name (and `PRELOAD_IMAGES` entry).
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub digest: String,
    /// The cluster-addon variable whose default names this reference (`METRICS_SERVER_IMAGE`).
    pub var: String,
    /// The key of `sources` the digest was read from.
    pub source: String,
}

impl AddonImage {
    pub fn spec(&self) -> ImageSpec {
        ImageSpec {
            name: self.name.clone(),
            reference: self.reference.clone(),
            digest: Some(self.digest.clone()),
            files: IndexMap::new(),
            links: IndexMap::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            user: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinorSpec {
    /// Take the companions of this `versions.yml` set.
    #[serde(default)]
    companions_of: Option<String>,
    /// A key of `sources`: where `companions`' versions and digests come from.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    companions: Vec<Artifact>,
    /// The minor's images, each pinned by digest (with `source`; with `companions_of` they
    /// are that set's).
    #[serde(default)]
    images: Vec<ImageSpec>,
    /// Image name -> why it has no digest (which tag, and where none was found).
    #[serde(default)]
    images_unpinned: IndexMap<String, String>,
}

/// What every release of one minor version installs besides Kubernetes.
#[derive(Debug, Clone)]
pub struct Minor {
    pub companions: Vec<Artifact>,
    /// Where the companions' digests come from.
    pub source: String,
    /// The images each release's set names, pinned by digest.
    pub images: Vec<ImageSpec>,
    /// Images of `kubernetes.images` this minor has no digest for -> why.
    pub images_unpinned: IndexMap<String, String>,
}

/// `1.31.2` of `v1.31.2` / `1.31.2` / ` v1.31.2 `.
pub fn normalize(k8s_ver: &str) -> &str {
    let v = k8s_ver.trim();
    v.strip_prefix('v').unwrap_or(v)
}

/// `1.31` of `1.31.2`; None unless the release is `<major>.<minor>.<patch>` in digits.
pub fn minor_of(release: &str) -> Option<&str> {
    let parts: Vec<&str> = release.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(&release[..parts[0].len() + 1 + parts[1].len()])
}

/// Numeric sort key of a dotted version (`1.31.10` after `1.31.9`); other names sort last.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect()
}

impl KubeFiles {
    /// The pinned artifact of Kubernetes binary `name` of `release`.
    pub fn artifact(&self, release: &str, name: &str, sha256: &str) -> Artifact {
        Artifact {
            name: name.to_string(),
            version: release.to_string(),
            url: self.url.replace("{version}", release).replace("{name}", name),
            sha256: sha256.to_string(),
            kind: Kind::Binary,
            binary: None,
            members: IndexMap::new(),
            member_sha256: IndexMap::new(),
            build: None,
        }
    }

    /// A release's version set: its Kubernetes binaries (`digests`: binary -> sha256, every one
    /// of `binaries`), then its minor's companions; its minor's images, then the add-ons'.
    pub fn release_set(&self, release: &str, digests: &IndexMap<String, String>, minor: &Minor) -> VersionSet {
        let mut artifacts: Vec<Artifact> =
            self.binaries.iter().map(|b| self.artifact(release, b, &digests[b])).collect();
        artifacts.extend(minor.companions.iter().cloned());
        let mut images = minor.images.clone();
        images.extend(self.addon_images.iter().map(AddonImage::spec));
        VersionSet { artifacts, images, pinned_from: None }
    }
}

/// Add the catalog's releases, minors and unpinned releases to `m` (which holds `versions.yml`).
pub fn expand(m: &mut Manifest) -> Result<(), ArtifactError> {
    expand_from(m, UPSTREAM, KUBERNETES, UNPINNED)
}

fn bad(path: &str, line: usize, msg: String) -> ArtifactError {
    let path = if line == 0 { path.to_string() } else { format!("{path}:{line}") };
    ArtifactError::Manifest { path, msg }
}

/// Each image of `kubernetes.images` is, for minor `name`, either pinned by digest or listed in
/// `images_unpinned` with the reason, never both; no other image.
fn check_images(name: &str, minor: &Minor, kube: &KubeFiles) -> Result<(), ArtifactError> {
    let refuse = |msg: String| Err(bad(UPSTREAM_PATH, 0, format!("minor {name}: {msg}")));
    for img in &minor.images {
        if !kube.images.contains_key(&img.name) {
            return refuse(format!("image {} is not one of kubernetes.images", img.name));
        }
        if img.digest.is_none() {
            return refuse(format!("image {} has no digest (list it in images_unpinned with the reason instead)", img.name));
        }
    }
    for (img, why) in &minor.images_unpinned {
        if !kube.images.contains_key(img) {
            return refuse(format!("images_unpinned: {img} is not one of kubernetes.images"));
        }
        if why.trim().is_empty() {
            return refuse(format!("images_unpinned: {img}: say which tag and where no digest was found"));
        }
    }
    for img in kube.images.keys() {
        match (minor.images.iter().filter(|i| &i.name == img).count(), minor.images_unpinned.contains_key(img)) {
            (1, false) | (0, true) => {}
            (0, false) => return refuse(format!("image {img} is neither pinned (images) nor listed in images_unpinned with the reason")),
            (_, true) => return refuse(format!("image {img} is pinned and listed in images_unpinned")),
            _ => return refuse(format!("image {img} is named twice")),
        }
    }
    Ok(())
}

/// `expand` over given texts (tests feed broken ones).
pub fn expand_from(m: &mut Manifest, upstream: &str, kubernetes: &str, unpinned: &str) -> Result<(), ArtifactError> {
    let up: Upstream = serde_yaml::from_str(upstream).map_err(|e| bad(UPSTREAM_PATH, 0, e.to_string()))?;
    let cite = |id: &str| {
        up.sources
            .get(id)
            .map(|c| format!("{id}: {c}"))
            .ok_or_else(|| bad(UPSTREAM_PATH, 0, format!("source {id:?} is not in `sources`")))
    };
    for sources in up.kubernetes.images.values() {
        if sources.is_empty() {
            return Err(bad(UPSTREAM_PATH, 0, "kubernetes.images: name the sources of each image's digests".into()));
        }
        for source in sources {
            cite(source)?;
        }
    }
    for a in &up.kubernetes.addon_images {
        let refuse = |msg: &str| Err(bad(UPSTREAM_PATH, 0, format!("addon_images: {}: {msg}", a.name)));
        cite(&a.source)?;
        if !a.digest.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
            return refuse("digest is not sha256:<64 hex digits>");
        }
        if crate::artifacts::registry::ImageRef::parse(&a.reference).is_err() {
            return refuse("ref is not an image reference");
        }
        if up.kubernetes.images.contains_key(&a.name) || up.kubernetes.addon_images.iter().filter(|b| b.name == a.name).count() > 1 {
            return refuse("named twice");
        }
    }
    for (name, spec) in &up.minors {
        if minor_of(&format!("{name}.0")).is_none() {
            return Err(bad(UPSTREAM_PATH, 0, format!("minor {name:?} is not <major>.<minor>")));
        }
        let mut minor = match (&spec.companions_of, &spec.source) {
            (Some(set), None) if spec.companions.is_empty() && spec.images.is_empty() => {
                let (_, vs) = m.set(set).map_err(|e| bad(UPSTREAM_PATH, 0, format!("minor {name}: companions_of: {e}")))?;
                if minor_of(set) != Some(name.as_str()) {
                    return Err(bad(UPSTREAM_PATH, 0, format!("minor {name}: companions_of {set} is another minor")));
                }
                Minor {
                    companions: vs.artifacts.iter().filter(|a| !up.kubernetes.binaries.contains(&a.name)).cloned().collect(),
                    source: format!("those of versions.yml's set {set}"),
                    images: vs.images.clone(),
                    images_unpinned: IndexMap::new(),
                }
            }
            (None, Some(src)) if !spec.companions.is_empty() => Minor {
                companions: spec.companions.clone(),
                source: cite(src)?,
                images: spec.images.clone(),
                images_unpinned: IndexMap::new(),
            },
            _ => {
                return Err(bad(
                    UPSTREAM_PATH,
                    0,
                    format!("minor {name}: needs either companions_of (a versions.yml set, whose images it takes) or source + companions (+ images)"),
                ));
            }
        };
        minor.images_unpinned = spec.images_unpinned.clone();
        check_images(name, &minor, &up.kubernetes)?;
        m.minors.insert(name.clone(), minor);
    }
    // versions.yml's releases name the add-ons' images too, as the sets built below do.
    for (name, set) in m.sets.iter_mut() {
        if minor_of(name).is_some_and(|mi| m.minors.contains_key(mi)) {
            set.images.extend(up.kubernetes.addon_images.iter().map(AddonImage::spec));
        }
    }

    // release -> binary -> sha256, in file order.
    let mut releases: IndexMap<String, IndexMap<String, String>> = IndexMap::new();
    for (i, line) in kubernetes.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |msg: String| bad(KUBERNETES_PATH, i + 1, msg);
        let [sha, release, binary, source] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            return Err(at("expected `<sha256> <release> <binary> <source>`".into()));
        };
        if !sha.bytes().all(|b| b.is_ascii_hexdigit()) || sha.len() != 64 {
            return Err(at(format!("sha256 {sha:?} is not 64 hex digits")));
        }
        if !up.kubernetes.binaries.iter().any(|b| b == binary) {
            return Err(at(format!("{binary} is not one of kubernetes.binaries")));
        }
        cite(source).map_err(|e| at(e.to_string()))?;
        let minor = minor_of(release).ok_or_else(|| at(format!("release {release:?} is not <major>.<minor>.<patch>")))?;
        if !m.minors.contains_key(minor) {
            return Err(at(format!("minor {minor} has no entry in `minors`")));
        }
        if m.sets.contains_key(release) {
            return Err(at(format!("release {release} is already a set of versions.yml")));
        }
        let digests = releases.entry(release.to_string()).or_default();
        if digests.insert(binary.to_string(), sha.to_ascii_lowercase()).is_some() {
            return Err(at(format!("{release} {binary} is pinned twice")));
        }
    }
    for (release, digests) in releases {
        if let Some(b) = up.kubernetes.binaries.iter().find(|b| !digests.contains_key(*b)) {
            return Err(bad(KUBERNETES_PATH, 0, format!("release {release} has no line for {b}")));
        }
        let minor = &m.minors[minor_of(&release).expect("checked above")];
        let set = up.kubernetes.release_set(&release, &digests, minor);
        m.sets.insert(release, set);
    }

    for (i, line) in unpinned.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |msg: String| bad(UNPINNED_PATH, i + 1, msg);
        let (release, missing) = line.split_once(':').ok_or_else(|| at("expected `<release>: <what is missing>`".into()))?;
        let release = release.trim();
        let minor = minor_of(release).ok_or_else(|| at(format!("release {release:?} is not <major>.<minor>.<patch>")))?;
        if !m.minors.contains_key(minor) {
            return Err(at(format!("minor {minor} has no entry in versions-upstream.yml `minors`")));
        }
        if m.sets.contains_key(release) {
            return Err(at(format!("release {release} is pinned, yet listed as unpinned")));
        }
        m.unpinned.insert(release.to_string(), missing.trim().to_string());
    }
    m.kubernetes = Some(up.kubernetes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Manifest {
        Manifest::parse(super::super::manifest::SHIPPED, "versions.yml").unwrap()
    }

    /// The shipped catalog with `edit` applied to one of its three texts; the error message.
    fn broken(part: usize, from: &str, to: &str) -> String {
        let mut texts = [UPSTREAM.to_string(), KUBERNETES.to_string(), UNPINNED.to_string()];
        assert!(texts[part].contains(from), "{from:?} not in part {part}");
        texts[part] = texts[part].replacen(from, to, 1);
        expand_from(&mut base(), &texts[0], &texts[1], &texts[2]).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_catalog_expands() {
        let mut m = base();
        let before = m.sets.len();
        expand(&mut m).unwrap();
        assert_eq!(m.sets.len() - before, KUBERNETES.lines().filter(|l| l.len() > 64 && !l.starts_with('#')).count() / 6);
        assert_eq!(m.minors.len(), 9);
        assert!(m.unpinned.len() >= 2);
    }

    /// 1.33's pause in versions-upstream.yml (the first minor that pins pause 3.10).
    const PAUSE_3_10: &str = "      - name: pause\n        ref: registry.k8s.io/pause:3.10\n        digest: sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a\n";

    #[test]
    fn a_broken_catalog_is_refused_naming_file_and_line() {
        let line1 = KUBERNETES.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
        let (sha, rest) = line1.split_once("  ").unwrap();
        let cases = [
            (1, format!("{sha}  {rest}"), format!("{sha}  {}", rest.replace("kops@", "nobody@")), "source \"nobody@"),
            (1, format!("{sha}  {rest}\n"), String::new(), "has no line for kube-apiserver"),
            (1, format!("{sha}  {rest}"), format!("{sha}  {rest}\n{sha}  {rest}"), "is pinned twice"),
            (1, format!("{sha}  {rest}"), format!("{}  {rest}", &sha[1..]), "is not 64 hex digits"),
            (1, format!("{sha}  {rest}"), format!("{sha}  {}", rest.replace("kube-apiserver ", "kube-apiservr  ")), "is not one of kubernetes.binaries"),
            (1, format!("{sha}  {rest}"), format!("{sha}  1.27.3 kube-apiserver kops@268927e2"), "minor 1.27 has no entry"),
            (2, "1.35.8:".to_string(), "1.35.7:".to_string(), "1.35.7 is pinned, yet listed as unpinned"),
            (0, "companions_of: \"1.36.3\"".to_string(), "companions_of: \"1.35.4\"".to_string(), "is another minor"),
            // Every minor names each of kubernetes.images by digest, or says why it cannot.
            (0, PAUSE_3_10.to_string(), String::new(), "minor 1.33: image pause is neither pinned (images) nor listed in images_unpinned"),
            (0, PAUSE_3_10.to_string(), PAUSE_3_10.replace("        digest: sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a\n", ""), "minor 1.33: image pause has no digest"),
            (0, PAUSE_3_10.to_string(), PAUSE_3_10.replace("name: pause", "name: pauze"), "minor 1.33: image pauze is not one of kubernetes.images"),
            (0, PAUSE_3_10.to_string(), format!("{PAUSE_3_10}{PAUSE_3_10}"), "minor 1.33: image pause is named twice"),
            (0, "companions_of: \"1.36.3\"\n".to_string(), "companions_of: \"1.36.3\"\n    images_unpinned:\n      pause: \" \"\n".to_string(), "images_unpinned: pause: say which tag"),
            (0, "    pause: [k8s.io@ecf019a8, ".to_string(), "    pause: [nobody@1, ".to_string(), "source \"nobody@1\" is not in `sources`"),
            (0, "    pause: [k8s.io@ecf019a8, Skarlso/k8s.io@45457b5d]".to_string(), "    pause: []".to_string(), "name the sources of each image's digests"),
            // Every add-on image is pinned, by a digest from a source cited, once.
            (0, "      source: k8s.io@bc1017d8".to_string(), "      source: nobody@2".to_string(), "source \"nobody@2\" is not in `sources`"),
            (0, "      digest: sha256:db38".to_string(), "      digest: db38".to_string(), "addon_images: metrics-server: digest is not sha256:"),
            (0, "    - name: nodelocaldns".to_string(), "    - name: metrics-server".to_string(), "addon_images: metrics-server: named twice"),
            (0, "    - name: nodelocaldns".to_string(), "    - name: pause".to_string(), "addon_images: pause: named twice"),
        ];
        for (part, from, to, want) in cases {
            let err = broken(part, &from, &to);
            assert!(err.contains(want), "{want:?} in {err}");
            if part == 1 && !want.starts_with("has no line") {
                assert!(err.starts_with(&format!("{KUBERNETES_PATH}:")), "{err}");
            }
        }
    }

    #[test]
    fn versions_normalize_and_sort() {
        assert_eq!(normalize(" v1.31.2 "), "1.31.2");
        assert_eq!(minor_of("1.31.2"), Some("1.31"));
        assert_eq!(minor_of("lab-debian"), None);
        assert_eq!(minor_of("1.31"), None);
        let mut v = vec!["1.31.10", "1.31.9", "1.31.0"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(v, ["1.31.0", "1.31.9", "1.31.10"]);
    }
}
