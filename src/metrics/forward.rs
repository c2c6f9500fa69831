//! Metrics of the forward listener and its connections: requests, events, acks, handshakes.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use std::net::SocketAddr;

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the forward listener and its connections: requests, events, acks, handshakes.
#[derive(Clone)]
pub(crate) struct ForwardMetrics {
    connections_active: IntGauge,
    connections_accepted: IntCounter,
    connections_closed: IntCounterVec,
    connections_refused: IntCounter,
    accept_errors: IntCounter,
    handshake_failures: IntCounterVec,
    duplicate_chunks: IntCounter,
    large_requests: IntCounter,
    inflight_bytes: IntGauge,
    memory_waits: IntCounter,
    requests: IntCounterVec,
    events_accepted: IntCounterVec,
    events_skipped: IntCounterVec,
    bytes_received: IntCounter,
    bytes_decompressed: IntCounter,
    acks_sent: IntCounter,
    ack_latency_seconds: Histogram,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl ForwardMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            connections_active: gauge(r, "weir_forward_connections_active", "Open forward connections."),
            connections_accepted: counter(r, "weir_forward_connections_accepted_total", "Forward connections accepted."),
            connections_closed: counter_vec(r, "weir_forward_connections_closed_total", "Forward connections closed, by reason.", &["reason"]),
            connections_refused: counter(r, "weir_forward_connections_refused_total", "Connections closed at once because forward.max_connections were open."),
            accept_errors: counter(r, "weir_forward_accept_errors_total", "Failed accepts on the forward listeners (TCP and Unix socket), each followed by a short back-off (e.g. out of file descriptors)."),
            handshake_failures: counter_vec(r, "weir_forward_handshake_failures_total", "Failed shared-key handshakes, by reason.", &["reason"]),
            duplicate_chunks: counter(r, "weir_forward_duplicate_chunks_total", "Resent chunks (and HTTP requests with a repeated Idempotency-Key) acked without writing them again."),
            large_requests: counter(r, "weir_forward_large_requests_total", "Requests larger than forward.chunk_size_warn_limit."),
            inflight_bytes: gauge(r, "weir_forward_inflight_bytes", "Memory held by requests in flight: read buffers, decompressed entries, decoded batches (limit: forward.max_inflight_bytes)."),
            memory_waits: counter(r, "weir_forward_memory_waits_total", "Times a connection waited because forward.max_inflight_bytes was spent (backpressure)."),
            requests: counter_vec(r, "weir_forward_requests_total", "Forward event requests decoded, by mode.", &["mode"]),
            events_accepted: counter_vec(r, "weir_forward_events_total", "Events accepted into the WAL, by mode.", &["mode"]),
            events_skipped: counter_vec(r, "weir_forward_events_skipped_total", "Events dropped as invalid or not logs, by reason.", &["reason"]),
            bytes_received: counter(r, "weir_forward_received_bytes_total", "Bytes read from forward connections."),
            bytes_decompressed: counter(r, "weir_forward_decompressed_bytes_total", "Entry bytes after decompression."),
            acks_sent: counter(r, "weir_forward_acks_total", "Acks written to clients."),
            ack_latency_seconds: histogram(r, "weir_forward_ack_latency_seconds", "From a request's last byte to its ack.", latency_buckets()),
            suppressed: suppressed.clone(),
        }
    }
}

impl ForwardMetrics {
    /// Every series whose labels are known exists from the start, at zero,
    /// so alerts need no `or vector(0)`.
    pub(super) fn zeros(&self) {
        for reason in [
            "eof",
            "truncated",
            "malformed",
            "frame_too_large",
            "bad_compression",
            "idle_timeout",
            "io_error",
            "wal_unavailable",
            "request_timeout",
            "no_keepalive",
            "shutdown",
        ] {
            self.connections_closed.with_label_values(&[reason]);
        }
        for reason in [
            "invalid_ping",
            "anonymous_denied",
            "shared_key_mismatch",
            "user_mismatch",
            "timeout",
            "closed",
            "tls",
        ] {
            self.handshake_failures.with_label_values(&[reason]);
        }
        for mode in [
            "message",
            "forward",
            "packed_forward",
            "compressed_packed_forward",
        ] {
            self.requests.with_label_values(&[mode]);
            self.events_accepted.with_label_values(&[mode]);
        }
        for reason in [
            "invalid_time",
            "invalid_record",
            "invalid_entry",
            "invalid_tag",
            "non_log_signal",
            "not_array",
        ] {
            self.events_skipped.with_label_values(&[reason]);
        }
    }
}

/// Events: each counts and logs (warnings rate-limited) in one place.
impl ForwardMetrics {
    /// A connection refused at once because `forward.max_connections` were open.
    pub(crate) fn refused(&self, peer: SocketAddr, limit: usize) {
        self.connections_refused.inc();
        if let Some(suppressed) = self.suppressed.allow("connection_refused") {
            tracing::warn!(%peer, limit, suppressed, "refusing connection: forward.max_connections reached");
        }
    }

    /// Accepting a connection failed; the listener backs off.
    pub(crate) fn accept_failed(&self, error: &dyn std::fmt::Display) {
        self.accept_errors.inc();
        if let Some(suppressed) = self.suppressed.allow("accept_failed") {
            tracing::warn!(error = %error, suppressed, "accept failed; backing off");
        }
    }

    /// A TLS handshake failed or timed out; the connection is closed.
    pub(crate) fn tls_failed(&self, peer: SocketAddr, why: &str) {
        self.handshake_failures.with_label_values(&["tls"]).inc();
        self.connections_closed.with_label_values(&["tls"]).inc();
        if let Some(suppressed) = self.suppressed.allow("tls") {
            tracing::warn!(%peer, suppressed, "TLS handshake failed: {why}");
        }
    }

    /// A shared-key handshake failed (`label`: the metric's reason); `told`:
    /// the client was sent the failure. A client that only connected and
    /// left (Fluentd's heartbeat) is not told, and logged at debug.
    pub(crate) fn handshake_failed(&self, peer: SocketAddr, label: &str, reason: &str, told: bool) {
        self.handshake_failures.with_label_values(&[label]).inc();
        self.connections_closed
            .with_label_values(&["handshake"])
            .inc();
        if !told {
            tracing::debug!(%peer, reason, "handshake not completed");
        } else if let Some(suppressed) = self.suppressed.allow("handshake") {
            tracing::warn!(%peer, reason, suppressed, "handshake failed; closing");
        }
    }

    /// A connection closed for `reason`; `expected` closes (end of stream,
    /// shutdown, idle) are logged at debug, others warn with `detail`.
    pub(crate) fn closed(
        &self,
        peer: SocketAddr,
        reason: &'static str,
        expected: bool,
        detail: &str,
    ) {
        self.connections_closed.with_label_values(&[reason]).inc();
        if expected {
            tracing::debug!(%peer, reason, "connection closed");
        } else if let Some(suppressed) = self.suppressed.allow(reason) {
            tracing::warn!(%peer, reason, suppressed, "closing connection without ack: {detail}");
        }
    }

    /// A request larger than `forward.chunk_size_warn_limit` (still taken).
    pub(crate) fn large_request(&self, peer: SocketAddr, bytes: usize, limit: usize) {
        self.large_requests.inc();
        if let Some(suppressed) = self.suppressed.allow("large_request") {
            tracing::warn!(%peer, bytes, limit, suppressed, "request larger than forward.chunk_size_warn_limit");
        }
    }

    /// A request that is not a msgpack array: ignored.
    pub(crate) fn not_array(&self, peer: SocketAddr) {
        self.events_skipped.with_label_values(&["not_array"]).inc();
        if let Some(suppressed) = self.suppressed.allow("not_array") {
            tracing::warn!(%peer, suppressed, "ignoring a request that is not an array");
        }
    }

    /// Memory held by requests in flight now.
    pub(crate) fn report_inflight(&self, bytes: usize) {
        self.inflight_bytes.set(bytes as i64);
    }

    /// A connection waited for `forward.max_inflight_bytes` (backpressure).
    pub(crate) fn memory_wait(&self) {
        self.memory_waits.inc();
    }

    /// A connection was accepted.
    pub(crate) fn accepted(&self) {
        self.connections_accepted.inc();
    }

    /// A connection's task started (`true`) or ended (`false`).
    pub(crate) fn connection_open(&self, open: bool) {
        if open {
            self.connections_active.inc();
        } else {
            self.connections_active.dec();
        }
    }

    /// `n` bytes read from a connection.
    pub(crate) fn read(&self, n: usize) {
        self.bytes_received.inc_by(n as u64);
    }

    /// A request decoded in `mode` with `entries_bytes` of entries (after
    /// decompression); events it skipped as invalid, by reason (each reason
    /// counted, the request's total logged at debug).
    pub(crate) fn request(
        &self,
        peer: SocketAddr,
        mode: &str,
        entries_bytes: usize,
        skipped: &[(&str, u64)],
    ) {
        self.requests.with_label_values(&[mode]).inc();
        self.bytes_decompressed.inc_by(entries_bytes as u64);
        let mut total = 0;
        for (reason, n) in skipped {
            if *n > 0 {
                self.events_skipped.with_label_values(&[reason]).inc_by(*n);
                total += n;
            }
        }
        if total > 0 {
            tracing::debug!(%peer, skipped = total, "skipped invalid events");
        }
    }

    /// `events` events of a request in `mode` are durable.
    pub(crate) fn stored(&self, mode: &str, events: u64) {
        self.events_accepted
            .with_label_values(&[mode])
            .inc_by(events);
    }

    /// An ack was written, `latency` after the request's last byte.
    pub(crate) fn acked(&self, latency: std::time::Duration) {
        self.acks_sent.inc();
        self.ack_latency_seconds.observe(latency.as_secs_f64());
    }

    /// A resent chunk (or a repeated Idempotency-Key) was recognised and
    /// acked without writing it again.
    pub(crate) fn duplicate_chunk(&self) {
        self.duplicate_chunks.inc();
    }
}
