//! Thread priorities: acks first, encoding behind them.
//!
//! Clients wait on the forward and WAL threads; nobody waits on the roller,
//! which reads the WAL behind them. On a busy machine the roller's thread
//! runs at a lower priority (nice +10), so a burst is acked at the WAL's
//! speed and rolled when the CPU is free. It cannot starve: once the WAL
//! backlog reaches `wal.max_backlog_bytes`, acks wait for the roller.

/// How much lower than the process the roller runs (Linux nice steps).
const ROLLER_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's CPU priority; a failure is only logged.
pub(crate) fn run_behind_acks() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers;
        // on Linux PRIO_PROCESS with a thread id changes only that thread.
        let r = unsafe {
            let tid = libc::gettid();
            let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            libc::setpriority(
                libc::PRIO_PROCESS,
                tid as libc::id_t,
                (current + ROLLER_NICENESS).min(19),
            )
        };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the roller's priority");
        }
    }
}
