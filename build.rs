//! Embeds `roles/` and `playbooks/` into the binary so `ezk` works from any directory.
//!
//! Generates `$OUT_DIR/embedded.rs` with one `(relative path, include_bytes!)` pair per file.
//! Plain std, no crate: a directory walk and `include_bytes!` are all that is needed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut files = Vec::new();
    println!("cargo:rerun-if-changed=build.rs");
    for top in ["roles", "playbooks"] {
        let dir = root.join(top);
        // Watching a missing path would make cargo rerun this script (and rebuild the crate)
        // on every build, and a folder created later is not seen until build.rs changes: the
        // repository keeps both folders (with a hidden .keep, which is not embedded).
        if dir.is_dir() {
            println!("cargo:rerun-if-changed={top}");
            walk(&dir, &mut files);
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    let mut f = fs::File::create(out).unwrap();
    writeln!(
        f,
        "/// Files under roles/ and playbooks/ at build time: (relative path, bytes)."
    )
    .unwrap();
    writeln!(f, "pub static FILES: &[(&str, &[u8])] = &[").unwrap();
    for p in &files {
        let rel = p
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        writeln!(
            f,
            "    ({rel:?}, include_bytes!({:?})),",
            p.to_string_lossy()
        )
        .unwrap();
    }
    writeln!(f, "];").unwrap();
}
