//! The lab's Kubernetes, built from Debian's source package (`debian-source` artifacts): one
//! build per machine, then every home installs it from the machine's build cache; a tampered
//! cache entry and a toolchain that does not match its pin are refused with the path and the
//! fix. These run the real build the first time on a machine (about 6 minutes on 2 cores;
//! `tests/deps.sh` does it before the suite), and the real binaries afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};


use ezk::artifacts::source_build;
use ezk::artifacts::{Artifact, Manifest, Store};

use crate::support::sha256_path;

/// `ezk download <args>` with this home, and `EZK_LAB_DIR` (where the build cache lives) if given.
fn ezk(home: &Path, lab_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut c = crate::common::ezk::command(home);
    c.arg("download").args(args);
    if let Some(d) = lab_dir {
        c.env("EZK_LAB_DIR", d);
    }
    c.output().unwrap()
}

/// `ezk download --k8s-ver lab-debian --from-apt --only kubernetes-server` in `home`.
fn fill_kubernetes(home: &Path, lab_dir: Option<&Path>) -> Output {
    let args = ["--k8s-ver", "lab-debian", "--from-apt", "--only", "kubernetes-server"];
    ezk(home, lab_dir, &args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn kubernetes_server() -> Artifact {
    let m = Manifest::shipped().unwrap();
    let (_, lab) = m.set("lab-debian").unwrap();
    lab.artifacts
        .iter()
        .find(|a| a.name == "kubernetes-server")
        .unwrap()
        .clone()
}

/// Build (or find) the machine's cache entry; serialised, since every test here needs it.
fn machine_entry() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let a = kubernetes_server();
    let root = source_build::cache_root();
    if !source_build::is_cached(&root, &a) {
        let home = tempfile::tempdir().unwrap();
        let out = fill_kubernetes(home.path(), None);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("verified (built here in"),
            "{}",
            text(&out)
        );
    }
    source_build::entry(&root, &a).dir
}

#[test]
fn a_second_home_installs_the_build_from_the_machine_cache() {
    let entry = machine_entry();
    let stamp = std::fs::metadata(entry.join("out/SHA256SUMS"))
        .unwrap()
        .modified()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = fill_kubernetes(home.path(), None);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("kubernetes-server            verified (from this machine's build cache"),
        "not a cache hit:\n{said}"
    );
    // No build started here (another test's ezk may hold the build lock a moment: waiting for
    // it, "another ezk is building …", is not building).
    assert!(!said.contains("from Debian source") && !said.contains("built here"), "{said}");
    assert_eq!(
        std::fs::metadata(entry.join("out/SHA256SUMS"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp,
        "the cache entry was rebuilt"
    );
    // The store holds the pinned binaries, and they are Kubernetes v1.20.2 for real.
    let a = kubernetes_server();
    let store = Store::at(home.path().join("down"), Manifest::shipped().unwrap());
    for (_, bin) in a.binaries() {
        let b = store.binary(bin, "lab-debian").unwrap();
        assert_eq!(b.sha256, a.member_sha256[bin], "{bin}");
        assert_eq!(sha256_path(&b.path), a.member_sha256[bin], "{bin}");
    }
    for bin in [
        "kube-apiserver",
        "kubelet",
        "kube-proxy",
        "kube-scheduler",
        "kube-controller-manager",
    ] {
        let v = Command::new(store.binary(bin, "lab-debian").unwrap().path)
            .arg("--version")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&v.stdout).trim(),
            "Kubernetes v1.20.2",
            "{bin}"
        );
    }
    let v = Command::new(store.binary("kubectl", "lab-debian").unwrap().path)
        .args(["version", "--client", "--short"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        "Client Version: v1.20.2"
    );
    // pause: recorded at build time (not pinned), static (an ELF without an interpreter).
    let pause = store.binary("pause", "lab-debian").unwrap();
    assert_eq!(
        elf_interpreter(&std::fs::read(&pause.path).unwrap()),
        Some(false)
    );
    // CoreDNS, built from the bundle against the same tree: pinned, static, the version built.
    let coredns = store.binary("coredns", "lab-debian").unwrap();
    let pin = &a.build.as_ref().unwrap().output_sha256["coredns"];
    assert_eq!(&sha256_path(&coredns.path), pin);
    assert_eq!(elf_interpreter(&std::fs::read(&coredns.path).unwrap()), Some(false));
    let v = Command::new(&coredns.path).arg("-version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("CoreDNS-1.8.3\n"), "{}", text(&v));
    let plugins = Command::new(&coredns.path).arg("-plugins").output().unwrap();
    let plugins = String::from_utf8_lossy(&plugins.stdout);
    for p in ["kubernetes", "forward", "cache", "loop", "reload", "health", "ready", "loadbalance", "errors", "prometheus"] {
        assert!(plugins.contains(&format!("dns.{p}\n")), "{p} not compiled in:\n{plugins}");
    }
    assert!(!plugins.contains("dns.route53"), "plugins beyond COREDNS_PLUGINS:\n{plugins}");
}

/// A store filled before the manifest named a new build output (CoreDNS was added beside pause)
/// is not complete: `download` installs the build again instead of saying "already verified".
#[test]
fn a_store_without_a_new_output_is_filled_again() {
    machine_entry();
    let home = tempfile::tempdir().unwrap();
    assert!(fill_kubernetes(home.path(), None).status.success());
    let a = kubernetes_server();
    let store = Store::at(home.path().join("down"), Manifest::shipped().unwrap());
    assert!(store.is_complete(&a));
    // As an older ezk left it: no coredns line in the record.
    let dir = store.binary("kube-apiserver", "lab-debian").unwrap().path.parent().unwrap().to_path_buf();
    let sums = dir.join("SHA256SUMS");
    let old: String = std::fs::read_to_string(&sums).unwrap().lines().filter(|l| !l.ends_with("  coredns")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&sums, old).unwrap();
    assert!(!store.is_complete(&a));
    let out = fill_kubernetes(home.path(), None);
    assert!(out.status.success() && !text(&out).contains("kubernetes-server            already verified"), "{}", text(&out));
    assert!(store.is_complete(&a));
    assert!(store.binary("coredns", "lab-debian").is_ok());
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (None: not such an ELF).
fn elf_interpreter(b: &[u8]) -> Option<bool> {
    if !b.starts_with(b"\x7fELF\x02\x01") || b.len() < 64 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().ok()?) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    let types = (0..count).map(|i| {
        u32::from_le_bytes(
            b[phoff + i * size..phoff + i * size + 4]
                .try_into()
                .unwrap(),
        )
    });
    const PT_INTERP: u32 = 3;
    Some(types.into_iter().any(|t| t == PT_INTERP))
}

#[test]
fn a_tampered_cache_entry_is_refused_with_its_path() {
    let entry = machine_entry();
    let a = kubernetes_server();
    // A copy of the machine's cache in a lab dir of our own (hard links, then kubelet replaced).
    let lab_dir = tempfile::tempdir().unwrap();
    let copy = source_build::entry(&lab_dir.path().join("builds"), &a).dir;
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let ok = Command::new("cp")
        .arg("-al")
        .arg(&entry)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    let kubelet = copy.join("out/kubelet");
    let mut bytes = std::fs::read(&kubelet).unwrap();
    bytes.push(0);
    std::fs::remove_file(&kubelet).unwrap();
    std::fs::write(&kubelet, bytes).unwrap();

    let home = tempfile::tempdir().unwrap();
    let out = fill_kubernetes(home.path(), Some(lab_dir.path()));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for want in [
        format!("the cached build {} does not match", copy.display()),
        "kubelet".to_string(),
        format!("rm -rf {}", copy.display()),
    ] {
        assert!(said.contains(&want), "missing {want:?}:\n{said}");
    }
    assert!(
        !said.contains("from Debian source"),
        "rebuilt instead of refusing:\n{said}"
    );
    let store = Store::at(home.path().join("down"), Manifest::shipped().unwrap());
    assert!(!store.is_complete(&a), "a refused build entered the store");
    // The machine's own entry is untouched (hard links: the tampered file was replaced).
    assert_eq!(
        sha256_path(&entry.join("out/kubelet")),
        a.member_sha256["kubelet"]
    );
}

#[test]
fn a_toolchain_not_matching_its_pin_is_refused_and_nothing_is_cached() {
    let a = kubernetes_server();
    let b = a.build.clone().unwrap();
    let mut toolchain = b.toolchain.clone();
    toolchain[0].sha256 = "0".repeat(64);
    let build = serde_yaml::to_string(&ezk::artifacts::manifest::BuildSpec {
        toolchain,
        ..b.clone()
    })
    .unwrap();
    let indent = |t: &str, n: usize| {
        t.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let members: String = a
        .members
        .iter()
        .map(|(p, n)| format!("{p}: {n}\n"))
        .collect();
    let pins: String = a
        .member_sha256
        .iter()
        .map(|(n, s)| format!("{n}: {s}\n"))
        .collect();
    let yaml = format!(
        "sets:\n  t:\n    artifacts:\n      - name: kubernetes-server\n        version: \"{}\"\n        url: {}\n        sha256: {}\n        kind: debian-source\n        build:\n{}        members:\n{}        member_sha256:\n{}",
        a.version,
        a.url,
        a.sha256,
        indent(&build, 10),
        indent(&members, 10),
        indent(&pins, 10)
    );
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("versions.yml");
    std::fs::write(&m, yaml).unwrap();
    let lab_dir = dir.path().join("lab");
    let home = dir.path().join("home");
    let out = ezk(
        &home,
        Some(&lab_dir),
        &[
            "--manifest",
            m.to_str().unwrap(),
            "--k8s-ver",
            "t",
            "--from-apt",
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("toolchain {}", b.toolchain[0].deb))
            && said.contains(&format!("the manifest pins {}", "0".repeat(64))),
        "{said}"
    );
    // Nothing that looks like a build is left: no entry, no scratch dir.
    let left: Vec<String> = std::fs::read_dir(lab_dir.join("builds"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("kubernetes-server-1.20.2-") && !n.ends_with(".failed.log")
                || n.starts_with(".tmp-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // No binary entered the store.
    assert!(!home.join("down/bin/kubernetes-server").exists());
}
