//! Counters while a load runs, the live progress line, and the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) requests: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) acked_events: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) failed_requests: AtomicU64,
    pub(crate) failed_connections: AtomicU64,
}

/// The final summary (`--json` prints this).
#[derive(Debug, Serialize)]
pub struct Report {
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) events_sent: u64,
    pub(crate) events_acked: u64,
    pub(crate) bytes_sent: u64,
    pub failed_requests: u64,
    pub failed_connections: u64,
    pub(crate) events_per_second: f64,
    pub(crate) mb_per_second: f64,
    pub(crate) ack_latency_ms: Latency,
    /// Damaged capture files and where replay stopped reading each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) capture_damage: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Report {
    pub(crate) fn new(t: &Totals, elapsed: Duration, h: &Histogram<u64>) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        let events = t.events.load(Ordering::Relaxed);
        let bytes = t.bytes.load(Ordering::Relaxed);
        Self {
            seconds: secs,
            requests: t.requests.load(Ordering::Relaxed),
            events_sent: events,
            events_acked: t.acked_events.load(Ordering::Relaxed),
            bytes_sent: bytes,
            failed_requests: t.failed_requests.load(Ordering::Relaxed),
            failed_connections: t.failed_connections.load(Ordering::Relaxed),
            events_per_second: events as f64 / secs,
            mb_per_second: bytes as f64 / secs / 1e6,
            ack_latency_ms: Latency {
                p50: ms(h.value_at_quantile(0.5)),
                p90: ms(h.value_at_quantile(0.9)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            },
            capture_damage: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "{:.1} s: {} requests, {} events sent, {} acked, {} bytes; {:.0} events/s, {:.1} MB/s; \
             failed: {} requests, {} connections; ack latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            self.seconds,
            self.requests,
            self.events_sent,
            self.events_acked,
            self.bytes_sent,
            self.events_per_second,
            self.mb_per_second,
            self.failed_requests,
            self.failed_connections,
            self.ack_latency_ms.p50,
            self.ack_latency_ms.p90,
            self.ack_latency_ms.p99,
            self.ack_latency_ms.max
        );
        for d in &self.capture_damage {
            out.push_str(&format!("\ndamaged capture: {d}"));
        }
        out
    }
}

/// Prints a progress line to stderr every second (not with `--json`).
pub(crate) fn spawn_progress(
    t: Arc<Totals>,
    started: Instant,
    quiet: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.tick().await;
        let (mut last_events, mut last_bytes) = (0, 0);
        loop {
            every.tick().await;
            let (e, b) = (
                t.events.load(Ordering::Relaxed),
                t.bytes.load(Ordering::Relaxed),
            );
            eprintln!(
                "[{:>4.0}s] {:>10} events/s {:>8.1} MB/s  acked {}  pending acks {}  failed {}",
                started.elapsed().as_secs_f64(),
                e - last_events,
                (b - last_bytes) as f64 / 1e6,
                t.acked_events.load(Ordering::Relaxed),
                t.pending.load(Ordering::Relaxed),
                t.failed_requests.load(Ordering::Relaxed)
            );
            (last_events, last_bytes) = (e, b);
        }
    })
}
