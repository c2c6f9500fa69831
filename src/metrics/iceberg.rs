//! Metrics of the Iceberg sinks: commits, what they added, conflicts and
//! retries, latency, the tables refused, snapshots expired.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the Iceberg sinks.
#[derive(Clone)]
pub(crate) struct IcebergMetrics {
    commits: IntCounterVec,
    files_committed: IntCounterVec,
    rows_committed: IntCounterVec,
    conflicts: IntCounterVec,
    commit_retries: IntCounterVec,
    commit_seconds: HistogramVec,
    waiting_files: IntGaugeVec,
    oldest_waiting_seconds: IntGaugeVec,
    table_refused: IntGaugeVec,
    expire_failures: IntCounterVec,
    snapshots_expired: IntCounterVec,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl IcebergMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            commits: counter_vec(r, "weir_iceberg_commits_total", "Commits into Iceberg tables, by sink and result (ok, error).", &["sink", "result"]),
            files_committed: counter_vec(r, "weir_iceberg_files_committed_total", "Data files added to Iceberg tables (each once, whatever crashes), by sink.", &["sink"]),
            rows_committed: counter_vec(r, "weir_iceberg_rows_committed_total", "Rows in the data files added to Iceberg tables, by sink.", &["sink"]),
            conflicts: counter_vec(r, "weir_iceberg_commit_conflicts_total", "Commits another writer beat to the table (retried on the new table state), by sink.", &["sink"]),
            commit_retries: counter_vec(r, "weir_iceberg_commit_retries_total", "Commits that failed and wait for a retry (catalog or store unreachable, table refused), by sink.", &["sink"]),
            commit_seconds: histogram_vec(r, "weir_iceberg_commit_seconds", "Duration of one table commit (check, append, conflicts retried).", &["sink"], latency_buckets()),
            waiting_files: gauge_vec(r, "weir_iceberg_waiting_files", "Files put into the warehouse and waiting for their commit, by sink.", &["sink"]),
            oldest_waiting_seconds: gauge_vec(r, "weir_iceberg_oldest_waiting_seconds", "How long the oldest file waiting for its commit has waited since it was finished (0 when none).", &["sink"]),
            table_refused: gauge_vec(r, "weir_iceberg_table_refused", "1 while a table refuses its route (dropped, replaced or altered by someone else, a refused column change): its files wait.", &["sink", "table"]),
            expire_failures: counter_vec(r, "weir_iceberg_expire_failures_total", "Snapshot expiries that failed (tried again at the next commit), by sink.", &["sink"]),
            snapshots_expired: counter_vec(r, "weir_iceberg_snapshots_expired_total", "Snapshots this node made that were expired (iceberg snapshot_max_age), by sink.", &["sink"]),
            suppressed: suppressed.clone(),
        }
    }

    /// Every series of a sink exists from its start, at zero.
    pub(crate) fn register_sink(&self, sink: &str) {
        for result in ["ok", "error"] {
            self.commits.with_label_values(&[sink, result]);
        }
        self.files_committed.with_label_values(&[sink]);
        self.rows_committed.with_label_values(&[sink]);
        self.conflicts.with_label_values(&[sink]);
        self.commit_retries.with_label_values(&[sink]);
        self.waiting_files.with_label_values(&[sink]);
        self.oldest_waiting_seconds.with_label_values(&[sink]);
        self.snapshots_expired.with_label_values(&[sink]);
        self.expire_failures.with_label_values(&[sink]);
        self.commit_seconds.with_label_values(&[sink]);
    }

    /// A table of the sink, not refused (yet).
    pub(crate) fn register_table(&self, sink: &str, table: &str) {
        self.table_refused.with_label_values(&[sink, table]);
    }

    /// A commit added `files` files (`rows` rows) to `table`, after
    /// `conflicts` conflicts with other writers.
    pub(crate) fn committed(
        &self,
        sink: &str,
        table: &str,
        files: u64,
        rows: u64,
        conflicts: u64,
        took: std::time::Duration,
    ) {
        self.commits.with_label_values(&[sink, "ok"]).inc();
        self.files_committed
            .with_label_values(&[sink])
            .inc_by(files);
        self.rows_committed.with_label_values(&[sink]).inc_by(rows);
        self.conflicts.with_label_values(&[sink]).inc_by(conflicts);
        self.commit_seconds
            .with_label_values(&[sink])
            .observe(took.as_secs_f64());
        tracing::info!(
            sink,
            table,
            files,
            rows,
            conflicts,
            took_ms = took.as_millis() as u64,
            "committed files to the Iceberg table"
        );
    }

    /// A commit failed; the files wait and it is tried again in `retry_in`.
    pub(crate) fn commit_failed(
        &self,
        sink: &str,
        files: usize,
        error: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.commits.with_label_values(&[sink, "error"]).inc();
        self.commit_retries.with_label_values(&[sink]).inc();
        if let Some(suppressed) = self.suppressed.allow("iceberg_commit") {
            tracing::warn!(sink, files, error = %error, retry_in_ms = retry_in.as_millis() as u64, suppressed,
                "Iceberg commit failed; the files wait in the outbox and the commit is retried");
        }
    }

    /// A table refuses its route; its files wait until it is fixed.
    pub(crate) fn table_refused(&self, sink: &str, table: &str, error: &dyn std::fmt::Display) {
        self.table_refused.with_label_values(&[sink, table]).set(1);
        if let Some(suppressed) = self.suppressed.allow("iceberg_table") {
            tracing::error!(sink, table, error = %error, suppressed, "Iceberg table refused; its files wait in the outbox");
        }
    }

    /// A table takes its route's files (again).
    pub(crate) fn table_ok(&self, sink: &str, table: &str) {
        self.table_refused.with_label_values(&[sink, table]).set(0);
    }

    /// `n` of this node's old snapshots were expired from `table`.
    pub(crate) fn expired(&self, sink: &str, table: &str, n: u64) {
        self.snapshots_expired.with_label_values(&[sink]).inc_by(n);
        tracing::info!(sink, table, snapshots = n, "expired old snapshots");
    }

    /// Expiring a table's old snapshots failed; tried again later.
    pub(crate) fn expire_failed(&self, sink: &str, table: &str, error: &dyn std::fmt::Display) {
        self.expire_failures.with_label_values(&[sink]).inc();
        tracing::warn!(sink, table, error = %error.to_string().replace('\n', " "),
            "cannot expire old snapshots; will try again");
    }

    /// Files waiting for their commit, and the age of the oldest.
    pub(crate) fn waiting(&self, sink: &str, files: usize, oldest_age_secs: i64) {
        self.waiting_files
            .with_label_values(&[sink])
            .set(files as i64);
        self.oldest_waiting_seconds
            .with_label_values(&[sink])
            .set(oldest_age_secs);
    }
}
