//! Artifacts built on the deploy machine from a Debian source package (kind `debian-source`).
//!
//! The lab's Kubernetes server binaries exist in no Debian binary package and cannot be
//! downloaded here, but Debian ships their complete upstream source. A `debian-source` artifact
//! pins that source tarball (the artifact's own `url` + `sha256`), the toolchain .debs, a recipe
//! shipped in ezk (`recipes/<name>.sh`) and the sha256 of every binary the recipe makes (the
//! build is reproducible: same inputs, same bytes, on any machine of the kind).
//!
//! Builds are cached machine-wide (`<state dir>/builds/<name>-<version>-<key>/`, the state dir
//! being `$EZK_LAB_DIR` or `/var/lib/ezk`), keyed on everything that shapes the output (recipe
//! text, source package version, toolchain pins, environment, pins of the outputs), so a second
//! home, lab or test run installs from the cache in a second instead of building again. A build
//! runs in `.tmp-<key>/` under an exclusive lock and is renamed into place only after every
//! output matched its pin: a failed or interrupted build is never used. A cache entry is
//! re-verified each time it is installed (pinned outputs against the manifest, recorded ones
//! against the entry's own SHA256SUMS), so a tampered entry is refused with its path.
//!
//! Inputs come only from Debian's archive, through apt with a private configuration (its own
//! sources list, lists and cache under the builds dir; the machine's apt setup is not touched):
//! `apt-get source --download-only` and `apt-get download`; each file is checked against its
//! pin before use. Toolchain .debs are unpacked into the scratch dir, never installed.
//!
//! One file because it is one pipeline with one invariant: inputs fetched and verified, the recipe
//! run in a private directory, every output checked against its pin, and the cache entry committed
//! only whole.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::manifest::{Artifact, BuildSpec};
use super::store::Store;
use super::{ArtifactError, sha256_file};

/// Recipes shipped in ezk: (name, script).
const RECIPES: &[(&str, &str)] = &[("kubernetes", include_str!("recipes/kubernetes.sh"))];

/// Source files shipped inside ezk (see `sources/README.md`): (file name, bytes).
const BUNDLED: &[(&str, &[u8])] = &[(
    "coredns-1.8.3-src.tar.xz",
    include_bytes!("sources/coredns-1.8.3-src.tar.xz"),
)];

/// Whether ezk ships the source file `name`.
pub fn bundled_exists(name: &str) -> bool {
    BUNDLED.iter().any(|(n, _)| *n == name)
}

/// Tools a build needs on the deploy machine, with the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("bash", "bash"),
    ("tar", "tar"),
    ("gcc", "gcc"),
    ("strip", "binutils"),
    ("find", "findutils"),
    ("diff", "diffutils"),
];

/// Whether ezk ships a recipe called `name`.
pub fn recipe_exists(name: &str) -> bool {
    recipe(name).is_some()
}

fn recipe(name: &str) -> Option<&'static str> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// `$EZK_LAB_DIR/builds`, else `/var/lib/ezk/builds` (beside the lab's images).
pub fn cache_root() -> PathBuf {
    std::env::var_os("EZK_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/ezk"))
        .join("builds")
}

fn spec(a: &Artifact) -> &BuildSpec {
    a.build
        .as_ref()
        .expect("debian-source artifacts have a build (manifest validation)")
}

/// The cache key: 16 hex of a sha256 over everything that shapes the outputs.
pub fn key(a: &Artifact) -> String {
    let b = spec(a);
    let mut h = Sha256::new();
    h.update(recipe(&b.recipe).unwrap_or_default());
    h.update(format!(
        "\n{}\n{}\n{}\n{}\n",
        a.name, a.version, a.sha256, b.source
    ));
    for t in &b.toolchain {
        h.update(format!("{} {} {}\n", t.deb, t.suite, t.sha256));
    }
    for (k, v) in &b.env {
        h.update(format!("{k}={v}\n"));
    }
    for (m, s) in &a.member_sha256 {
        h.update(format!("{m} {s}\n"));
    }
    for o in &b.outputs {
        h.update(format!("output {o}\n"));
    }
    for (o, s) in &b.output_sha256 {
        h.update(format!("output {o} {s}\n"));
    }
    for s in &b.bundled {
        h.update(format!("bundled {} {} {}\n", s.file, s.sha256, s.env));
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// A complete build in the cache.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
}

impl Entry {
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }
    /// The sha256 of each output as recorded when it was built.
    pub fn recorded(&self) -> Result<BTreeMap<String, String>, ArtifactError> {
        let p = self.out().join("SHA256SUMS");
        let text = std::fs::read_to_string(&p).map_err(ArtifactError::io(&p))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once("  "))
            .map(|(s, n)| (n.to_string(), s.to_string()))
            .collect())
    }
}

/// The cache entry for `a` (it may not exist yet).
pub fn entry(root: &Path, a: &Artifact) -> Entry {
    Entry {
        dir: root.join(format!("{}-{}-{}", a.name, a.version, key(a))),
    }
}

/// Whether the cache holds a complete build for `a` (complete = renamed into place).
pub fn is_cached(root: &Path, a: &Artifact) -> bool {
    entry(root, a).out().join("SHA256SUMS").is_file()
}

/// What `fill` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Built {
    /// Installed from an earlier build in the cache.
    CacheHit { secs: f32 },
    /// Built now.
    Built { secs: f32 },
}

/// Put `a`'s binaries into the store: from the cache, or built now (and cached). `mirror` is
/// the Debian mirror apt fetches the inputs from. `progress` gets one line per build step.
pub fn fill(
    store: &Store,
    a: &Artifact,
    root: &Path,
    mirror: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Built, ArtifactError> {
    let start = Instant::now();
    std::fs::create_dir_all(root).map_err(|e| build_err(a, format!(
        "cannot create the build cache {} ({e}); run as root or point EZK_LAB_DIR at a writable directory",
        root.display()
    )))?;
    let e = entry(root, a);
    let lock_path = root.join(format!(".lock-{}", key(a)));
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(ArtifactError::io(&lock_path))?;
    if lock.try_lock().is_err() {
        progress(&format!(
            "another ezk is building {} {}; waiting for it",
            a.name, a.version
        ));
        lock.lock().map_err(ArtifactError::io(&lock_path))?;
    }
    let hit = is_cached(root, a);
    if !hit {
        let tmp = root.join(format!(".tmp-{}", key(a)));
        let result = build(a, root, &tmp, &e, mirror, progress);
        if result.is_err() {
            // A failed build leaves nothing that could be taken for a result.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result?;
    }
    install(store, a, &e)?;
    let secs = start.elapsed().as_secs_f32();
    Ok(if hit {
        Built::CacheHit { secs }
    } else {
        Built::Built { secs }
    })
}

fn build_err(a: &Artifact, msg: String) -> ArtifactError {
    ArtifactError::Build {
        what: format!("{} {}", a.name, a.version),
        msg,
    }
}

/// Install a cache entry's outputs into the store, each re-verified.
fn install(store: &Store, a: &Artifact, e: &Entry) -> Result<(), ArtifactError> {
    let recorded = e.recorded()?;
    let extras: Vec<(String, String)> = spec(a)
        .outputs
        .iter()
        .map(|o| {
            let sum = spec(a)
                .output_sha256
                .get(o)
                .map(|s| s.to_ascii_lowercase())
                .or_else(|| recorded.get(o).cloned())
                .unwrap_or_default();
            (o.clone(), sum)
        })
        .collect();
    store
        .install_build(a, &e.out(), &extras)
        .map_err(|err| build_err(a, format!(
            "the cached build {} does not match: {err}. It was changed after it was built; remove it and run again to rebuild: rm -rf {}",
            e.dir.display(),
            e.dir.display()
        )))
}

/// Fetch the inputs, run the recipe in a scratch dir, check every pinned output, and rename
/// the result into the cache.
fn build(
    a: &Artifact,
    root: &Path,
    tmp: &Path,
    e: &Entry,
    mirror: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ArtifactError> {
    let b = spec(a);
    let missing: Vec<&(&str, &str)> = TOOLS
        .iter()
        .filter(|(t, _)| !crate::machine::has_tool(t))
        .collect();
    if !missing.is_empty() {
        let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        return Err(build_err(
            a,
            format!(
                "building needs {}; install with: apt-get install -y {}",
                tools.join(", "),
                pkgs.join(" ")
            ),
        ));
    }
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(ArtifactError::io(tmp))?;
    }
    let inputs = tmp.join("inputs");
    let out = tmp.join("out");
    std::fs::create_dir_all(&inputs).map_err(ArtifactError::io(&inputs))?;
    let log_path = tmp.join("build.log");
    let mut log = std::fs::File::create(&log_path).map_err(ArtifactError::io(&log_path))?;
    let started = Instant::now();
    progress(&format!(
        "building {} {} from Debian source {} (once per machine; about 6 min on 2 cores; log {})",
        a.name,
        a.version,
        b.source,
        e.log().display()
    ));

    // Inputs through apt, each checked against its pin.
    let apt = PrivateApt::new(root, mirror, b)?;
    progress("fetching the source package and toolchain through apt");
    apt.update(&mut log).map_err(|m| build_err(a, m))?;
    apt.run(&["source", "--download-only", &b.source], &inputs, &mut log)
        .map_err(|m| build_err(a, m))?;
    let src = inputs.join(a.filename());
    let got = sha256_file(&src).map_err(|err| {
        build_err(
            a,
            format!(
                "apt-get source {} did not give {} ({err})",
                b.source,
                a.filename()
            ),
        )
    })?;
    if got != a.sha256.to_ascii_lowercase() {
        return Err(build_err(
            a,
            format!(
                "{} from apt has sha256 {got}, the manifest pins {}; not used",
                a.filename(),
                a.sha256
            ),
        ));
    }
    let mut toolchain = Vec::new();
    for t in &b.toolchain {
        let dir = inputs.join("toolchain");
        std::fs::create_dir_all(&dir).map_err(ArtifactError::io(&dir))?;
        let before: Vec<PathBuf> = list(&dir);
        apt.run(&["download", &t.deb], &dir, &mut log)
            .map_err(|m| build_err(a, format!("toolchain {}: {m}", t.deb)))?;
        let deb = list(&dir)
            .into_iter()
            .find(|p| !before.contains(p))
            .ok_or_else(|| build_err(a, format!("apt-get download {} wrote no .deb", t.deb)))?;
        let got = sha256_file(&deb)?;
        if got != t.sha256.to_ascii_lowercase() {
            return Err(build_err(
                a,
                format!(
                    "toolchain {} ({}) has sha256 {got}, the manifest pins {}; not used",
                    t.deb,
                    deb.display(),
                    t.sha256
                ),
            ));
        }
        toolchain.push(deb);
    }

    // Sources that ship inside ezk, each checked against its pin.
    let mut bundled_env = Vec::new();
    for s in &b.bundled {
        let bytes = BUNDLED
            .iter()
            .find(|(n, _)| *n == s.file)
            .map(|(_, b)| *b)
            .expect("validated");
        let got = hex::encode(Sha256::digest(bytes));
        if got != s.sha256.to_ascii_lowercase() {
            return Err(build_err(
                a,
                format!(
                    "the bundled source {} has sha256 {got}, the manifest pins {}; not used",
                    s.file, s.sha256
                ),
            ));
        }
        let p = inputs.join(&s.file);
        std::fs::write(&p, bytes).map_err(ArtifactError::io(&p))?;
        bundled_env.push((s.env.clone(), p));
    }

    // The recipe.
    let script = tmp.join("recipe.sh");
    std::fs::write(&script, recipe(&b.recipe).expect("validated"))
        .map_err(ArtifactError::io(&script))?;
    let gocache = root.join("gocache");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .env("WORK", tmp.join("work"))
        .env("OUT", &out)
        .env("SRC", &src)
        .env(
            "TOOLCHAIN",
            toolchain
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .env("GOCACHE", &gocache)
        .env(
            "BINARIES",
            a.members.keys().cloned().collect::<Vec<_>>().join(" "),
        )
        .envs(&b.env)
        .envs(bundled_env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let result = run_logged(&mut cmd, &mut log, started, progress);
    let fail = |msg: String| -> ArtifactError {
        let kept = root.join(format!("{}-{}-{}.failed.log", a.name, a.version, key(a)));
        let _ = std::fs::copy(&log_path, &kept);
        build_err(
            a,
            format!("{msg}; the build log is kept at {}", kept.display()),
        )
    };
    if let Err(m) = result {
        return Err(fail(m));
    }

    // Every pinned output must be the pinned bytes; the others are recorded.
    let mut sums = BTreeMap::new();
    for (path, bin) in &a.members {
        let got = sha256_file(&out.join(path))
            .map_err(|err| fail(format!("the recipe made no {path} ({err})")))?;
        let want = a
            .member_sha256
            .get(bin)
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        if got != want {
            return Err(fail(format!(
                "{path} built with sha256 {got}, the manifest pins {want}: the build did not reproduce the pinned binary (a different toolchain or source would do that)"
            )));
        }
        sums.insert(path.clone(), got);
    }
    for o in &b.outputs {
        let got = sha256_file(&out.join(o))
            .map_err(|err| fail(format!("the recipe made no {o} ({err})")))?;
        if let Some(want) = b.output_sha256.get(o).map(|s| s.to_ascii_lowercase())
            && got != want
        {
            return Err(fail(format!(
                "{o} built with sha256 {got}, the manifest pins {want}: the build did not reproduce the pinned binary"
            )));
        }
        sums.insert(o.clone(), got);
    }
    let text: String = sums.iter().map(|(n, s)| format!("{s}  {n}\n")).collect();
    std::fs::write(out.join("SHA256SUMS"), text).map_err(ArtifactError::io(&out))?;
    writeln!(log, "== built in {:.0}s", started.elapsed().as_secs_f32())
        .map_err(ArtifactError::io(&log_path))?;
    drop(log);
    // Only the outputs and the log stay; the tree and toolchain (~650 MB) go.
    for d in [tmp.join("work"), inputs] {
        let _ = std::fs::remove_dir_all(&d);
    }
    if e.dir.exists() {
        std::fs::remove_dir_all(&e.dir).map_err(ArtifactError::io(&e.dir))?;
    }
    std::fs::rename(tmp, &e.dir).map_err(ArtifactError::io(&e.dir))?;
    progress(&format!(
        "built {} {} in {:.0}s; cached in {}",
        a.name,
        a.version,
        started.elapsed().as_secs_f32(),
        e.dir.display()
    ));
    Ok(())
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Run the recipe: every line of its output to the log, `== step` lines to `progress` with
/// the elapsed time; on failure the log's last lines are in the message.
fn run_logged(
    cmd: &mut Command,
    log: &mut std::fs::File,
    started: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run bash ({e})"))?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let t = std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(l);
        }
    });
    let stdout = child.stdout.take().expect("piped");
    let t2 = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut tail: std::collections::VecDeque<String> = Default::default();
    for line in rx {
        let _ = writeln!(log, "{line}");
        if let Some(step) = line.strip_prefix("== ") {
            progress(&format!(
                "  [{:>4.0}s] {step}",
                started.elapsed().as_secs_f32()
            ));
        }
        tail.push_back(line);
        if tail.len() > 15 {
            tail.pop_front();
        }
    }
    let _ = t.join();
    let _ = t2.join();
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the recipe failed ({status}); its output ended with:\n    {}",
            tail.into_iter().collect::<Vec<_>>().join("\n    ")
        ))
    }
}

/// apt with its own sources list, lists and cache under the builds dir.
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(root: &Path, mirror: &str, b: &BuildSpec) -> Result<PrivateApt, ArtifactError> {
        let dir = root.join("apt");
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(d)).map_err(ArtifactError::io(&dir))?;
        }
        let security = security_mirror(mirror);
        let key = "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg";
        let mut list = String::from("# written by ezk for building debian-source artifacts\n");
        list.push_str(&format!("deb-src [{key}] {mirror} {} main\n", b.suite));
        list.push_str(&format!(
            "deb-src [{key}] {security} {}-security main\n",
            b.suite
        ));
        let mut suites: Vec<&str> = b.toolchain.iter().map(|t| t.suite.as_str()).collect();
        suites.dedup();
        for s in suites {
            list.push_str(&format!("deb [arch=amd64 {key}] {mirror} {s} main\n"));
            list.push_str(&format!(
                "deb [arch=amd64 {key}] {security} {s}-security main\n"
            ));
        }
        let p = dir.join("sources.list");
        std::fs::write(&p, list).map_err(ArtifactError::io(&p))?;
        Ok(PrivateApt { dir })
    }

    fn opts(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oAcquire::Languages=none".into(),
            "-oAPT::Sandbox::User=root".into(),
            "-q".into(),
        ]
    }

    fn update(&self, log: &mut std::fs::File) -> Result<(), String> {
        // A suite that moved off the mirror (old releases go to archive.debian.org) fails only
        // its own lines; the download that needs it says so below.
        let out = Command::new("apt-get")
            .args(self.opts())
            .arg("update")
            .output()
            .map_err(|e| format!("cannot run apt-get ({e})"))?;
        let _ = log.write_all(&out.stdout);
        let _ = log.write_all(&out.stderr);
        Ok(())
    }

    fn run(&self, args: &[&str], dir: &Path, log: &mut std::fs::File) -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(self.opts())
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run apt-get ({e})"))?;
        let _ = log.write_all(&out.stdout);
        let _ = log.write_all(&out.stderr);
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
        Err(format!(
            "apt-get {} failed: {}; apt's sources for this build: {}/sources.list (the suite may have moved to archive.debian.org; use a mirror that serves it)",
            args.join(" "),
            if reason.is_empty() {
                stderr.trim().to_string()
            } else {
                reason.join("; ")
            },
            self.dir.display()
        ))
    }
}

/// The security archive beside a Debian mirror: `<mirror>-security` for a `.../debian` mirror.
fn security_mirror(mirror: &str) -> String {
    let m = mirror.trim_end_matches('/');
    if m.ends_with("/debian") {
        format!("{m}-security")
    } else {
        "http://deb.debian.org/debian-security".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Manifest;

    fn lab_build() -> Artifact {
        let m = Manifest::shipped().unwrap();
        let (_, set) = m.set("lab-debian").unwrap();
        set.artifacts
            .iter()
            .find(|a| a.build.is_some())
            .expect("lab-debian builds Kubernetes")
            .clone()
    }

    #[test]
    fn key_changes_with_every_input() {
        let a = lab_build();
        let k = key(&a);
        assert_eq!(k.len(), 16);
        let mut b = a.clone();
        b.build.as_mut().unwrap().toolchain[0].sha256 = "0".repeat(64);
        assert_ne!(key(&b), k, "toolchain pin");
        let mut b = a.clone();
        b.build
            .as_mut()
            .unwrap()
            .env
            .insert("VERSION".into(), "v1.20.3".into());
        assert_ne!(key(&b), k, "env");
        let mut b = a.clone();
        b.build.as_mut().unwrap().source.push('x');
        assert_ne!(key(&b), k, "source version");
        assert_eq!(key(&a.clone()), k, "stable");
    }

    #[test]
    fn security_archive_beside_the_mirror() {
        assert_eq!(
            security_mirror("http://deb.debian.org/debian/"),
            "http://deb.debian.org/debian-security"
        );
        assert_eq!(
            security_mirror("http://mirror.local/deb"),
            "http://deb.debian.org/debian-security"
        );
    }
}
