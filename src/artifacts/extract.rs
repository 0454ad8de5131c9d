//! Turning a verified artifact file into installed-name binaries, each with its sha256.
//!
//! Only the members the manifest names are written, under their binary names, mode 0755;
//! an archive lacking a named member is an error (a changed upstream layout must not silently
//! produce a store without, say, etcdctl).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use super::ArtifactError;
use super::manifest::{Artifact, Kind};

/// Binary name → sha256 hex of what was written.
pub type Extracted = BTreeMap<String, String>;

/// Write `a`'s binaries from the verified file `src` into `dest_dir` (which must exist).
pub fn extract(a: &Artifact, src: &Path, dest_dir: &Path) -> Result<Extracted, ArtifactError> {
    match a.kind {
        Kind::DebianSource => Err(ArtifactError::Archive {
            archive: src.to_path_buf(),
            msg: format!(
                "{} is the source of {} {}, which is built, not unpacked: ezk download --from-apt builds it",
                a.filename(),
                a.name,
                a.version
            ),
        }),
        Kind::Binary => {
            let name = a.binaries()[0].1.to_string();
            let f = fs::File::open(src).map_err(ArtifactError::io(src))?;
            let sum = write_binary(f, &dest_dir.join(&name))?;
            Ok(BTreeMap::from([(name, sum)]))
        }
        Kind::TarGz => {
            let f = fs::File::open(src).map_err(ArtifactError::io(src))?;
            let gz = flate2::read::GzDecoder::new(io::BufReader::new(f));
            from_tar(a, src, gz, dest_dir)
        }
        Kind::Deb => {
            // A .deb's data member is xz/zstd-compressed; dpkg-deb (present wherever .debs are
            // at home) streams it as a plain tar, which we then read ourselves.
            let mut child = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(src)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| ArtifactError::Archive {
                    archive: src.to_path_buf(),
                    msg: format!("cannot run dpkg-deb to unpack a .deb ({e}); install dpkg or use --from-local"),
                })?;
            let out = child.stdout.take().expect("piped stdout");
            let res = from_tar(a, src, out, dest_dir);
            let status = child.wait().map_err(ArtifactError::io(src))?;
            if res.is_ok() && !status.success() {
                return Err(ArtifactError::Archive {
                    archive: src.to_path_buf(),
                    msg: format!("dpkg-deb --fsys-tarfile failed ({status})"),
                });
            }
            res
        }
    }
}

fn from_tar(
    a: &Artifact,
    src: &Path,
    r: impl Read,
    dest_dir: &Path,
) -> Result<Extracted, ArtifactError> {
    let bad = |msg: String| ArtifactError::Archive {
        archive: src.to_path_buf(),
        msg,
    };
    let mut out = Extracted::new();
    // Upstream writes `./bridge` in one release and `bridge` in the next: compare normalized.
    let wanted: BTreeMap<&str, &String> =
        a.members.iter().map(|(p, b)| (normalize(p), b)).collect();
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let path = normalize(&path);
        if let Some(bin) = wanted.get(path) {
            let sum = write_binary(entry, &dest_dir.join(bin))?;
            out.insert((*bin).clone(), sum);
        }
    }
    for (path, bin) in &a.members {
        if !out.contains_key(bin) {
            return Err(bad(format!(
                "member {path} (binary {bin}) not found in the archive"
            )));
        }
    }
    Ok(out)
}

/// Archive paths are compared without a leading `./` or `/`.
pub fn normalize(p: &str) -> &str {
    let mut p = p;
    loop {
        if let Some(r) = p.strip_prefix("./") {
            p = r;
        } else if let Some(r) = p.strip_prefix('/') {
            p = r;
        } else {
            return p;
        }
    }
}

/// Copy `r` to `dest` (mode 0755), returning its sha256 hex.
pub fn write_binary(mut r: impl Read, dest: &Path) -> Result<String, ArtifactError> {
    let mut f = fs::File::create(dest).map_err(ArtifactError::io(dest))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).map_err(ArtifactError::io(dest))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(ArtifactError::io(dest))?;
    }
    f.sync_all().map_err(ArtifactError::io(dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .map_err(ArtifactError::io(dest))?;
    Ok(hex::encode(h.finalize()))
}
