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

/// Why a stage cannot do its work right now (a full disk, a failing
/// file), for `/readyz`; empty while it works. Set and cleared by the stage.
#[derive(Default)]
pub(crate) struct StageStatus {
    failing: std::sync::Mutex<Option<String>>,
}

impl StageStatus {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn set(&self, why: String) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    pub(crate) fn clear(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Sinks whose commits fail, since when and why: `/readyz` reports them
/// after a grace but stays ready (the outbox buffers; a whole tier turning
/// unready because a shared catalog is down would only move the outage to
/// the clients).
#[derive(Default)]
pub(crate) struct SinkStatus {
    failing: std::sync::Mutex<std::collections::BTreeMap<String, (std::time::Instant, String)>>,
}

impl SinkStatus {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (std::time::Instant, String)>>
    {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `sink`'s commits fail (keeps the first failure's time).
    pub(crate) fn failing(&self, sink: &str, why: String) {
        let mut m = self.lock();
        let since = m
            .get(sink)
            .map_or_else(std::time::Instant::now, |(t, _)| *t);
        m.insert(sink.to_string(), (since, why));
    }

    /// `sink`'s commits work again.
    pub(crate) fn ok(&self, sink: &str) {
        self.lock().remove(sink);
    }

    /// Sinks failing for at least `grace`: "sink X: commits failing for N s: why".
    pub(crate) fn report(&self, grace: Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, (t, _))| t.elapsed() >= grace)
            .map(|(s, (t, why))| {
                format!(
                    "sink {s}: commits failing for {} s (files wait in the outbox): {why}",
                    t.elapsed().as_secs()
                )
            })
            .collect()
    }
}

/// The inputs' listeners by name ("forward", "forward unix", "http") and
/// whether each accepts yet.
#[derive(Default)]
pub(crate) struct Listeners(std::sync::Mutex<Vec<(&'static str, bool)>>);

impl Listeners {
    /// A listener that will accept once the WAL is recovered.
    pub(crate) fn expect(&self, name: &'static str) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !l.iter().any(|(n, _)| *n == name) {
            l.push((name, false));
        }
    }

    /// `name` accepts now.
    pub(crate) fn accepting(&self, name: &'static str) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match l.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = true,
            None => l.push((name, true)),
        }
    }

    /// The listeners not accepting yet (every one, when none is known).
    fn waiting(&self) -> Vec<&'static str> {
        let l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if l.is_empty() {
            return vec!["forward"];
        }
        l.iter().filter(|(_, up)| !up).map(|(n, _)| *n).collect()
    }
}

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
