//! The deploy machine's own setup, read by more than one folder: the Debian mirror its apt
//! uses (the lab's debootstrap and the artifact store's source builds fetch from it) and
//! whether a tool is on its PATH. A leaf: it imports nothing of ezk.

use std::path::PathBuf;

/// Whether `tool` is on PATH (or in the sbin dirs a sudo PATH may lack).
pub fn has_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

/// The Debian mirror from the machine's apt sources (deb822 or one-line), else deb.debian.org.
pub fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let name = f.to_string_lossy().into_owned();
            if name.ends_with(".sources") || name.ends_with(".list") {
                texts.extend(std::fs::read_to_string(&f).ok());
            }
        }
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// First main-archive URI (ending in `/debian`, not security) in one sources file.
fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches('/').to_string())
        .find(|w| w.ends_with("/debian"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_and_one_line() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let list = "deb http://ftp.example.org/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(list).as_deref(),
            Some("http://ftp.example.org/debian")
        );
        assert_eq!(
            mirror_in("deb https://packages.cloud.google.com/apt cloud-sdk main\n"),
            None
        );
    }

}
