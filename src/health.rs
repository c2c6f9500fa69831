//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! Ready means: the forward listener is bound, the WAL has not failed and its
//! directory takes new files, and backpressure has not lasted longer than
//! `metrics.backpressure_grace`. A load balancer then sends clients elsewhere
//! while this node catches up, instead of letting their buffers fill here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Tracks whether the WAL is waiting for the roller (weir stops reading
/// sockets then). Entered and left by the WAL writer only.
pub struct Backpressure {
    /// Wall clock (ms) backpressure began; 0 when there is none.
    since_ms: AtomicI64,
    metrics: Metrics,
}

impl Backpressure {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            since_ms: AtomicI64::new(0),
            metrics,
        })
    }

    pub fn enter(&self) {
        if self.since_ms.load(Ordering::Relaxed) == 0 {
            self.since_ms.store(now_ms().max(1), Ordering::Relaxed);
            self.metrics.backpressure_active.set(1);
            tracing::warn!("backpressure: the roller is behind; reading from clients pauses");
        }
    }

    pub fn leave(&self) {
        let since = self.since_ms.swap(0, Ordering::Relaxed);
        if since != 0 {
            let secs = (now_ms() - since).max(0) as f64 / 1000.0;
            self.metrics.backpressure_active.set(0);
            self.metrics.backpressure_seconds.inc_by(secs);
            tracing::info!(seconds = secs, "backpressure over");
        }
    }

    /// How long the current backpressure has lasted.
    pub fn duration(&self) -> Option<Duration> {
        match self.since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis((now_ms() - since).max(0) as u64)),
        }
    }
}

/// What `/readyz` checks.
pub struct Health {
    pub listener_bound: AtomicBool,
    pub wal_healthy: watch::Receiver<bool>,
    pub backpressure: Arc<Backpressure>,
    pub wal_dir: PathBuf,
    pub backpressure_grace: Duration,
    pub backlog: Arc<crate::outbox::Backlog>,
}

impl Health {
    /// `Ok` when ready, otherwise every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if !self.listener_bound.load(Ordering::Relaxed) {
            why.push("forward listener not bound yet".to_string());
        }
        if !*self.wal_healthy.borrow() {
            why.push("write-ahead log failed; see the log".to_string());
        }
        if let Err(e) = probe_writable(&self.wal_dir) {
            why.push(format!(
                "WAL directory {} not writable: {e}",
                self.wal_dir.display()
            ));
        }
        if self.backlog.is_over() {
            why.push(format!(
                "outbox backlog {} bytes over outbox.max_backlog_bytes ({})",
                self.backlog.bytes(),
                self.backlog.limit
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

/// Creates and removes a small file, as a new WAL segment would need.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let p = dir.join(".ready-probe");
    std::fs::write(&p, b"ok")?;
    std::fs::remove_file(&p)
}
