//! Ansible host ranges in an inventory host name: `node[01:10]`, `10.0.0.[11:13]`,
//! `rack[a:c]-n[1:2]`, with an optional stride `[1:9:2]`. A numeric range whose start has a
//! leading zero keeps that width (`[08:10]` gives 08, 09, 10, and then both ends must be
//! written with the same width); letter ranges go between two single letters. Every bracket
//! in a host name is a range; a range that gives no host, or more than `MAX_HOSTS`, is an error.

/// The fix offered with a bad range.
pub const FIX: &str =
    "write a range as name[01:10] or 10.0.0.[11:13] (start <= end, same width), or list each host by itself";

/// No inventory line may expand to more hosts than this (a typo such as `[1:100000]`).
pub const MAX_HOSTS: usize = 10_000;

/// Expand every `[start:end(:stride)]` in `pattern`; a name without brackets is itself.
/// The error text says what is wrong with the range (the caller adds the file and line).
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("{pattern:?} has a ] without a ["));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("{pattern:?} has a [ without a closing ]"))?;
    let (head, body, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let items = one_range(body).map_err(|e| format!("host range [{body}] in {pattern:?}: {e}"))?;
    let rest = expand(tail)?;
    let total = items.len().saturating_mul(rest.len());
    if total > MAX_HOSTS {
        return Err(format!("{pattern:?} expands to {total} hosts, more than the {MAX_HOSTS} allowed"));
    }
    let mut out = Vec::with_capacity(total);
    for i in &items {
        for r in &rest {
            out.push(format!("{head}{i}{r}"));
        }
    }
    Ok(out)
}

/// The names one `start:end(:stride)` stands for.
fn one_range(body: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = body.split(':').collect();
    let (start, end, stride) = match parts.as_slice() {
        [s, e] => (*s, *e, 1usize),
        [s, e, st] => {
            let st = st
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("stride {st:?} is not a positive number"))?;
            (*s, *e, st)
        }
        _ => return Err("write a range as [start:end] or [start:end:stride]".into()),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let letter = |s: &str| s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic());
    let items: Vec<String> = if numeric(start) && numeric(end) {
        let width = if start.len() > 1 && start.starts_with('0') {
            if start.len() != end.len() {
                return Err(format!(
                    "{start:?} has a leading zero, so {end:?} must have the same width ({})",
                    start.len()
                ));
            }
            start.len()
        } else {
            0
        };
        let (s, e) = (number(start)?, number(end)?);
        check_order(s, e, start, end)?;
        (s..=e).step_by(stride).map(|n| format!("{n:0width$}")).collect()
    } else if letter(start) && letter(end) {
        let (s, e) = (start.as_bytes()[0], end.as_bytes()[0]);
        if s.is_ascii_lowercase() != e.is_ascii_lowercase() {
            return Err(format!("{start:?} and {end:?} differ in case"));
        }
        check_order(u64::from(s), u64::from(e), start, end)?;
        (s..=e).step_by(stride).map(|c| char::from(c).to_string()).collect()
    } else {
        return Err(format!(
            "{start:?} to {end:?} is neither two numbers nor two single letters"
        ));
    };
    Ok(items)
}

fn number(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("{s:?} is too large"))
}

fn check_order(s: u64, e: u64, start: &str, end: &str) -> Result<(), String> {
    if s > e {
        return Err(format!("it starts at {start:?}, after its end {end:?}"));
    }
    if e - s >= MAX_HOSTS as u64 {
        return Err(format!("it spans more than the {MAX_HOSTS} hosts allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn ansible_range_forms() {
        assert_eq!(expand("node1").unwrap(), ["node1"]);
        assert_eq!(expand("node[1:3]").unwrap(), ["node1", "node2", "node3"]);
        assert_eq!(expand("node[08:10].lan").unwrap(), ["node08.lan", "node09.lan", "node10.lan"]);
        assert_eq!(expand("10.0.0.[11:13]").unwrap(), ["10.0.0.11", "10.0.0.12", "10.0.0.13"]);
        assert_eq!(expand("w[1:9:4]").unwrap(), ["w1", "w5", "w9"]);
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("r[a:b]n[1:2]").unwrap(), ["ran1", "ran2", "rbn1", "rbn2"]);
        assert_eq!(expand("n[1:3]:2222").unwrap(), ["n1:2222", "n2:2222", "n3:2222"]);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (p, want) in [
            ("n[3:1]", "after its end"),
            ("n[01:100]", "same width"),
            ("n[1:x]", "neither two numbers"),
            ("n[a:C]", "differ in case"),
            ("n[1:3:0]", "stride"),
            ("n[1]", "[start:end]"),
            ("n[1:3", "without a closing ]"),
            ("n1:3]", "without a ["),
            ("n[0:99999]", "more than the 10000"),
            ("n[0:999]m[0:99]", "more than the 10000"),
        ] {
            let e = expand(p).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
    }
}
