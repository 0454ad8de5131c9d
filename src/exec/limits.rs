//! Every concurrency limit of a run in one struct, so the caps are visible together:
//! how many hosts are worked on at once (`--forks`), and how many SSH handshakes run at once
//! (each costs ~100 ms of CPU; a burst of hundreds would starve the deploy machine and trip a
//! bastion's MaxStartups). The per-host channel cap (below sshd's MaxSessions) lives with the
//! SSH transport, which owns the channels: `ssh::MAX_CHANNELS_PER_HOST`.

use tokio::sync::Semaphore;

/// Default `--forks`: enough for hundreds of hosts at once; each costs one idle ssh master.
pub const DEFAULT_FORKS: usize = 256;
/// Handshakes at once.
pub const DEFAULT_HANDSHAKES: usize = 32;

/// The semaphores of one run.
#[derive(Debug)]
pub struct Limits {
    pub hosts: Semaphore,
    pub handshakes: Semaphore,
}

impl Limits {
    /// Limits for `forks` hosts at once.
    pub fn new(forks: usize) -> Self {
        let forks = forks.max(1);
        Limits { hosts: Semaphore::new(forks), handshakes: Semaphore::new(forks.min(DEFAULT_HANDSHAKES)) }
    }
}
