//! The import rules of `docs/architecture.md`, checked: every `crate::<folder>` a file under
//! `src/` names (in a `use` line or a path anywhere in its code) must be allowed for that file's
//! folder by the table between `<!-- import-rules` and `<!-- /import-rules -->`, and every folder
//! must have a row. The table is the only copy of the rules, so the page and the code cannot
//! drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table: folder (`inventory`, `home`, `main`) → what it may import.
fn rules(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let start = doc.find("<!-- import-rules").expect("import-rules table in docs/architecture.md");
    let end = doc.find("<!-- /import-rules -->").expect("end of the import-rules table");
    let mut rules = BTreeMap::new();
    for row in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let names = |cell: &str| -> Vec<String> {
            cell.split('`').skip(1).step_by(2).map(|n| n.trim_end_matches('/').trim_end_matches(".rs").to_string()).collect()
        };
        let folder = names(cells[1]).into_iter().next().expect("a folder in the first column");
        rules.insert(folder, names(cells[3]).into_iter().collect());
    }
    rules
}

/// The top-level modules `text` names through `prefix` (`crate::` in the library, `ezk::` in
/// `main.rs`), in code (comments left out).
fn imports(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b};`
                let inner = group.split('}').next().unwrap_or("");
                out.extend(inner.split(',').map(|p| p.trim().split("::").next().unwrap_or("").to_string()));
            } else {
                out.insert(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_follow_the_table_in_docs_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = rules(&std::fs::read_to_string(root.join("docs/architecture.md")).unwrap());
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel == "lib.rs" {
            continue; // declares the modules, imports none
        }
        let folder = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let Some(allowed) = rules.get(&folder) else {
            wrong.push(format!("src/{rel}: folder `{folder}` has no row in docs/architecture.md's import table"));
            continue;
        };
        let prefix = if rel == "main.rs" { "ezk::" } else { "crate::" };
        for m in imports(&std::fs::read_to_string(&f).unwrap(), prefix) {
            if m != folder && !allowed.contains(&m) {
                wrong.push(format!("src/{rel}: imports `{m}`, which `{folder}` may not (docs/architecture.md)"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_inline_paths_and_skips_comments() {
    let text = "use crate::{plan::X, exec};\nlet x = crate::pki::f(); // crate::lab\n";
    let got: Vec<String> = imports(text, "crate::").into_iter().collect();
    assert_eq!(got, ["exec", "pki", "plan"]);
}
