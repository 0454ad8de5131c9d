//! Fact kind: one-shot probes. A command task's guard (`creates` exists, or `unless` exits 0:
//! already done) and a wait_for's target (answering now?), each a `@@g`/`@@w <task> 0|1` line.

use crate::exec::transport::sh_quote;
use crate::plan::action::WaitTarget;

/// The probe command for a wait_for target, shared by gather (one shot) and apply (loop).
/// A TCP probe gives up after 1 s: an address nobody holds yet (a VIP before keepalived takes
/// it) hangs a connect for ~3 s of ARP retries, which the gather paid in full on a first run
/// and the wait loop paid again right when the address appeared; a live LAN peer answers in
/// milliseconds, and the loop simply probes again. (0.3 s was tried for the gather: on a
/// loaded machine bash alone can take that long to start, and a missed probe costs a round
/// trip.) The probe's bash reads no rc file (`--noprofile --norc`): Debian's bash sources
/// `~/.bashrc` when it finds itself under sshd, and a slow one there (root's `pyenv init`
/// waiting on its rehash lock, met on a test machine) ate the whole second, so no probe could
/// ever succeed and the wait timed out against a port that answered.
pub fn probe_cmd(target: &WaitTarget) -> String {
    match target {
        WaitTarget::Tcp { host, port } => format!(
            "timeout 1 bash --noprofile --norc -c {} </dev/null >/dev/null 2>&1",
            sh_quote(&format!("</dev/tcp/{host}/{port}"))
        ),
        WaitTarget::Command { cmd } => format!("sh -c {} >/dev/null 2>&1 </dev/null", sh_quote(cmd)),
    }
}

/// The shell condition of a command task's guard: true when it is already done. None when the
/// task has no guard (it always runs). Apply re-checks the same condition.
///
/// An `unless` command runs in a subshell of the script (`eval` of the quoted text), not in a
/// new `sh -c`: the fork stays, the exec of a shell goes, which was a quarter of a no-op
/// gather's host CPU in prepare (5 guards). It sees what `sh -c` would: no positional
/// parameters and neither `-e` nor `-u` (the apply script sets `-u`); a syntax error in it
/// fails the guard alone, as before.
pub fn guard_cond(creates: Option<&str>, unless: Option<&str>) -> Option<String> {
    let mut conds = Vec::new();
    if let Some(c) = creates {
        conds.push(format!("[ -e {} ]", sh_quote(c)));
    }
    if let Some(u) = unless {
        conds.push(format!("( set +eu --; eval {} ) >/dev/null 2>&1 </dev/null", sh_quote(u)));
    }
    (!conds.is_empty()).then(|| conds.join(" || "))
}

/// The script line reporting whether task `i`'s guard is met.
pub(crate) fn guard_line(i: usize, cond: &str) -> String {
    format!("if {cond}; then echo '@@g {i} 1'; else echo '@@g {i} 0'; fi\n")
}

/// The script line reporting whether task `i`'s wait target answers now.
pub(super) fn wait_line(i: usize, target: &WaitTarget) -> String {
    format!("if {}; then echo '@@w {i} 1'; else echo '@@w {i} 0'; fi\n", probe_cmd(target))
}
