//! Fact kind: paths. One `find` for every path the roles of a gather manage (kind, mode, owner,
//! group, link target, and for files the signature `checksums` keys on), then one hash
//! (`ezk_shas`) for every file whose content is wanted, skipping files whose signature is the
//! one recorded.

use std::collections::HashMap;

use super::checksums::Checksums;
use super::{Parsed, ReadLine, quoted_list, task_path};
use crate::exec::desired::Desired;
use crate::exec::transport::sh_quote;
use crate::plan::action::{Action, Task};

/// Kind of a filesystem path as found on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    None,
    File,
    Dir,
    Link,
    Other,
}

/// A path's state: kind, mode bits, owner, group, sha256 (files, when asked), link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFact {
    pub kind: PathKind,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
    /// Files: device, inode, size, mtime, ctime as the host printed them (`checksums`), when
    /// the file was not modified within a second of the gather.
    pub sig: Option<String>,
}

impl PathFact {
    /// A path that does not exist.
    pub fn none() -> Self {
        PathFact { kind: PathKind::None, mode: 0, owner: String::new(), group: String::new(), sha256: None, link_target: None, sig: None }
    }
}

/// The script part, once per gather however many roles share it: the host's clock, one `find`
/// for every path of every role in `tasks` (task, what is wanted), one hash (`ezk_shas`) for
/// their files. What it prints serves every role's section (`parse_facts_many`), and `$F` (what
/// `find` printed) stays set for the sections that look up a signature in it (`packages`).
pub(super) fn script<'a>(s: &mut String, tasks: impl Iterator<Item = (&'a Task, &'a Desired)> + Clone, checksums: &Checksums) {
    let mut paths: Vec<&str> = tasks.clone().filter_map(|(t, _)| task_path(t)).collect();
    if tasks.clone().any(|(t, _)| matches!(t.action, Action::Package { .. })) {
        paths.extend(super::packages::DPKG_DB);
    }
    paths.sort();
    paths.dedup();
    if !paths.is_empty() {
        // The host's clock first: signatures from the last second are not cached (see `checksums`).
        s.push_str(&format!(
            "ezk_now=$(date +%s.%N)\necho \"@@now $ezk_now\"\nF=\"\n$(find {} -maxdepth 0 -printf '@@f\\t%y\\t%m\\t%u\\t%g\\t%l\\t%p\\n@@i\\t%D:%i:%s:%T@:%C@\\t%p\\n' 2>/dev/null)\n\"\nprintf '%s' \"$F\"\n",
            quoted_list(paths.iter().copied())
        ));
    }
    let mut files: Vec<&str> = tasks.filter(|(_, w)| matches!(w, Desired::File { .. })).filter_map(|(t, _)| task_path(t)).collect();
    files.sort();
    files.dedup();
    if !files.is_empty() {
        // Files go into "$@" for one `ezk_shas`; a file whose signature is the recorded one
        // gets its recorded sum echoed instead.
        s.push_str("set --\n");
        for f in &files {
            match checksums.get(f) {
                Some((sig, sha)) => s.push_str(&format!(
                    "case \"$F\" in *{}*) printf '%s\\n' {};; *) set -- \"$@\" {};; esac\n",
                    sh_quote(&format!("\n@@i\t{sig}\t{f}\n")),
                    sh_quote(&format!("@@h {sha}  {f}")),
                    sh_quote(f)
                )),
                None => s.push_str(&format!("set -- \"$@\" {}\n", sh_quote(f))),
            }
        }
        s.push_str("[ $# -eq 0 ] || ezk_p @@h \"$(ezk_shas \"$@\" 2>/dev/null)\"\n");
    }
}

/// What the output said about paths, by host path.
#[derive(Default)]
pub(super) struct Raw {
    paths: HashMap<String, PathFact>,
    hashes: HashMap<String, String>,
    sigs: HashMap<String, String>,
    now: Option<f64>,
}

impl ReadLine for Raw {
    fn line(&mut self, line: &str) -> Parsed {
        if let Some(rest) = line.strip_prefix("@@f\t") {
            let f: Vec<&str> = rest.splitn(6, '\t').collect();
            if f.len() != 6 {
                return Parsed::Bad;
            }
            let kind = match f[0] {
                "f" => PathKind::File,
                "d" => PathKind::Dir,
                "l" => PathKind::Link,
                _ => PathKind::Other,
            };
            let Ok(mode) = u32::from_str_radix(f[1], 8) else { return Parsed::Bad };
            let fact = PathFact {
                kind,
                mode,
                owner: f[2].to_string(),
                group: f[3].to_string(),
                sha256: None,
                link_target: (kind == PathKind::Link).then(|| f[4].to_string()),
                sig: None,
            };
            self.paths.insert(f[5].to_string(), fact);
        } else if let Some(rest) = line.strip_prefix("@@now ") {
            // A date without %N (not GNU) gives no clock: then nothing is cached.
            self.now = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("@@i\t") {
            let Some((sig, p)) = rest.split_once('\t') else { return Parsed::Bad };
            // Cached only when the last change (ctime, the signature's last field) is over a
            // second older than the host's clock: timestamps are coarser than a write.
            let ctime: Option<f64> = sig.rsplit(':').next().and_then(|c| c.parse().ok());
            if let (Some(c), Some(n)) = (ctime, self.now)
                && c < n - 1.0
            {
                self.sigs.insert(p.to_string(), sig.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("@@h ") {
            // "HEX  PATH" (sha256sum, or a recorded sum) or "HEX *PATH" (openssl -r). sha256sum
            // escapes odd names with a leading backslash: leave those unknown.
            if let Some((h, p)) = rest.split_once("  ").or_else(|| rest.split_once(" *"))
                && !h.starts_with('\\')
                && h.len() == 64
            {
                self.hashes.insert(p.to_string(), h.to_string());
            }
        } else {
            return Parsed::NotMine;
        }
        Parsed::Ok
    }
}

impl Raw {
    /// The host's clock as gathered (whole seconds).
    pub(super) fn now(&self) -> Option<i64> {
        self.now.map(|n| n.floor() as i64)
    }

    /// The signature of any path `find` listed (file or directory), when not racy.
    pub(super) fn sig(&self, path: &str) -> Option<&str> {
        self.sigs.get(path).map(String::as_str)
    }

    /// The state of `path`: not listed by `find` means it does not exist.
    pub(super) fn fact(&self, path: &str) -> PathFact {
        let mut pf = self.paths.get(path).cloned().unwrap_or_else(PathFact::none);
        if pf.kind == PathKind::File {
            pf.sha256 = self.hashes.get(path).cloned();
            pf.sig = self.sigs.get(path).cloned();
        }
        pf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both hash tools' line formats read back (sha256sum's "HEX  PATH", openssl's "HEX *PATH"),
    /// and a line that is neither leaves the file's content unknown.
    #[test]
    fn hash_lines_of_either_tool_parse() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut raw = Raw::default();
        for l in [
            "@@f\tf\t644\troot\troot\t\t/a b".to_string(),
            "@@f\tf\t644\troot\troot\t\t/c".to_string(),
            "@@f\tf\t644\troot\troot\t\t/d".to_string(),
            format!("@@h {hex}  /a b"),
            format!("@@h {hex} */c"),
            "@@h abc */d".to_string(),
        ] {
            assert!(matches!(raw.line(&l), Parsed::Ok), "{l}");
        }
        assert_eq!(raw.fact("/a b").sha256.as_deref(), Some(hex));
        assert_eq!(raw.fact("/c").sha256.as_deref(), Some(hex));
        assert_eq!(raw.fact("/d").sha256, None);
    }
}
