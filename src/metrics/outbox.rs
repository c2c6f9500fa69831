//! Metrics of the outbox and the sinks: delivery, retries, retention, previews, redeliver.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::registry::*;
use crate::logging::Suppressed;
use crate::sink::error::SinkError;

/// What waits for one sink: files, their bytes, and how long the oldest
/// has waited.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) oldest_age_secs: i64,
}

/// What retention keeps: files, bytes, and the start of the oldest period
/// they hold (0 when none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retained {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    pub(crate) oldest_period: i64,
}

/// The outbox's levels, reported together by delivery (their one owner).
pub(crate) struct OutboxGauges<'a> {
    pub(crate) waiting: &'a std::collections::BTreeMap<String, Waiting>,
    /// Bytes of outbox files not yet taken by every sink.
    pub(crate) backlog_bytes: u64,
    /// `None` while retention is off.
    pub(crate) retained: Option<Retained>,
}

/// Metrics of the outbox and the sinks: delivery, retries, retention, previews, redeliver.
#[derive(Clone)]
pub(crate) struct OutboxMetrics {
    files: IntGaugeVec,
    bytes: IntGaugeVec,
    sink_uploads: IntCounterVec,
    sink_upload_seconds: HistogramVec,
    sink_retries: IntCounterVec,
    sink_dead_lettered: IntCounterVec,
    sink_auth_failures: IntCounterVec,
    oldest_age_seconds: IntGaugeVec,
    backlog_bytes: IntGauge,
    retained_bytes: IntGauge,
    retained_files: IntGauge,
    retained_oldest_period: IntGauge,
    retained_removed: IntCounter,
    redeliver_files: IntCounterVec,
    fresh_previews_removed: IntCounterVec,
    fresh_sweep_errors: IntCounterVec,
    blocked: IntGauge,
    sink_up: IntGaugeVec,
    errors: IntCounterVec,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl OutboxMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            files: gauge_vec(r, "weir_outbox_files", "Finished files waiting for a sink.", &["sink"]),
            bytes: gauge_vec(r, "weir_outbox_bytes", "Bytes of finished files waiting for a sink.", &["sink"]),
            sink_uploads: counter_vec(r, "weir_sink_uploads_total", "Upload attempts, by sink and result.", &["sink", "result"]),
            sink_upload_seconds: histogram_vec(r, "weir_sink_upload_seconds", "Duration of one upload.", &["sink"], latency_buckets()),
            sink_retries: counter_vec(r, "weir_sink_retries_total", "Uploads retried after a failure, by sink.", &["sink"]),
            sink_dead_lettered: counter_vec(r, "weir_sink_dead_lettered_total", "Parts a sink rejected for good, moved to the dead-letter folder, by sink.", &["sink"]),
            sink_auth_failures: counter_vec(r, "weir_sink_auth_failures_total", "Uploads the sink refused for our credentials (HTTP 401/403), retried with backoff: alert on it, the key needs fixing.", &["sink"]),
            oldest_age_seconds: gauge_vec(r, "weir_outbox_oldest_age_seconds", "Age of the oldest finished file a sink has not received yet (0 when none).", &["sink"]),
            backlog_bytes: gauge(r, "weir_outbox_backlog_bytes", "Bytes of outbox files not yet taken by every sink (limit: outbox.max_backlog_bytes)."),
            retained_bytes: gauge(r, "weir_outbox_retained_bytes", "Bytes of delivered files kept for restore (limit: outbox.retain_bytes)."),
            retained_files: gauge(r, "weir_outbox_retained_files", "Delivered files kept for restore."),
            retained_oldest_period: gauge(r, "weir_outbox_retained_oldest_period_seconds", "Start (Unix seconds) of the oldest period a retained file holds; 0 when none."),
            retained_removed: counter(r, "weir_outbox_retained_removed_total", "Retained files removed because outbox.retain or outbox.retain_bytes was passed."),
            redeliver_files: counter_vec(r, "weir_redeliver_files_total", "Retained files sent again by `weir redeliver` through this node, by sink and result (ok, failed).", &["sink", "result"]),
            fresh_previews_removed: counter_vec(r, "weir_fresh_previews_removed_total", "Previews (roll.freshness) removed from a sink once the finished file replacing them was there.", &["sink"]),
            fresh_sweep_errors: counter_vec(r, "weir_fresh_sweep_errors_total", "Failed listings or deletes while removing replaced previews (retried).", &["sink"]),
            blocked: gauge(r, "weir_outbox_blocked", "1 while the outbox backlog is over its limit and the roller waits."),
            sink_up: gauge_vec(r, "weir_sink_up", "1 while a sink takes files (its probe at start, then its last upload or commit), 0 while it fails (files wait in the outbox meanwhile), -1 until its first probe answers.", &["sink"]),
            errors: counter_vec(r, "weir_outbox_errors_total", "Outbox bookkeeping that failed, by operation: dead_letter and mark_delivered (retried), read_manifest and read_retained_manifest (a manifest skipped at start; it and its file stay for an operator).", &["op"]),
            suppressed: suppressed.clone(),
        }
    }
}

impl OutboxMetrics {
    /// A sink's series exist from the start, at zero; `sweeps`: it has a
    /// preview sweeper.
    pub(crate) fn sink(&self, sink: &str, sweeps: bool) {
        for result in ["ok", "error", "rejected"] {
            self.sink_uploads.with_label_values(&[sink, result]);
        }
        self.sink_retries.with_label_values(&[sink]);
        self.sink_upload_seconds.with_label_values(&[sink]);
        for result in ["ok", "failed"] {
            self.redeliver_files.with_label_values(&[sink, result]);
        }
        self.sink_dead_lettered.with_label_values(&[sink]);
        self.sink_auth_failures.with_label_values(&[sink]);
        self.files.with_label_values(&[sink]);
        self.bytes.with_label_values(&[sink]);
        self.oldest_age_seconds.with_label_values(&[sink]);
        if sweeps {
            self.fresh_previews_removed.with_label_values(&[sink]);
            self.fresh_sweep_errors.with_label_values(&[sink]);
        }
    }

    /// The outbox's levels: what waits for each sink, the backlog, and
    /// what retention keeps.
    pub(crate) fn report(&self, g: OutboxGauges<'_>) {
        for (sink, w) in g.waiting {
            self.files.with_label_values(&[sink]).set(w.files as i64);
            self.bytes.with_label_values(&[sink]).set(w.bytes as i64);
            self.oldest_age_seconds
                .with_label_values(&[sink])
                .set(w.oldest_age_secs);
        }
        self.backlog_bytes.set(g.backlog_bytes as i64);
        if let Some(r) = g.retained {
            self.retained_files.set(r.files as i64);
            self.retained_bytes.set(r.bytes as i64);
            self.retained_oldest_period.set(r.oldest_period);
        }
    }

    /// The roller stopped finishing files at the backlog limit, or resumed.
    pub(crate) fn blocked(&self, blocked: bool, backlog_bytes: u64, limit: u64) {
        self.blocked.set(i64::from(blocked));
        if blocked {
            tracing::warn!(
                backlog_bytes,
                limit,
                "outbox backlog over outbox.max_backlog_bytes: pausing until sinks catch up"
            );
        } else {
            tracing::info!(
                backlog_bytes,
                "outbox backlog under its limit again; resuming"
            );
        }
    }

    /// A sink's credentials were refused (also by a commit).
    pub(crate) fn auth_refused(&self, sink: &str) {
        self.sink_auth_failures.with_label_values(&[sink]).inc();
    }

    /// `n` previews a finished file replaced were removed from `sink`.
    pub(crate) fn previews_removed(&self, sink: &str, n: u64) {
        self.fresh_previews_removed
            .with_label_values(&[sink])
            .inc_by(n);
    }

    /// `n` retained files were removed (`outbox.retain` or `retain_bytes`
    /// passed).
    pub(crate) fn retained_removed(&self, n: u64) {
        self.retained_removed.inc_by(n);
    }

    /// The sink's up gauge before its first probe answers.
    pub(crate) fn sink_unknown(&self, sink: &str) {
        self.sink_up.with_label_values(&[sink]).set(-1);
    }

    /// One upload attempt ended: counted by result and timed; the sink is
    /// up after a success, down after a failure that may pass; a refused
    /// key is counted apart.
    pub(crate) fn attempted(
        &self,
        sink: &str,
        result: &Result<(), SinkError>,
        took: std::time::Duration,
    ) {
        self.sink_upload_seconds
            .with_label_values(&[sink])
            .observe(took.as_secs_f64());
        let label = upload_label(result);
        self.sink_uploads.with_label_values(&[sink, label]).inc();
        match result {
            Ok(()) => self.sink_ok(sink, "upload"),
            Err(e) if !e.is_permanent() => self.sink_failing(sink, e),
            Err(_) => {}
        }
        if result.as_ref().is_err_and(|e| e.is_auth()) {
            self.auth_refused(sink);
        }
    }

    /// A sink refused a file for good; it went to the dead-letter folder.
    pub(crate) fn dead_lettered(
        &self,
        sink: &str,
        key: &str,
        error: &dyn std::fmt::Display,
        at: &std::path::Path,
    ) {
        self.sink_dead_lettered.with_label_values(&[sink]).inc();
        tracing::error!(sink, key, error = %error, dead_letter = %at.display(),
            "sink rejected the file for good; kept in the dead-letter folder");
    }

    /// A file `weir redeliver` sends again is done: sent, or given up.
    pub(crate) fn redelivered(&self, sink: &str, key: &str, result: &Result<(), String>) {
        let label = if result.is_ok() { "ok" } else { "failed" };
        self.redeliver_files.with_label_values(&[sink, label]).inc();
        match result {
            Ok(()) => tracing::info!(sink, key, "redelivered"),
            Err(e) => tracing::error!(sink, key, error = %e, "redeliver gave up on a file"),
        }
    }

    /// A sink took files (or passed its probe): up. Logged when it changes.
    pub(crate) fn sink_ok(&self, sink: &str, how: &str) {
        let g = self.sink_up.with_label_values(&[sink]);
        if g.get() != 1 {
            g.set(1);
            tracing::info!(sink, how, "sink is up");
        }
    }

    /// Outbox bookkeeping failed: `op` is dead_letter, mark_delivered,
    /// read_manifest or read_retained_manifest; `what` names the file.
    pub(crate) fn bookkeeping_failed(
        &self,
        op: &'static str,
        what: &dyn std::fmt::Display,
        error: &dyn std::fmt::Display,
    ) {
        self.errors.with_label_values(&[op]).inc();
        match op {
            "read_manifest" | "read_retained_manifest" => {
                tracing::error!(op, file = %what, error = %error, "unreadable manifest; skipped (it and its file stay)")
            }
            _ => {
                tracing::error!(op, file = %what, error = %error, "outbox bookkeeping failed; retrying")
            }
        }
    }

    /// Every bookkeeping series exists from the start, at zero.
    pub(super) fn zeros(&self) {
        for op in [
            "dead_letter",
            "mark_delivered",
            "read_manifest",
            "read_retained_manifest",
        ] {
            self.errors.with_label_values(&[op]);
        }
    }

    /// A sink cannot take files now: down, with why. Logged when it changes
    /// (each failure is counted and logged by its own event).
    pub(crate) fn sink_failing(&self, sink: &str, error: &dyn std::fmt::Display) {
        let g = self.sink_up.with_label_values(&[sink]);
        if g.get() != 0 {
            g.set(0);
            tracing::error!(sink, error = %error, "sink is DOWN: files wait in the outbox and are retried");
        }
    }

    /// An upload failed; retried in `retry_in`.
    /// `what` is "upload" or "redeliver upload".
    pub(crate) fn upload_failed(
        &self,
        what: &'static str,
        sink: &str,
        key: &str,
        error: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.sink_retries.with_label_values(&[sink]).inc();
        if let Some(suppressed) = self.suppressed.allow("upload_failed") {
            tracing::warn!(sink, key, error = %error, retry_in_ms = retry_in.as_millis() as u64, suppressed, "{what} failed; will retry");
        }
    }

    /// Listing or deleting replaced previews failed; retried.
    pub(crate) fn sweep_failed(&self, sink: &str, what: &str, error: &str) {
        self.fresh_sweep_errors.with_label_values(&[sink]).inc();
        if let Some(suppressed) = self.suppressed.allow("preview_sweep") {
            tracing::warn!(
                sink,
                what,
                error,
                suppressed,
                "cannot remove replaced previews yet; will retry"
            );
        }
    }
}

/// The `result` label of `weir_sink_uploads_total` for an attempt.
pub(crate) fn upload_label(result: &Result<(), SinkError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(e) if e.is_permanent() => "rejected",
        Err(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_labels() {
        assert_eq!(upload_label(&Ok(())), "ok");
        assert_eq!(
            upload_label(&Err(SinkError::Http("connection refused".into()))),
            "error"
        );
        assert_eq!(
            upload_label(&Err(SinkError::Rejected {
                status: 400,
                what: "bad part".into()
            })),
            "rejected"
        );
    }
}
