//! The sizes ezk accepts in an inventory, so that an unusual one (a config.yml of megabytes, an
//! inventory of thousands of hosts or variables, a template that doubles another) is refused
//! at once with the limit it broke, instead of taking minutes or all memory. Everything within
//! the limits is read in time linear in its size; what grows with hosts × variables (every
//! variable is evaluated for every host) is bounded by `MAX_HOST_VARS`.
//!
//! Also where the files are read: a UTF-8 byte-order mark (Windows editors write one) is
//! dropped.

use std::path::Path;

use super::error::{InventoryError, Location};
use super::model::{Source, VarDefs};
use super::vars::GroupTree;

/// Largest inventory file read (`hosts`, `hosts.yml`, `config.yml`, `-e @file`). kubeasz's
/// config.yml is about 10 KiB.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most hosts in one cluster (Kubernetes is tested up to 5,000 nodes).
pub const MAX_HOSTS: usize = 5_000;
/// Most variables one file, group or host defines.
pub const MAX_VARS: usize = 10_000;
/// Most (host, variable definition) pairs: every variable is evaluated for every host.
pub const MAX_HOST_VARS: usize = 5_000_000;
/// Largest value a template may render to (a string's bytes; a list's or map's items count as
/// their own sizes plus 8 bytes each).
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// Most template instructions one variable may take to render (a loop over a huge range).
pub const MAX_RENDER_STEPS: u64 = 1_000_000;

/// A file's text: refused above `MAX_FILE_BYTES`, a leading byte-order mark dropped.
pub fn read_text(path: &Path) -> Result<String, InventoryError> {
    let io = |e: std::io::Error| InventoryError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(InventoryError::invalid(
            Location::new(path, 0),
            format!(
                "the file is {size} bytes; ezk reads inventory files of at most {} MiB \
                 ({MAX_FILE_BYTES} bytes)",
                MAX_FILE_BYTES >> 20
            ),
            "keep only the cluster's settings in it (kubeasz's config.yml is about 10 KiB); \
             data that is not a variable belongs in files of its own",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Hosts, variables per file/group/host, and host × variable pairs within the limits.
pub fn check_counts(
    src: &Source,
    tree: &GroupTree,
    config: &VarDefs,
    extra: &VarDefs,
    hosts_file: &Path,
) -> Vec<InventoryError> {
    let mut errors = Vec::new();
    if let Some((h, def)) = src.hosts.get_index(MAX_HOSTS) {
        errors.push(InventoryError::invalid(
            def.at.clone(),
            format!(
                "host {h} is host number {} of {}; ezk manages at most {MAX_HOSTS} hosts in one cluster",
                MAX_HOSTS + 1,
                src.hosts.len()
            ),
            "split the hosts into several clusters (Kubernetes is tested up to 5000 nodes)",
        ));
    }
    let blocks = std::iter::once(("config.yml".to_string(), config))
        .chain(std::iter::once(("-e".to_string(), extra)))
        .chain(
            src.groups
                .iter()
                .map(|(g, d)| (format!("group {g}"), &d.vars)),
        )
        .chain(
            src.hosts
                .iter()
                .map(|(h, d)| (format!("host {h}"), &d.vars)),
        );
    for (what, vars) in blocks {
        if let Some((_, def)) = vars.get_index(MAX_VARS) {
            errors.push(InventoryError::invalid(
                def.at.clone(),
                format!(
                    "{what} defines {} variables; ezk reads at most {MAX_VARS} from one file, group or host",
                    vars.len()
                ),
                "remove the variables no role uses",
            ));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    // An upper bound of what the resolver evaluates (a name defined twice counts twice),
    // found without merging anything.
    let shared = config.len() + extra.len() + src.groups.get("all").map_or(0, |g| g.vars.len());
    let mut total = 0usize;
    let mut widest = 0usize;
    for (h, def) in &src.hosts {
        let own = shared
            + def.vars.len()
            + tree
                .groups_of(h)
                .iter()
                .filter_map(|g| src.groups.get(g))
                .map(|g| g.vars.len())
                .sum::<usize>();
        widest = widest.max(own);
        total = total.saturating_add(own);
    }
    if total > MAX_HOST_VARS {
        errors.push(InventoryError::invalid(
            Location::new(hosts_file, 0),
            format!(
                "{} hosts with up to {widest} variables each make {total} host variables; ezk \
                 evaluates every variable for every host and takes at most {MAX_HOST_VARS}",
                src.hosts.len()
            ),
            "remove the variables no role uses from config.yml and [all:vars], or split the cluster",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_dropped_and_big_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "\u{feff}[etcd]\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "[etcd]\n");
        std::fs::write(&p, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = read_text(&p).unwrap_err().to_string();
        assert!(
            e.contains("the file is 4194305 bytes; ezk reads inventory files of at most 4 MiB"),
            "{e}"
        );
        assert!(e.contains("fix:"), "{e}");
    }
}
