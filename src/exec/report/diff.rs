//! A small unified line diff for `--plan` (old file on the host vs the rendered one). Longest
//! common subsequence on lines; files are config-sized, and both sides are capped before this
//! is called, so the quadratic table stays small.

/// Unified diff of `old` → `new` with `context` lines around each change; empty when equal.
pub fn unified(old: &str, new: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() * b.len() > 4_000_000 {
        return vec![format!("@@ too large to diff ({} → {} lines) @@", a.len(), b.len())];
    }
    // lcs[i][j] = LCS length of a[i..], b[j..]
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // Edit script: (tag, old index, new index)
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before insertions, as diff(1) prints them.
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    let mut out = Vec::new();
    let mut k = 0;
    while k < ops.len() {
        if ops[k].0 == ' ' {
            k += 1;
            continue;
        }
        // A hunk: from `context` before this change to `context` after the last change that
        // is within 2*context of the next one.
        let start = k.saturating_sub(context);
        let mut end = k;
        let mut last_change = k;
        while end < ops.len() {
            if ops[end].0 != ' ' {
                last_change = end;
            } else if end - last_change > 2 * context {
                break;
            }
            end += 1;
        }
        let end = (last_change + context + 1).min(ops.len());
        let h = &ops[start..end];
        let old_n = h.iter().filter(|o| o.0 != '+').count();
        let new_n = h.iter().filter(|o| o.0 != '-').count();
        let old_start = h[0].1 + usize::from(old_n > 0);
        let new_start = h[0].2 + usize::from(new_n > 0);
        out.push(format!("@@ -{old_start},{old_n} +{new_start},{new_n} @@"));
        for &(tag, oi, nj) in h {
            let line = if tag == '+' { b[nj] } else { a[oi] };
            out.push(format!("{tag}{line}"));
        }
        k = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn equal_texts_have_no_diff() {
        assert!(unified("a\nb\n", "a\nb\n", 3).is_empty());
    }

    #[test]
    fn one_changed_line_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified(old, new, 2),
            vec!["@@ -3,5 +3,5 @@", " 3", " 4", "-5", "+five", " 6", " 7"]
        );
    }

    #[test]
    fn distant_changes_make_two_hunks() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "two\n").replace("l19\n", "nineteen\n");
        let d = unified(&old, &new, 1);
        assert_eq!(d.iter().filter(|l| l.starts_with("@@")).count(), 2, "{d:?}");
        assert!(d.contains(&"-l19".to_string()) && d.contains(&"+nineteen".to_string()));
    }

    #[test]
    fn added_lines_at_end() {
        assert_eq!(unified("a\n", "a\nb\n", 3), vec!["@@ -1,1 +1,2 @@", " a", "+b"]);
    }
}
