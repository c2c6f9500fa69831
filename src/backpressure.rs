//! Backpressure: whether the WAL is holding connections back (its backlog
//! is over `wal.max_backlog_bytes`), since when, and its episodes, logged
//! at most once per [`LOG_EVERY`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Tracks whether the WAL is waiting for the roller (weir stops reading
/// sockets then). Entered and left by the WAL writer only.
///
/// Under a load near the roller's rate backpressure can switch on and off
/// many times a second; the metrics count every episode, the log says so at
/// most once per [`LOG_EVERY`] with how many episodes it left out.
pub struct Backpressure {
    /// Wall clock (ms) backpressure began; 0 when there is none.
    since_ms: AtomicI64,
    metrics: Metrics,
    log: std::sync::Mutex<EpisodeLog>,
}

/// Least time between two "backpressure" log lines.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct EpisodeLog {
    last_logged: Option<std::time::Instant>,
    /// Episodes since the last line.
    unlogged: u64,
    /// Whether the current episode's start was logged (then so is its end).
    current_logged: bool,
    /// Lines written, for tests.
    lines: u64,
}

impl Backpressure {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            since_ms: AtomicI64::new(0),
            metrics,
            log: std::sync::Mutex::new(EpisodeLog::default()),
        })
    }

    pub(crate) fn enter(&self) {
        if self.since_ms.load(Ordering::Relaxed) != 0 {
            return;
        }
        self.since_ms.store(now_ms().max(1), Ordering::Relaxed);
        self.metrics.wal.backpressure_began();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let due = log.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        log.current_logged = due;
        if due {
            let earlier = std::mem::take(&mut log.unlogged);
            log.last_logged = Some(std::time::Instant::now());
            log.lines += 1;
            tracing::warn!(
                earlier_episodes = earlier,
                "backpressure: the roller is behind; reading from clients pauses"
            );
        } else {
            log.unlogged += 1;
        }
    }

    pub(crate) fn leave(&self) {
        let since = self.since_ms.swap(0, Ordering::Relaxed);
        if since != 0 {
            let secs = (now_ms() - since).max(0) as f64 / 1000.0;
            self.metrics.wal.backpressure_ended(secs);
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if log.current_logged {
                tracing::info!(seconds = secs, "backpressure over");
            } else {
                tracing::debug!(seconds = secs, "backpressure over");
            }
        }
    }

    /// How long the current backpressure has lasted.
    pub(crate) fn duration(&self) -> Option<Duration> {
        match self.since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis((now_ms() - since).max(0) as u64)),
        }
    }

    /// "backpressure" lines logged so far.
    #[cfg(test)]
    pub(crate) fn log_lines(&self) -> u64 {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).lines
    }
}
