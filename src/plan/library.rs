//! Where role and playbook files come from: the copies embedded in the binary at build time,
//! overridden by an on-disk copy under the ezk home.
//!
//! Override granularity (chosen so a role is never a mix of two versions):
//! - a role folder `<home>/roles/<role>/` replaces the embedded role `<role>` as a whole
//!   (tasks, defaults, meta, templates, files); other roles stay embedded;
//! - a playbook file `<home>/playbooks/NN.step.yml` replaces the embedded file of the same name;
//!   a playbook only on disk adds a step.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::PlanError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// One file of the library.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path shown in messages: `roles/etcd/tasks.yml` when embedded, the absolute path on disk.
    pub display: String,
    pub bytes: Cow<'static, [u8]>,
}

impl Entry {
    /// The file as UTF-8 text.
    pub fn text(&self) -> Result<&str, PlanError> {
        std::str::from_utf8(&self.bytes).map_err(|_| PlanError::Load {
            file: self.display.clone(),
            line: None,
            msg: "not UTF-8 text".into(),
        })
    }
}

/// Every role and playbook file, keyed by logical path (`roles/<role>/...`, `playbooks/...`).
#[derive(Debug, Clone, Default)]
pub struct Library {
    files: BTreeMap<String, Entry>,
}

impl Library {
    /// The embedded roles/playbooks, overridden by `<home>/roles` and `<home>/playbooks`.
    pub fn with_overrides(home_root: &Path) -> Result<Library, PlanError> {
        Library::build(embedded::FILES, Some(home_root))
    }

    /// Only the files under `root/roles` and `root/playbooks` (fixtures, tests).
    pub fn from_dir(root: &Path) -> Result<Library, PlanError> {
        Library::build(&[], Some(root))
    }

    /// Only what was embedded at build time.
    pub fn embedded() -> Library {
        Library::build(embedded::FILES, None).expect("embedded files need no I/O")
    }

    fn build(
        embedded: &'static [(&str, &[u8])],
        root: Option<&Path>,
    ) -> Result<Library, PlanError> {
        let mut files = BTreeMap::new();
        for (path, bytes) in embedded {
            files.insert(
                path.to_string(),
                Entry {
                    display: path.to_string(),
                    bytes: Cow::Borrowed(*bytes),
                },
            );
        }
        let Some(root) = root else {
            return Ok(Library { files });
        };
        let roles = root.join("roles");
        if roles.is_dir() {
            for dir in sorted_dir(&roles)? {
                if !dir.is_dir() {
                    continue;
                }
                let name = file_name(&dir);
                let prefix = format!("roles/{name}/");
                let mut found = Vec::new();
                walk(&dir, &mut found)?;
                // An empty folder is not a role: it must not hide the embedded one.
                if found.is_empty() {
                    continue;
                }
                files.retain(|k, _| !k.starts_with(&prefix));
                for p in found {
                    let rel = p
                        .strip_prefix(&dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    insert_disk(&mut files, format!("{prefix}{rel}"), &p)?;
                }
            }
        }
        let books = root.join("playbooks");
        if books.is_dir() {
            for p in sorted_dir(&books)? {
                if p.is_file() {
                    insert_disk(&mut files, format!("playbooks/{}", file_name(&p)), &p)?;
                }
            }
        }
        Ok(Library { files })
    }

    /// A file by logical path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.files.get(path)
    }

    /// Files whose logical path starts with `prefix`, in path order.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.files
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Names of every role (folders under `roles/` holding at least one file).
    pub fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .under("roles/")
            .filter_map(|(k, _)| {
                k["roles/".len()..]
                    .split_once('/')
                    .map(|(r, _)| r.to_string())
            })
            .collect();
        names.dedup();
        names
    }

    /// How a role's folder is shown in messages (embedded `roles/x`, or its path on disk).
    pub fn role_display(&self, role: &str) -> String {
        let prefix = format!("roles/{role}/");
        match self.under(&prefix).next() {
            Some((k, e)) => e.display[..e.display.len() - (k.len() - prefix.len())]
                .trim_end_matches('/')
                .to_string(),
            None => format!("roles/{role}"),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io_err(path: &Path, e: std::io::Error) -> PlanError {
    PlanError::Load {
        file: path.display().to_string(),
        line: None,
        msg: e.to_string(),
    }
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>, PlanError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !file_name(p).starts_with('.'))
        .collect();
    v.sort();
    Ok(v)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PlanError> {
    for p in sorted_dir(dir)? {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

fn insert_disk(
    files: &mut BTreeMap<String, Entry>,
    key: String,
    p: &Path,
) -> Result<(), PlanError> {
    let bytes = std::fs::read(p).map_err(|e| io_err(p, e))?;
    files.insert(
        key,
        Entry {
            display: p.display().to_string(),
            bytes: Cow::Owned(bytes),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_role_replaces_the_whole_embedded_role_and_disk_playbook_one_file() {
        static EMB: &[(&str, &[u8])] = &[
            ("roles/etcd/tasks.yml", b"[]"),
            ("roles/etcd/templates/old.j2", b"old"),
            ("roles/chrony/tasks.yml", b"[]"),
            ("playbooks/02.etcd.yml", b"embedded"),
            ("playbooks/01.prepare.yml", b"embedded"),
        ];
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("roles/etcd/templates")).unwrap();
        std::fs::write(d.path().join("roles/etcd/tasks.yml"), "- x").unwrap();
        std::fs::create_dir_all(d.path().join("roles/chrony")).unwrap();
        std::fs::create_dir_all(d.path().join("playbooks")).unwrap();
        std::fs::write(d.path().join("playbooks/02.etcd.yml"), "disk").unwrap();
        let lib = Library::build(EMB, Some(d.path())).unwrap();
        assert!(
            lib.get("roles/etcd/templates/old.j2").is_none(),
            "no mix of embedded and disk role files"
        );
        assert_eq!(&*lib.get("roles/etcd/tasks.yml").unwrap().bytes, b"- x");
        assert!(
            lib.get("roles/chrony/tasks.yml").is_some(),
            "an empty folder hides nothing"
        );
        assert_eq!(&*lib.get("playbooks/02.etcd.yml").unwrap().bytes, b"disk");
        assert_eq!(
            &*lib.get("playbooks/01.prepare.yml").unwrap().bytes,
            b"embedded"
        );
        assert_eq!(lib.role_names(), vec!["chrony", "etcd"]);
        assert_eq!(
            lib.role_display("etcd"),
            d.path().join("roles/etcd").display().to_string()
        );
        assert_eq!(lib.role_display("chrony"), "roles/chrony");
    }
}
