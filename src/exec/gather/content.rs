//! Fact kind: the current content of a text file that differs from the wanted one, sent only
//! in plan mode so `--plan` can show a diff (never for secrets or large files: those are not
//! `diffable`). The content travels base64-encoded on one `@@c <task>` line.

/// The script line asking for task `i`'s file at `path` when its sha256 is not `want_sha`.
pub(super) fn line(i: usize, quoted_path: &str, want_sha: &str) -> String {
    format!("ezk_c {i} {quoted_path} {want_sha}\n")
}

/// The content of a `@@c` line.
pub(super) fn parse(rest: &str) -> Option<Vec<u8>> {
    decode_b64(rest.trim())
}

/// Minimal standard base64 decoder (the gather sends file contents with `base64 -w0`).
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}
