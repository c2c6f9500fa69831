//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! Ready means: the forward listener is bound, the WAL has not failed and its
//! directory takes new files, and backpressure has not lasted longer than
//! `metrics.backpressure_grace`. A load balancer then sends clients elsewhere
//! while this node catches up, instead of letting their buffers fill here.

use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::backpressure::Backpressure;
use crate::status::{Listeners, SinkStatus, StageStatus};

/// What `/readyz` checks.
pub(crate) struct Health {
    pub(crate) listeners: Listeners,
    pub(crate) wal: watch::Receiver<crate::wal::WalState>,
    /// Why the WAL folder does not take new files, from the last probe
    /// ([`Health::probe_wal_dir`], run off the async runtime).
    pub(crate) wal_dir_problem: std::sync::Mutex<Option<String>>,
    pub backpressure: Arc<Backpressure>,
    pub(crate) wal_dir: PathBuf,
    pub(crate) backpressure_grace: Duration,
    pub(crate) backlog: Arc<crate::outbox::Backlog>,
    /// The roller's failure, while it retries.
    pub(crate) roller: Arc<StageStatus>,
    /// Sinks whose commits fail: reported, not unready.
    pub(crate) sinks: Arc<SinkStatus>,
}

impl Health {
    /// `Ok` when ready, otherwise every reason it is not.
    pub(crate) fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        for name in self.listeners.waiting() {
            why.push(format!("{name} listener not accepting yet"));
        }
        match &*self.wal.borrow() {
            crate::wal::WalState::Healthy => {}
            crate::wal::WalState::Stalled(w) => {
                why.push(format!("{w} (retrying; nothing is acked)"))
            }
            crate::wal::WalState::Failed(w) => why.push(format!("{w}; restart weir")),
        }
        if let Some(p) = self
            .wal_dir_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            why.push(p);
        }
        if let Some(failing) = self.roller.failing() {
            why.push(failing);
        }
        if self.backlog.is_over() {
            why.push(format!(
                "outbox backlog {} bytes over outbox.max_backlog_bytes ({})",
                self.backlog.bytes(),
                self.backlog.limit()
            ));
        }
        if let Some(d) = self.backpressure.duration() {
            if d >= self.backpressure_grace {
                why.push(format!("in backpressure for {}s", d.as_secs()));
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }
}

impl Health {
    /// What `/readyz` reports without turning unready: sinks failing for
    /// longer than `metrics.backpressure_grace`.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.sinks.report(self.backpressure_grace)
    }

    /// Liveness: fails only in a state a restart fixes (the WAL failed a
    /// sync), so an orchestrator restarts the node and recovery runs.
    pub(crate) fn liveness(&self) -> Result<(), String> {
        match &*self.wal.borrow() {
            crate::wal::WalState::Failed(w) => Err(w.clone()),
            _ => Ok(()),
        }
    }

    /// Checks the WAL folder takes new files (blocking: run it off the
    /// async runtime) and records the answer for `/readyz`.
    pub(crate) fn probe_wal_dir(&self) {
        let problem = probe_writable(&self.wal_dir)
            .err()
            .map(|e| format!("WAL directory {} not writable: {e}", self.wal_dir.display()));
        *self
            .wal_dir_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// Creates and removes a small file, as a new WAL segment would need.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let p = dir.join(".ready-probe");
    std::fs::write(&p, b"ok")?;
    std::fs::remove_file(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flapping_backpressure_logs_once_and_counts_every_episode() {
        let m = crate::metrics::Metrics::new();
        let bp = Backpressure::new(m.clone());
        for _ in 0..10_000 {
            bp.enter();
            bp.leave();
        }
        assert_eq!(bp.log_lines(), 1);
        assert_eq!(m.value("weir_backpressure_episodes_total", &[]), 10_000.0);
        assert_eq!(m.value("weir_backpressure_active", &[]), 0.0);
    }
}
