//! Metrics of the write-ahead log and its backpressure.

use prometheus::{Counter, Histogram, IntCounter, IntCounterVec, IntGauge};

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the write-ahead log and its backpressure.
#[derive(Clone)]
pub(crate) struct WalMetrics {
    bytes: IntCounter,
    records: IntCounter,
    fsync_seconds: Histogram,
    group_size: Histogram,
    segments: IntGauge,
    errors: IntCounter,
    torn_tails: IntCounter,
    corrupt_records: IntCounter,
    backpressure_active: IntGauge,
    backpressure_seconds: Counter,
    backpressure_episodes: IntCounter,
    backlog_bytes: IntGauge,
    disk_free_bytes: IntGauge,
    disk_reserve_waits: IntCounter,
    upkeep_errors: IntCounterVec,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl WalMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            bytes: counter(r, "weir_wal_written_bytes_total", "Bytes appended to the WAL."),
            records: counter(r, "weir_wal_records_total", "Records (requests) appended to the WAL."),
            fsync_seconds: histogram(r, "weir_wal_fsync_seconds", "Duration of one WAL group sync.", latency_buckets()),
            group_size: histogram(r, "weir_wal_group_requests", "Requests made durable by one group commit.", vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            segments: gauge(r, "weir_wal_segments", "WAL segment files on disk."),
            errors: counter(r, "weir_wal_errors_total", "WAL write or sync failures (the WAL stops acking)."),
            torn_tails: counter(r, "weir_wal_torn_tails_total", "Torn WAL tails truncated at recovery."),
            corrupt_records: counter(r, "weir_wal_corrupt_records_total", "WAL records lost to damage on disk (checksum or framing), counted when the roller reads past them; reading goes on at the next intact record."),
            backpressure_active: gauge(r, "weir_backpressure_active", "1 while the roller cannot keep up and weir stops reading sockets."),
            backpressure_seconds: register(r, "counter", "weir_backpressure_seconds_total", Counter::new("weir_backpressure_seconds_total", "Time spent in backpressure.")),
            backpressure_episodes: counter(r, "weir_backpressure_episodes_total", "Times backpressure began."),
            backlog_bytes: gauge(r, "weir_wal_backlog_bytes", "WAL bytes the roller has not read yet (limit: wal.max_backlog_bytes; past it appends wait)."),
            disk_free_bytes: gauge(r, "weir_wal_disk_free_bytes", "Free bytes on the WAL's file system, as last read (appends wait below wal.disk_reserve)."),
            disk_reserve_waits: counter(r, "weir_wal_disk_reserve_waits_total", "Times appends waited because free space fell under wal.disk_reserve."),
            upkeep_errors: counter_vec(r, "weir_wal_upkeep_errors_total", "WAL upkeep that failed, by operation: recover (the WAL then refuses writes), snapshot (the dedupe snapshot; released segments are kept), delete_segment (retried at the next release).", &["op"]),
            suppressed: suppressed.clone(),
        }
    }
}

/// The WAL's gauges, reported together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalGauges {
    pub(crate) segments: usize,
    /// Bytes the roller has not read yet.
    pub(crate) backlog_bytes: u64,
    /// Free bytes on the WAL's file system, as last read.
    pub(crate) disk_free_bytes: u64,
}

impl WalMetrics {
    /// The WAL's gauges.
    pub(crate) fn report(&self, g: WalGauges) {
        self.segments.set(g.segments as i64);
        self.backlog_bytes.set(g.backlog_bytes as i64);
        self.disk_free_bytes.set(g.disk_free_bytes as i64);
    }

    /// A group of `records` requests (`bytes` bytes) is durable.
    pub(crate) fn group_written(&self, bytes: u64, records: usize) {
        self.bytes.inc_by(bytes);
        self.records.inc_by(records as u64);
        self.group_size.observe(records as f64);
    }

    /// One group sync took `took`.
    pub(crate) fn synced(&self, took: std::time::Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    /// Backpressure began (the gauge and the episode; the state logs).
    pub(crate) fn backpressure_began(&self) {
        self.backpressure_active.set(1);
        self.backpressure_episodes.inc();
    }

    /// Backpressure ended after `seconds`.
    pub(crate) fn backpressure_ended(&self, seconds: f64) {
        self.backpressure_active.set(0);
        self.backpressure_seconds.inc_by(seconds);
    }

    /// A group could not be written (a full disk); retried in `retry_in`,
    /// nothing is acked meanwhile.
    pub(crate) fn write_failed(
        &self,
        error: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.errors.inc();
        if let Some(suppressed) = self.suppressed.allow("wal_write") {
            tracing::error!(error = %error, retry_in_ms = retry_in.as_millis() as u64, suppressed,
                "WAL write failed; nothing is acked until it succeeds");
        }
    }

    /// Free space fell under `wal.disk_reserve`: appends wait (backpressure)
    /// until finished files leave and released segments give space back.
    pub(crate) fn disk_reserve_reached(&self, free: u64, reserve: u64) {
        self.disk_reserve_waits.inc();
        if let Some(suppressed) = self.suppressed.allow("wal_disk_reserve") {
            tracing::warn!(free_bytes = free, reserve, suppressed,
                "WAL disk under its reserve (wal.disk_reserve): appends wait until finished files leave and segments are released");
        }
    }

    /// A sync failed: the WAL stops acking until weir restarts.
    pub(crate) fn sync_failed(&self, error: &dyn std::fmt::Display) {
        self.errors.inc();
        tracing::error!(error = %error, "WAL sync failed; no further requests are acked until weir restarts");
    }

    /// A torn tail (a write a crash interrupted, never acked) was cut at
    /// recovery.
    pub(crate) fn torn_tail(
        &self,
        segment: &std::path::Path,
        at: u64,
        lost_bytes: u64,
        reason: &str,
    ) {
        self.torn_tails.inc();
        tracing::warn!(segment = %segment.display(), at, lost_bytes, reason,
            "truncating torn WAL tail (a write the crash interrupted; it was never acked)");
    }

    /// `records` WAL records are damaged and skipped; `what` says where.
    pub(crate) fn corrupt(&self, records: u64, what: &dyn std::fmt::Display) {
        self.corrupt_records.inc_by(records);
        tracing::error!(records, "{what}");
    }

    /// WAL upkeep failed: `op` is recover, snapshot or delete_segment.
    /// Logged a bounded number of times a minute (the count stays exact).
    pub(crate) fn upkeep_failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        self.upkeep_errors.with_label_values(&[op]).inc();
        let Some(suppressed) = self.suppressed.allow("wal_upkeep") else {
            return;
        };
        match op {
            "recover" => {
                tracing::error!(op, error = %error, suppressed, "WAL recovery failed; refusing all writes")
            }
            "snapshot" => {
                tracing::warn!(op, error = %error, suppressed, "cannot save the dedupe snapshot; keeping released WAL segments (retried each second)")
            }
            _ => tracing::warn!(op, error = %error, suppressed, "WAL upkeep failed; retried later"),
        }
    }

    /// Every upkeep series exists from the start, at zero.
    pub(super) fn zeros(&self) {
        for op in ["recover", "snapshot", "delete_segment"] {
            self.upkeep_errors.with_label_values(&[op]);
        }
    }
}
