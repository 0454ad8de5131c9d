//! Editing `clusters/<name>/hosts` (the INI inventory) as text, for the operations that add or
//! remove a host (`ezk add-node`, `del-node`): one host line goes in or out of one group's
//! section, and every other line — comments, blank lines, order, spacing — stays as written.
//! `set_value` changes one variable's value where it is defined (an INI or a YAML line), for
//! `ezk upgrade`, which records its `--to`.

use super::ini::{header, valid_var_name};

/// The host line for `host` with `vars` (`k=v`, a value with spaces or quotes single-quoted as
/// Ansible reads it); a bad variable name is an error naming it.
pub fn host_line(host: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut line = host.to_string();
    for (k, v) in vars {
        if !valid_var_name(k) {
            return Err(format!("{k:?} is not a variable name (letters, digits and _, not first a digit)"));
        }
        if v.contains('\'') || v.contains('\n') {
            return Err(format!("the value of {k} may not hold a quote or a newline"));
        }
        let quoted = v.is_empty() || v.contains(|c: char| c.is_whitespace() || "\"#;=".contains(c));
        line.push_str(&if quoted { format!(" {k}='{v}'") } else { format!(" {k}={v}") });
    }
    Ok(line)
}

/// `text` with `line` as the last host line of section `[group]` (after the section's last
/// host line, so the comments that head the next section stay with it). A missing section is
/// added at the end of the file.
pub fn add_host_line(text: &str, group: &str, line: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| is_header_of(l, group)) else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n[{group}]\n{line}\n"));
        return out;
    };
    let mut at = start + 1;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim();
        if t.starts_with('[') {
            break;
        }
        if !(t.is_empty() || t.starts_with('#') || t.starts_with(';')) {
            at = i + 1;
        }
    }
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    for l in &lines[..at] {
        out.push_str(l);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    for l in &lines[at..] {
        out.push_str(l);
    }
    out
}

/// `text` without the host lines of `host` in section `[group]`, and how many went.
pub fn remove_host(text: &str, group: &str, host: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    let mut removed = 0;
    for l in text.split_inclusive('\n') {
        let t = l.trim();
        if t.starts_with('[') {
            inside = is_header_of(l, group);
        } else if inside && host_of(t) == Some(host) {
            removed += 1;
            continue;
        }
        out.push_str(l);
    }
    (out, removed)
}

/// `text` with the value of variable `name` on line `line` (1-based: `NAME=value` in an INI
/// file, on a `:vars` line or a host line, or `NAME: value` in a YAML file) set to `value`,
/// quoted as the old value was (double, single or no quotes); the rest of the line (spacing, a
/// comment) stays. None when that line does not define `name`, or `value` cannot be written
/// plainly (a quote, a newline, a `#`, leading or trailing space).
pub fn set_value(text: &str, line: usize, name: &str, value: &str) -> Option<String> {
    if value.is_empty() || value.trim() != value || value.contains(['"', '\'', '\n', '#']) {
        return None;
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let l = *lines.get(line.checked_sub(1)?)?;
    // `name` as a whole word followed by `=` or `:` (spaces allowed around them).
    let at = l.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before_ok = i == 0 || l[..i].ends_with(char::is_whitespace);
        let rest = l[i + name.len()..].trim_start_matches([' ', '\t']);
        before_ok && (rest.starts_with('=') || rest.starts_with(':'))
    })?;
    let after_name = &l[at + name.len()..];
    let sep = after_name.find(['=', ':'])?;
    let value_from = at + name.len() + sep + 1;
    let rest = &l[value_from..];
    let start = value_from + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    let old = &l[start..];
    let (from, to, quote) = match old.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close = old[1..].find(q)? + 1;
            (start + 1, start + close, Some(q))
        }
        _ => {
            let end = old.find(|c: char| c.is_whitespace()).unwrap_or(old.len());
            (start, start + end, None)
        }
    };
    if quote.is_none() && from == to {
        return None;
    }
    let mut out = String::with_capacity(text.len() + value.len());
    for (i, x) in lines.iter().enumerate() {
        if i + 1 == line {
            out.push_str(&x[..from]);
            out.push_str(value);
            out.push_str(&x[to..]);
        } else {
            out.push_str(x);
        }
    }
    Some(out)
}

/// Is `line` the header `[group]` (a host section, not `:vars` or `:children`)?
fn is_header_of(line: &str, group: &str) -> bool {
    let t = line.trim();
    t.starts_with('[') && matches!(header(t), Ok((name, None)) if name == group)
}

/// The host a host line names (its first word), none for a blank line or a comment.
fn host_of(line: &str) -> Option<&str> {
    if line.starts_with('#') || line.starts_with(';') {
        return None;
    }
    line.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "# etcd\n[etcd]\n10.0.0.1\n\n# workers\n[kube_node]\n10.0.0.1 k8s_nodename='a'\n10.0.0.2   k8s_nodename='b'  # keep spacing\n\n# next section's comment\n[kube_node:vars]\nx=1\n\n[harbor]\n";

    #[test]
    fn a_host_goes_after_the_sections_last_host_and_everything_else_stays() {
        let out = add_host_line(HOSTS, "kube_node", "10.0.0.3 k8s_nodename='c'");
        assert_eq!(
            out,
            HOSTS.replace("# keep spacing\n", "# keep spacing\n10.0.0.3 k8s_nodename='c'\n")
        );
        // Not into [kube_node:vars]; an empty section gets it right after its header; no
        // trailing newline is handled.
        let out = add_host_line("[kube_node]\n\n# c\n[all:vars]\na=1", "kube_node", "h");
        assert_eq!(out, "[kube_node]\nh\n\n# c\n[all:vars]\na=1");
        assert_eq!(add_host_line("[etcd]\nx", "kube_node", "h"), "[etcd]\nx\n\n[kube_node]\nh\n");
    }

    #[test]
    fn host_lines_quote_what_needs_it_and_refuse_bad_names() {
        let v = |k: &str, x: &str| (k.to_string(), x.to_string());
        assert_eq!(host_line("10.0.0.3", &[v("k8s_nodename", "n3"), v("x", "a b")]).unwrap(), "10.0.0.3 k8s_nodename=n3 x='a b'");
        assert!(host_line("h", &[v("9x", "1")]).unwrap_err().contains("\"9x\""));
        assert!(host_line("h", &[v("x", "it's")]).is_err());
    }

    #[test]
    fn a_value_changes_where_it_is_defined_keeping_quotes_and_comments() {
        let ini = "[all:vars]\nK8S_VER=\"lab-debian\"  # the set\nX=1\n";
        assert_eq!(set_value(ini, 2, "K8S_VER", "lab-debian-next").unwrap(), ini.replace("\"lab-debian\"", "\"lab-debian-next\""));
        let yaml = "# versions\nK8S_VER: v1.35.4\nK8S_VER_X: 'a'\n";
        assert_eq!(set_value(yaml, 2, "K8S_VER", "v1.36.3").unwrap(), "# versions\nK8S_VER: v1.36.3\nK8S_VER_X: 'a'\n");
        assert_eq!(set_value("K8S_VER_X: 'a'\nK8S_VER : 'b'\n", 2, "K8S_VER", "c").unwrap(), "K8S_VER_X: 'a'\nK8S_VER : 'c'\n");
        // On a host line, among other variables.
        assert_eq!(set_value("[kube_node]\n10.0.0.1 K8S_VER=a k=b\n", 2, "K8S_VER", "z").unwrap(), "[kube_node]\n10.0.0.1 K8S_VER=z k=b\n");
        // Not on that line, another variable of a longer name, a value that cannot be written.
        assert_eq!(set_value(yaml, 1, "K8S_VER", "x"), None);
        assert_eq!(set_value("K8S_VER_X: a\n", 1, "K8S_VER", "x"), None);
        assert_eq!(set_value(yaml, 2, "K8S_VER", "a#b"), None);
        assert_eq!(set_value(yaml, 9, "K8S_VER", "x"), None);
    }

    #[test]
    fn removing_a_host_takes_only_its_lines_in_that_group() {
        let (out, n) = remove_host(HOSTS, "kube_node", "10.0.0.1");
        assert_eq!(n, 1);
        assert_eq!(out, HOSTS.replace("10.0.0.1 k8s_nodename='a'\n", ""));
        assert!(out.contains("[etcd]\n10.0.0.1\n"));
        let (same, n) = remove_host(HOSTS, "kube_node", "10.0.0.9");
        assert_eq!((same.as_str(), n), (HOSTS, 0));
        // Round trip: added then removed is the file as it was.
        let added = add_host_line(HOSTS, "kube_node", "10.0.0.3");
        assert_eq!(remove_host(&added, "kube_node", "10.0.0.3").0, HOSTS);
    }
}
