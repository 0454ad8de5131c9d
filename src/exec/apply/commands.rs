//! Emitters for commands: a command task (its `creates`/`unless` guard re-checked on the host,
//! since an earlier task of this run may have satisfied it) and a wait_for (poll the target
//! until it answers or the timeout passes, then fail with the `diagnose` output).

use super::{Ctx, Steps, mark_changed};
use crate::exec::gather::probes::{guard_cond, probe_cmd};
use crate::exec::transport::sh_quote;
use crate::plan::action::{Task, WaitTarget};

pub(super) fn command(cx: &Ctx, i: usize, task: &Task, cmd: &str, creates: Option<&str>, unless: Option<&str>) -> Steps {
    let run = format!("ezk_run {i} sh -c {} || ezk_fail {i} \"command exited $?\"\n", sh_quote(cmd));
    match guard_cond(creates, unless) {
        None => Steps::changed(run),
        Some(cond) => Steps::own(format!(
            "if {cond}; then echo '@@r {i} skipped'; else\n{run}{}fi\n",
            mark_changed(i, task, cx.flags)
        )),
    }
}

pub(super) fn wait_for(i: usize, target: &WaitTarget, timeout_secs: u64, diagnose: Option<&str>) -> Steps {
    let diag = diagnose
        .map(|c| format!("sh -c {} </dev/null >\"$W/o\" 2>&1; ", sh_quote(c)))
        .unwrap_or_default();
    // Whole seconds: `-gt` makes the wait at least the timeout, never a second short.
    // Polls every 0.1 s for the first second, then 0.3 s, then 1 s: most waits end
    // within a second or two (a VIP, a started service), and a whole-second poll
    // would add half a second to each on average.
    Steps {
        body: format!(
            "e=$(( $(date +%s) + {timeout_secs} )); n=0\nuntil {}; do if [ \"$(date +%s)\" -gt \"$e\" ]; then {diag}ezk_fail {i} 'timed out after {timeout_secs}s waiting'; fi; ezk_nap $n; n=$((n+1)); done\n",
            probe_cmd(target)
        ),
        outcome: super::Outcome::Ok,
    }
}
