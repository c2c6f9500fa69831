//! Metrics of the roller: open files, rows, finished files, lag.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge};

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the roller: open files, rows, finished files, lag.
#[derive(Clone)]
pub struct RollMetrics {
    open_partitions: IntGauge,
    buffer_bytes: IntGauge,
    buffered_rows: IntGauge,
    rows: IntCounter,
    row_groups: IntCounter,
    files_finished: IntCounterVec,
    late_events: IntCounter,
    outside_events: IntCounterVec,
    files_finished_early: IntCounterVec,
    quarantined_records: IntCounter,
    coverage_entries: IntGauge,
    lag_records: IntGauge,
    lag_seconds: Gauge,
    unrouted_events: IntCounter,
    type_mismatches: IntCounterVec,
    replayed_skipped_events: IntCounter,
    errors: IntCounter,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl RollMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            open_partitions: gauge(r, "weir_roll_open_files", "Files being written: Parquet (route, group, period) and record sinks' parts: Treasure Data, forward (limit: roll.max_open_files)."),
            buffer_bytes: gauge(r, "weir_roll_buffered_bytes", "Memory held by open files: rows not yet in a row group on disk plus each file's fixed cost (limit: roll.max_buffer_bytes)."),
            buffered_rows: gauge(r, "weir_roll_buffered_rows", "Rows in open files' memory, not yet in a row group on disk."),
            rows: counter(r, "weir_roll_rows_total", "Rows encoded into Parquet."),
            row_groups: counter(r, "weir_roll_row_groups_total", "Row groups written."),
            files_finished: counter_vec(r, "weir_roll_files_finished_total", "Files finished and handed to the outbox, by kind (period, part, late, outside; preview; td_part, forward_chunk: record sinks' parts).", &["kind"]),
            late_events: counter(r, "weir_roll_late_events_total", "Events that arrived after their period's file was finished; written to a late file."),
            outside_events: counter_vec(r, "weir_roll_outside_events_total", "Events dated outside [arrival - roll.max_past, arrival + roll.max_future], written to an outside file, by direction (past, future).", &["direction"]),
            files_finished_early: counter_vec(r, "weir_roll_files_finished_early_total", "Files finished before their deadline, by reason (max_open_files, memory, drain).", &["reason"]),
            quarantined_records: counter(r, "weir_roll_quarantined_records_total", "WAL records the roller could not turn into files, moved to deadletter/roller/."),
            coverage_entries: gauge(r, "weir_roll_coverage_entries", "Finished files the roller remembers so replay skips their events (forgotten once the WAL drops their records)."),
            lag_records: gauge(r, "weir_roll_lag_records", "WAL records (requests) durable and acked but not yet read by the roller."),
            lag_seconds: register(r, "gauge", "weir_roll_lag_seconds", Gauge::new("weir_roll_lag_seconds", "While the roller is behind: at most the age of the oldest record it has not read (since the later of the last record read and the last moment it was caught up; after a restart with a backlog, since the start). 0 when caught up.")),
            unrouted_events: counter(r, "weir_roll_unrouted_events_total", "Events whose tag matched no route and `unmatched = \"drop\"` dropped (logged per new tag and summed a minute)."),
            type_mismatches: counter_vec(r, "weir_roll_type_mismatches_total", "Values of a declared column's name but another type: null in the column, kept in `record`; by route and column.", &["route", "column"]),
            replayed_skipped_events: counter(r, "weir_roll_replay_skipped_events_total", "Replayed WAL events already in a finished file."),
            errors: counter(r, "weir_roll_errors_total", "Failures writing Parquet files."),
            suppressed: suppressed.clone(),
        }
    }
}

/// The roller's gauges, reported together.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RollGauges {
    pub(crate) open_files: usize,
    pub(crate) buffer_bytes: usize,
    pub(crate) buffered_rows: u64,
    pub(crate) coverage_entries: usize,
    pub(crate) lag_records: u64,
    pub(crate) lag_seconds: f64,
}

impl RollMetrics {
    /// The roller's gauges.
    pub(crate) fn report(&self, g: RollGauges) {
        self.open_partitions.set(g.open_files as i64);
        self.buffer_bytes.set(g.buffer_bytes as i64);
        self.buffered_rows.set(g.buffered_rows as i64);
        self.coverage_entries.set(g.coverage_entries as i64);
        self.lag_records.set(g.lag_records as i64);
        self.lag_seconds.set(g.lag_seconds);
    }

    /// A file (or a record sink's part, or a preview) of `kind` was handed
    /// to the outbox.
    pub(crate) fn finished(&self, kind: &str) {
        self.files_finished.with_label_values(&[kind]).inc();
    }

    /// Rows written into open files so far (for tools that wait on the
    /// roller's progress).
    pub fn rows_written(&self) -> u64 {
        self.rows.get()
    }

    /// `rows` rows were written into open files.
    pub(crate) fn written(&self, rows: u64) {
        self.rows.inc_by(rows);
    }

    /// A row group went to disk.
    pub(crate) fn row_group(&self) {
        self.row_groups.inc();
    }

    /// Events sorted into late files (`late`) and outside files (`past`,
    /// `future`); replayed events skipped as already in a finished file.
    pub(crate) fn sorted(&self, late: u64, past: u64, future: u64, replay_skipped: u64) {
        self.late_events.inc_by(late);
        for (dir, n) in [("past", past), ("future", future)] {
            if n > 0 {
                self.outside_events.with_label_values(&[dir]).inc_by(n);
            }
        }
        self.replayed_skipped_events.inc_by(replay_skipped);
    }

    /// `n` events matched no route and were dropped.
    pub(crate) fn unrouted(&self, n: u64) {
        self.unrouted_events.inc_by(n);
    }

    /// Finishing every open file for a drain failed; weir stops.
    pub(crate) fn drain_failed(&self, error: &dyn std::fmt::Display) {
        self.errors.inc();
        tracing::error!(error = %error, "drain: an open file could not be finished");
    }

    /// Its series with known labels at zero from the start (the route and
    /// column ones: [`RollMetrics::declare_columns`]).
    pub(super) fn zeros(&self) {
        for kind in [
            "period",
            "part",
            "late",
            "outside",
            "td_part",
            "forward_chunk",
            "preview",
        ] {
            self.files_finished.with_label_values(&[kind]);
        }
        for direction in ["past", "future"] {
            self.outside_events.with_label_values(&[direction]);
        }
        for reason in ["max_open_files", "memory", "drain"] {
            self.files_finished_early.with_label_values(&[reason]);
        }
    }

    /// The type-mismatch series of a route's declared columns, at zero.
    pub(crate) fn declare_columns<'a>(
        &self,
        route: &str,
        columns: impl IntoIterator<Item = &'a str>,
    ) {
        for c in columns {
            self.type_mismatches.with_label_values(&[route, c]);
        }
    }

    /// An event in the WAL whose record is not a valid map: skipped.
    pub(crate) fn bad_record(&self, seq: u64, error: &dyn std::fmt::Display) {
        self.errors.inc();
        if let Some(suppressed) = self.suppressed.allow("bad_wal_record") {
            tracing::warn!(seq, error = %error, suppressed, "record in the WAL is not a valid map; skipped");
        }
    }

    /// A file finished before its deadline (`reason`: the bound reached, or
    /// `drain`, which was asked for and is not warned about).
    pub(crate) fn finished_early(&self, group: &str, reason: &'static str) {
        self.files_finished_early.with_label_values(&[reason]).inc();
        if reason == "drain" {
            return;
        }
        if let Some(suppressed) = self.suppressed.allow_per_minute("early_finish") {
            tracing::warn!(group, reason, suppressed,
                "finishing a file before its deadline (bound reached: see roll.max_open_files, roll.max_buffer_bytes)");
        }
    }

    /// A WAL record the roller cannot turn into files (a cause in its data)
    /// was moved aside to `file`.
    pub(crate) fn quarantined(
        &self,
        (seq, tag, events): (u64, &[u8], usize),
        error: &dyn std::fmt::Display,
        file: &std::path::Path,
    ) {
        self.errors.inc();
        self.quarantined_records.inc();
        tracing::error!(seq, tag = %String::from_utf8_lossy(tag),
            events, error = %error, file = %file.display(),
            "cannot turn a WAL record into files; moved it aside (replay it with `weir replay` once fixed)");
    }

    /// The roller cannot write files; it rebuilds from the WAL and retries
    /// in `retry_in`.
    pub(crate) fn failing(&self, error: &dyn std::fmt::Display, retry_in: std::time::Duration) {
        self.errors.inc();
        if let Some(suppressed) = self.suppressed.allow("roller_failing") {
            tracing::error!(error = %error, retry_in_ms = retry_in.as_millis() as u64, suppressed,
                "roller cannot write files; retrying (the WAL keeps every event)");
        }
    }

    /// Events of a tag no route matches, seen for the first time.
    pub(crate) fn unrouted_tag(&self, tag: &str, policy: &str) {
        if let Some(suppressed) = self.suppressed.allow("unrouted_tag") {
            tracing::warn!(tag, suppressed,
                "events whose tag matches no route: {policy}; set `unmatched` to a route's name to keep them, or add a route (weir_roll_unrouted_events_total counts them)");
        }
    }

    /// The last interval's events that matched no route.
    pub(crate) fn unrouted_summary(
        &self,
        events: u64,
        new_tags: u64,
        over: std::time::Duration,
        policy: &str,
    ) {
        tracing::warn!(
            events,
            new_tags,
            over_s = over.as_secs(),
            "events matched no route: {policy}"
        );
    }

    /// `n` values named like a declared column had another type (the last
    /// one `seen`): null in the column, kept in `record`.
    pub(crate) fn type_mismatch(
        &self,
        route: &str,
        column: &str,
        declared: &str,
        seen: &str,
        n: u64,
    ) {
        self.type_mismatches
            .with_label_values(&[route, column])
            .inc_by(n);
        if let Some(suppressed) = self.suppressed.allow("type_mismatch") {
            tracing::warn!(route, column, declared, seen, values = n, suppressed,
                "values of another type than the column declares: null in the column, kept in `record`");
        }
    }
}
