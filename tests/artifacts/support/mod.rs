//! Shared test support: the loopback HTTP server and release-format archives built from the
//! real Debian binaries installed on this machine.

#![allow(dead_code)]

pub mod http_server;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::Digest as _;

/// A release file the way upstream publishes it, built from Debian's binaries.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: &'static str,
    pub version: &'static str,
    pub filename: &'static str,
    pub kind: &'static str,
    /// archive member → binary name (empty for kind binary)
    pub members: Vec<(String, String)>,
    /// binary name → the Debian file it came from
    pub sources: Vec<(String, PathBuf)>,
    pub bytes: Vec<u8>,
}

impl Release {
    pub fn sha256(&self) -> String {
        sha256(&self.bytes)
    }
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

pub fn sha256_path(p: &Path) -> String {
    sha256(&std::fs::read(p).unwrap())
}

fn runc_path() -> PathBuf {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("runc installed")
}

fn targz(entries: &[(String, PathBuf)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, src) in entries {
        let data = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

/// etcd, containerd, runc and CNI releases in upstream's layout, built once per test binary.
pub fn releases() -> &'static [Release] {
    static R: OnceLock<Vec<Release>> = OnceLock::new();
    R.get_or_init(|| {
        let etcd_dir = "etcd-v3.4.23-linux-amd64";
        let etcd: Vec<(String, PathBuf)> = ["etcd", "etcdctl"]
            .iter()
            .map(|b| (format!("{etcd_dir}/{b}"), PathBuf::from("/usr/bin").join(b)))
            .collect();
        let ctrd: Vec<(String, PathBuf)> = ["containerd", "containerd-shim-runc-v2", "ctr"]
            .iter()
            .map(|b| (format!("bin/{b}"), PathBuf::from("/usr/bin").join(b)))
            .collect();
        let cni: Vec<(String, PathBuf)> = ["bridge", "host-local", "loopback", "portmap"]
            .iter()
            .map(|b| (format!("./{b}"), PathBuf::from("/usr/lib/cni").join(b)))
            .collect();
        let mk = |name, version, filename, kind, entries: Vec<(String, PathBuf)>, bytes| Release {
            name,
            version,
            filename,
            kind,
            members: entries
                .iter()
                .map(|(m, p)| {
                    (
                        m.clone(),
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                    )
                })
                .collect(),
            sources: entries
                .iter()
                .map(|(_, p)| {
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        p.clone(),
                    )
                })
                .collect(),
            bytes,
        };
        let runc = runc_path();
        vec![
            mk(
                "etcd",
                "3.4.23",
                "etcd-v3.4.23-linux-amd64.tar.gz",
                "tar.gz",
                etcd.clone(),
                targz(&etcd),
            ),
            mk(
                "containerd",
                "1.6.20",
                "containerd-1.6.20-linux-amd64.tar.gz",
                "tar.gz",
                ctrd.clone(),
                targz(&ctrd),
            ),
            Release {
                name: "runc",
                version: "1.1.5",
                filename: "runc.amd64",
                kind: "binary",
                members: vec![],
                sources: vec![("runc".into(), runc.clone())],
                bytes: std::fs::read(&runc).unwrap(),
            },
            mk(
                "cni-plugins",
                "1.1.1",
                "cni-plugins-linux-amd64-v1.1.1.tgz",
                "tar.gz",
                cni.clone(),
                targz(&cni),
            ),
        ]
    })
}

/// The upstream-like path a release is served at.
pub fn upstream_path(r: &Release) -> String {
    format!("/releases/{}/v{}/{}", r.name, r.version, r.filename)
}

/// A test manifest (set `test`) pointing at `base` with the archives' real sha256.
pub fn manifest_yaml(base: &str) -> String {
    let mut y = String::from("sets:\n  test:\n    artifacts:\n");
    for r in releases() {
        y += &format!(
            "      - name: {}\n        version: \"{}\"\n        url: {base}{}\n        sha256: {}\n        kind: {}\n",
            r.name,
            r.version,
            upstream_path(r),
            r.sha256(),
            r.kind
        );
        if r.kind == "binary" {
            y += "        binary: runc\n";
        } else {
            y += "        members:\n";
            for (m, b) in &r.members {
                y += &format!("          \"{m}\": {b}\n");
            }
        }
    }
    y
}

/// Everything in a store that matters (files/, bin/ and images/): relative path → (sha256,
/// mode). Quarantine and in-progress files are left out, and so is each binary dir's
/// `.verified` (a hash cache: it records when a binary last matched, which a mere read may
/// write; it is never content).
pub fn snapshot(store_dir: &Path) -> BTreeMap<String, (String, u32)> {
    let mut out = BTreeMap::new();
    for top in ["files", "bin", "images"] {
        walk(&store_dir.join(top), store_dir, &mut out);
    }
    out
}

fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, (String, u32)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, root, out);
        } else if !p.to_string_lossy().ends_with(".part") && !p.ends_with(".verified") {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                (sha256_path(&p), mode),
            );
        }
    }
}
