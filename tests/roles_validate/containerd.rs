//! containerd's config.toml as containerd itself reads it: `containerd --config F config dump`
//! prints the configuration containerd decoded (defaults merged with the file). Every key the
//! role writes must come back with the value written — a key containerd does not know (a typo,
//! a key of another config version) is silently dropped by its decoder, and would be caught here.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `[section] key` → value, from TOML text as the role writes it and containerd dumps it:
/// one `key = value` per line under `[section]` headers; comments and blank lines skipped.
pub fn toml_keys(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = h.to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once(" = ") {
            out.insert(
                (section.clone(), k.trim().to_string()),
                v.trim().to_string(),
            );
        }
    }
    out
}

/// What containerd made of `file`: its dump, or why it refused the file.
pub fn dump(containerd: &Path, file: &Path) -> Result<String, String> {
    let out = Command::new(containerd)
        .arg("--config")
        .arg(file)
        .args(["config", "dump"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "containerd refused it ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every key of `file` is in containerd's dump with the same value.
pub fn check(containerd: &Path, file: &Path) -> Result<(), String> {
    let written = toml_keys(&std::fs::read_to_string(file).map_err(|e| e.to_string())?);
    if written.is_empty() {
        return Err("no key found in the rendered file".into());
    }
    let dumped = toml_keys(&dump(containerd, file)?);
    let wrong: Vec<String> = written
        .iter()
        .filter(|(k, v)| dumped.get(*k) != Some(*v))
        .map(|((s, k), v)| {
            format!(
                "[{s}] {k} = {v}: containerd has {}",
                dumped
                    .get(&(s.clone(), k.clone()))
                    .map_or("no such key", String::as_str)
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

#[test]
fn toml_keys_reads_sections_and_skips_comments() {
    let k = toml_keys("# c\nversion = 2\n[grpc]\n  address = \"/s\"\n[a.\"b.c\".d]\n  X = true\n");
    assert_eq!(k[&(String::new(), "version".into())], "2");
    assert_eq!(k[&("grpc".into(), "address".into())], "\"/s\"");
    assert_eq!(k[&("a.\"b.c\".d".into(), "X".into())], "true");
    assert_eq!(k.len(), 3);
}

/// The check sees what containerd drops: a misspelt key, and a value it reads differently.
#[test]
fn a_key_containerd_does_not_know_is_reported() {
    let Some(containerd) = crate::support::tool("containerd", "containerd config dump") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(
        &f,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_imag = \"x\"\n  \
         sandbox_image = \"y\"\n",
    )
    .unwrap();
    let err = check(&containerd, &f).unwrap_err();
    assert!(
        err.contains("sandbox_imag = \"x\": containerd has no such key"),
        "{err}"
    );
    assert!(!err.contains("sandbox_image ="), "{err}");
}
