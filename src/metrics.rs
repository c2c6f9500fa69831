//! One Prometheus registry for every stage.
//!
//! Names follow `weir_<stage>_<noun>_<unit>_total`. Labels are bounded sets
//! (mode, reason, sink, result): never a tag or a client address.
//! Every drop, reject and retry counts here as well as in the log.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Shared handle to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    pub registry: Registry,
    /// Every metric in registration order, for the README's table.
    pub catalog: Vec<MetricInfo>,
    // forward
    pub connections_active: IntGauge,
    pub connections_accepted: IntCounter,
    pub connections_closed: IntCounterVec,
    pub connections_refused: IntCounter,
    pub handshake_failures: IntCounterVec,
    pub duplicate_chunks: IntCounter,
    pub large_requests: IntCounter,
    pub forward_inflight_bytes: IntGauge,
    pub forward_memory_waits: IntCounter,
    pub requests: IntCounterVec,
    pub events_accepted: IntCounterVec,
    pub events_skipped: IntCounterVec,
    pub bytes_received: IntCounter,
    pub bytes_decompressed: IntCounter,
    pub acks_sent: IntCounter,
    pub ack_latency_seconds: Histogram,
    // capture (forward.capture_dir)
    pub capture_records: IntCounter,
    pub capture_bytes: IntCounter,
    pub capture_dropped: IntCounterVec,
    // wal
    pub wal_bytes: IntCounter,
    pub wal_records: IntCounter,
    pub wal_fsync_seconds: Histogram,
    pub wal_group_size: Histogram,
    pub wal_segments: IntGauge,
    pub wal_errors: IntCounter,
    pub wal_torn_tails: IntCounter,
    pub wal_corrupt_records: IntCounter,
    pub backpressure_active: IntGauge,
    pub backpressure_seconds: Counter,
    pub backpressure_episodes: IntCounter,
    // roll
    pub roll_open_partitions: IntGauge,
    pub roll_buffer_bytes: IntGauge,
    pub roll_buffered_rows: IntGauge,
    pub roll_rows: IntCounter,
    pub roll_row_groups: IntCounter,
    pub roll_files_finished: IntCounterVec,
    pub roll_late_events: IntCounter,
    pub roll_outside_events: IntCounterVec,
    pub roll_files_finished_early: IntCounterVec,
    pub roll_quarantined_records: IntCounter,
    pub roll_coverage_entries: IntGauge,
    pub roll_lag_records: IntGauge,
    pub roll_lag_seconds: prometheus::Gauge,
    pub wal_backlog_bytes: IntGauge,
    pub roll_unrouted_events: IntCounter,
    pub roll_replayed_skipped_events: IntCounter,
    pub roll_errors: IntCounter,
    // outbox + sinks
    pub outbox_files: IntGaugeVec,
    pub outbox_bytes: IntGaugeVec,
    pub sink_uploads: IntCounterVec,
    pub sink_upload_seconds: HistogramVec,
    pub sink_retries: IntCounterVec,
    pub sink_dead_lettered: IntCounterVec,
    pub sink_auth_failures: IntCounterVec,
    pub outbox_oldest_age_seconds: IntGaugeVec,
    pub outbox_backlog_bytes: IntGauge,
    pub outbox_retained_bytes: IntGauge,
    pub outbox_retained_files: IntGauge,
    pub outbox_retained_oldest_period: IntGauge,
    pub outbox_retained_removed: IntCounter,
    pub redeliver_files: IntCounterVec,
    pub fresh_previews_removed: IntCounterVec,
    pub fresh_sweep_errors: IntCounterVec,
    pub outbox_blocked: IntGauge,
    // logging
    pub log_suppressed: IntCounterVec,
}

/// One metric as the README's table lists it.
#[derive(Debug, Clone)]
pub struct MetricInfo {
    pub name: String,
    /// counter, gauge or histogram.
    pub kind: &'static str,
    pub labels: Vec<String>,
    pub help: String,
}

/// The registry while metrics are being registered, with their catalog.
struct Reg {
    registry: Registry,
    catalog: std::cell::RefCell<Vec<MetricInfo>>,
}

/// Registers a metric built from constant names; a failure is a programming
/// error that every test run would hit.
fn register<T: Collector + Clone + 'static>(
    r: &Reg,
    kind: &'static str,
    name: &str,
    metric: prometheus::Result<T>,
) -> T {
    let m = metric.unwrap_or_else(|e| panic!("metric {name}: {e}"));
    for d in m.desc() {
        r.catalog.borrow_mut().push(MetricInfo {
            name: d.fq_name.clone(),
            kind,
            labels: d.variable_labels.clone(),
            help: d.help.clone(),
        });
    }
    r.registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    m
}

fn counter(r: &Reg, name: &str, help: &str) -> IntCounter {
    register(r, "counter", name, IntCounter::new(name, help))
}

fn counter_vec(r: &Reg, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        "counter",
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

fn gauge(r: &Reg, name: &str, help: &str) -> IntGauge {
    register(r, "gauge", name, IntGauge::new(name, help))
}

fn gauge_vec(r: &Reg, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        "gauge",
        name,
        IntGaugeVec::new(Opts::new(name, help), labels),
    )
}

fn histogram(r: &Reg, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        r,
        "histogram",
        name,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

fn histogram_vec(
    r: &Reg,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    register(
        r,
        "histogram",
        name,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ]
}

impl Metrics {
    /// Builds the registry. Metric definitions are constants, so a failure
    /// here is a programming error caught by every test run.
    pub fn new() -> Self {
        let r = Reg {
            registry: Registry::new(),
            catalog: std::cell::RefCell::new(Vec::new()),
        };
        let inner = Inner {
            connections_active: gauge(&r, "weir_forward_connections_active", "Open forward connections."),
            connections_accepted: counter(&r, "weir_forward_connections_accepted_total", "Forward connections accepted."),
            connections_closed: counter_vec(&r, "weir_forward_connections_closed_total", "Forward connections closed, by reason.", &["reason"]),
            connections_refused: counter(&r, "weir_forward_connections_refused_total", "Connections closed at once because forward.max_connections were open."),
            handshake_failures: counter_vec(&r, "weir_forward_handshake_failures_total", "Failed shared-key handshakes, by reason.", &["reason"]),
            large_requests: counter(&r, "weir_forward_large_requests_total", "Requests larger than forward.chunk_size_warn_limit."),
            forward_inflight_bytes: gauge(&r, "weir_forward_inflight_bytes", "Memory held by requests in flight: read buffers, decompressed entries, decoded batches (limit: forward.max_inflight_bytes)."),
            forward_memory_waits: counter(&r, "weir_forward_memory_waits_total", "Times a connection waited because forward.max_inflight_bytes was spent (backpressure)."),
            duplicate_chunks: counter(&r, "weir_forward_duplicate_chunks_total", "Resent chunks acked without writing them again."),
            requests: counter_vec(&r, "weir_forward_requests_total", "Forward event requests decoded, by mode.", &["mode"]),
            events_accepted: counter_vec(&r, "weir_forward_events_total", "Events accepted into the WAL, by mode.", &["mode"]),
            events_skipped: counter_vec(&r, "weir_forward_events_skipped_total", "Events dropped as invalid or not logs, by reason.", &["reason"]),
            bytes_received: counter(&r, "weir_forward_received_bytes_total", "Bytes read from forward connections."),
            bytes_decompressed: counter(&r, "weir_forward_decompressed_bytes_total", "Entry bytes after decompression."),
            acks_sent: counter(&r, "weir_forward_acks_total", "Acks written to clients."),
            ack_latency_seconds: histogram(&r, "weir_forward_ack_latency_seconds", "From a request's last byte to its ack.", latency_buckets()),
            capture_records: counter(&r, "weir_capture_records_total", "Records written to capture files (forward.capture_dir)."),
            capture_bytes: counter(&r, "weir_capture_written_bytes_total", "Bytes written to capture files."),
            capture_dropped: counter_vec(&r, "weir_capture_dropped_total", "Capture records not written, by reason (queue_full, write_error); ingestion is never slowed by capture.", &["reason"]),
            wal_bytes: counter(&r, "weir_wal_written_bytes_total", "Bytes appended to the WAL."),
            wal_records: counter(&r, "weir_wal_records_total", "Records (requests) appended to the WAL."),
            wal_fsync_seconds: histogram(&r, "weir_wal_fsync_seconds", "Duration of one WAL group sync.", latency_buckets()),
            wal_group_size: histogram(&r, "weir_wal_group_requests", "Requests made durable by one group commit.", vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            wal_segments: gauge(&r, "weir_wal_segments", "WAL segment files on disk."),
            wal_errors: counter(&r, "weir_wal_errors_total", "WAL write or sync failures (the WAL stops acking)."),
            wal_torn_tails: counter(&r, "weir_wal_torn_tails_total", "Torn WAL tails truncated at recovery."),
            wal_corrupt_records: counter(&r, "weir_wal_corrupt_records_total", "Damaged WAL records skipped at recovery."),
            backpressure_active: gauge(&r, "weir_backpressure_active", "1 while the roller cannot keep up and weir stops reading sockets."),
            backpressure_seconds: register(&r, "counter", "weir_backpressure_seconds_total", Counter::new("weir_backpressure_seconds_total", "Time spent in backpressure.")),
            backpressure_episodes: counter(&r, "weir_backpressure_episodes_total", "Times backpressure began."),
            roll_open_partitions: gauge(&r, "weir_roll_open_files", "Files being written: Parquet (route, group, period) and Treasure Data parts (limit: roll.max_open_files)."),
            roll_buffer_bytes: gauge(&r, "weir_roll_buffered_bytes", "Memory held by open files: rows not yet in a row group on disk plus each file's fixed cost (limit: roll.max_buffer_bytes)."),
            roll_buffered_rows: gauge(&r, "weir_roll_buffered_rows", "Rows in open files' memory, not yet in a row group on disk."),
            roll_rows: counter(&r, "weir_roll_rows_total", "Rows encoded into Parquet."),
            roll_row_groups: counter(&r, "weir_roll_row_groups_total", "Row groups written."),
            roll_files_finished: counter_vec(&r, "weir_roll_files_finished_total", "Files finished and handed to the outbox, by kind (period, part, late, outside, td_part).", &["kind"]),
            roll_late_events: counter(&r, "weir_roll_late_events_total", "Events that arrived after their period's file was finished; written to a late file."),
            roll_outside_events: counter_vec(&r, "weir_roll_outside_events_total", "Events dated outside [arrival - roll.max_past, arrival + roll.max_future], written to an outside file, by direction (past, future).", &["direction"]),
            roll_files_finished_early: counter_vec(&r, "weir_roll_files_finished_early_total", "Files finished before their deadline, by reason (max_open_files, memory, drain).", &["reason"]),
            roll_quarantined_records: counter(&r, "weir_roll_quarantined_records_total", "WAL records the roller could not turn into files, moved to deadletter/roller/."),
            roll_coverage_entries: gauge(&r, "weir_roll_coverage_entries", "Finished files the roller remembers so replay skips their events (forgotten once the WAL drops their records)."),
            roll_lag_records: gauge(&r, "weir_roll_lag_records", "WAL records (requests) durable and acked but not yet read by the roller."),
            roll_lag_seconds: register(&r, "gauge", "weir_roll_lag_seconds", prometheus::Gauge::new("weir_roll_lag_seconds", "How long ago the record the roller last read arrived, while it is behind (0 when caught up).")),
            wal_backlog_bytes: gauge(&r, "weir_wal_backlog_bytes", "WAL bytes the roller has not read yet (limit: wal.max_backlog_bytes; past it appends wait)."),
            roll_unrouted_events: counter(&r, "weir_roll_unrouted_events_total", "Events whose tag matched no route; dropped."),
            roll_replayed_skipped_events: counter(&r, "weir_roll_replay_skipped_events_total", "Replayed WAL events already in a finished file."),
            roll_errors: counter(&r, "weir_roll_errors_total", "Failures writing Parquet files."),
            outbox_files: gauge_vec(&r, "weir_outbox_files", "Finished files waiting for a sink.", &["sink"]),
            outbox_bytes: gauge_vec(&r, "weir_outbox_bytes", "Bytes of finished files waiting for a sink.", &["sink"]),
            sink_uploads: counter_vec(&r, "weir_sink_uploads_total", "Upload attempts, by sink and result.", &["sink", "result"]),
            sink_upload_seconds: histogram_vec(&r, "weir_sink_upload_seconds", "Duration of one upload.", &["sink"], latency_buckets()),
            sink_retries: counter_vec(&r, "weir_sink_retries_total", "Uploads retried after a failure, by sink.", &["sink"]),
            sink_dead_lettered: counter_vec(&r, "weir_sink_dead_lettered_total", "Parts a sink rejected for good, moved to the dead-letter folder, by sink.", &["sink"]),
            sink_auth_failures: counter_vec(&r, "weir_sink_auth_failures_total", "Uploads the sink refused for our credentials (HTTP 401/403), retried with backoff: alert on it, the key needs fixing.", &["sink"]),
            outbox_oldest_age_seconds: gauge_vec(&r, "weir_outbox_oldest_age_seconds", "Age of the oldest finished file a sink has not received yet (0 when none).", &["sink"]),
            outbox_backlog_bytes: gauge(&r, "weir_outbox_backlog_bytes", "Bytes of outbox files not yet taken by every sink (limit: outbox.max_backlog_bytes)."),
            outbox_retained_bytes: gauge(&r, "weir_outbox_retained_bytes", "Bytes of delivered files kept for restore (limit: outbox.retain_bytes)."),
            outbox_retained_files: gauge(&r, "weir_outbox_retained_files", "Delivered files kept for restore."),
            outbox_retained_oldest_period: gauge(&r, "weir_outbox_retained_oldest_period_seconds", "Start (Unix seconds) of the oldest period a retained file holds; 0 when none."),
            outbox_retained_removed: counter(&r, "weir_outbox_retained_removed_total", "Retained files removed because outbox.retain or outbox.retain_bytes was passed."),
            fresh_previews_removed: counter_vec(&r, "weir_fresh_previews_removed_total", "Previews (roll.freshness) removed from a sink once the finished file replacing them was there.", &["sink"]),
            fresh_sweep_errors: counter_vec(&r, "weir_fresh_sweep_errors_total", "Failed listings or deletes while removing replaced previews (retried).", &["sink"]),
            redeliver_files: counter_vec(&r, "weir_redeliver_files_total", "Retained files sent again by `weir redeliver` through this node, by sink and result (ok, failed).", &["sink", "result"]),
            outbox_blocked: gauge(&r, "weir_outbox_blocked", "1 while the outbox backlog is over its limit and the roller waits."),
            log_suppressed: counter_vec(&r, "weir_log_suppressed_total", "Repeated warnings not logged (rate limit), by kind.", &["kind"]),
            catalog: r.catalog.into_inner(),
            registry: r.registry,
        };
        Metrics(Arc::new(inner))
    }

    /// The README's metric table (markdown), from the catalog.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
        for m in &self.catalog {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                m.name,
                m.kind,
                m.labels.join(", "),
                m.help
            ));
        }
        out
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
