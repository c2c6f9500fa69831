//! Metrics of the HTTP input: requests by status, events, rejections by reason.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use std::net::SocketAddr;

use super::registry::*;
use crate::logging::Suppressed;

/// Statuses the HTTP input answers; `weir_http_requests_total{code}` has
/// one series for each.
pub(crate) const HTTP_CODES: [u16; 12] =
    [200, 204, 400, 401, 403, 404, 405, 408, 413, 415, 500, 503];

/// Why requests are rejected; one `weir_http_rejected_total{reason}` each.
pub(crate) const HTTP_REJECT_REASONS: [&str; 14] = [
    "tls",
    "unauthorized",
    "origin",
    "method",
    "invalid_tag",
    "too_large",
    "timeout",
    "bad_encoding",
    "unsupported_type",
    "malformed",
    "invalid_time",
    "busy",
    "wal_unavailable",
    "body",
];

/// Metrics of the HTTP input.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    connections_active: IntGauge,
    connections_refused: IntCounter,
    accept_errors: IntCounter,
    requests: IntCounterVec,
    rejected: IntCounterVec,
    events_accepted: IntCounter,
    bodies: IntCounterVec,
    bytes_received: IntCounter,
    response_latency_seconds: Histogram,
    suppressed: Suppressed,
}

impl HttpMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            connections_active: gauge(
                r,
                "weir_http_connections_active",
                "Open HTTP input connections.",
            ),
            connections_refused: counter(
                r,
                "weir_http_connections_refused_total",
                "HTTP connections closed at once because forward.max_connections were open.",
            ),
            accept_errors: counter(
                r,
                "weir_http_accept_errors_total",
                "Failed accepts on the HTTP listener, each followed by a short back-off (e.g. out of file descriptors).",
            ),
            requests: counter_vec(
                r,
                "weir_http_requests_total",
                "HTTP input requests answered, by status code.",
                &["code"],
            ),
            rejected: counter_vec(
                r,
                "weir_http_rejected_total",
                "HTTP input requests refused (nothing of them stored), by reason.",
                &["reason"],
            ),
            events_accepted: counter(
                r,
                "weir_http_events_total",
                "Events from HTTP requests made durable.",
            ),
            bodies: counter_vec(
                r,
                "weir_http_bodies_total",
                "HTTP request bodies read, by Content-Encoding.",
                &["encoding"],
            ),
            bytes_received: counter(
                r,
                "weir_http_received_bytes_total",
                "HTTP request body bytes read (as sent, before decompression).",
            ),
            response_latency_seconds: histogram(
                r,
                "weir_http_response_latency_seconds",
                "From a request's head to its answer (a 2xx waits until durable).",
                latency_buckets(),
            ),
            suppressed: suppressed.clone(),
        }
    }

    /// Every series exists from the start, at zero.
    pub(super) fn zeros(&self) {
        for code in HTTP_CODES {
            self.requests.with_label_values(&[&code.to_string()]);
        }
        for encoding in ["identity", "gzip", "deflate", "zstd"] {
            self.bodies.with_label_values(&[encoding]);
        }
        for reason in HTTP_REJECT_REASONS {
            self.rejected.with_label_values(&[reason]);
        }
    }
}

/// Events: each counts and logs (warnings rate-limited) in one place.
impl HttpMetrics {
    /// A connection closed at once: `forward.max_connections` were open.
    pub(crate) fn refused(&self, peer: SocketAddr, limit: usize) {
        self.connections_refused.inc();
        if let Some(suppressed) = self.suppressed.allow("http_refused") {
            tracing::warn!(%peer, limit, suppressed, "refusing HTTP connection: forward.max_connections reached");
        }
    }

    /// Accepting a connection failed; the listener backs off.
    pub(crate) fn accept_failed(&self, error: &dyn std::fmt::Display) {
        self.accept_errors.inc();
        if let Some(suppressed) = self.suppressed.allow("http_accept_failed") {
            tracing::warn!(error = %error, suppressed, "HTTP accept failed; backing off");
        }
    }

    /// A TLS handshake failed or timed out; the connection is closed.
    pub(crate) fn tls_failed(&self, peer: SocketAddr, why: &str) {
        self.rejected.with_label_values(&["tls"]).inc();
        if let Some(suppressed) = self.suppressed.allow("tls") {
            tracing::warn!(%peer, suppressed, "HTTP TLS handshake failed: {why}");
        }
    }

    /// A request answered `status` without storing anything of it.
    /// Rejections the client caused (4xx) and overload (503) both warn.
    pub(crate) fn rejected(
        &self,
        peer: SocketAddr,
        reason: &'static str,
        status: u16,
        detail: &str,
    ) {
        self.rejected.with_label_values(&[reason]).inc();
        if let Some(suppressed) = self.suppressed.allow("http_rejected") {
            tracing::warn!(%peer, reason, status, suppressed, "HTTP request rejected: {detail}");
        }
    }

    /// A connection's task started (`true`) or ended (`false`).
    pub(crate) fn connection_open(&self, open: bool) {
        if open {
            self.connections_active.inc();
        } else {
            self.connections_active.dec();
        }
    }

    /// A body of `bytes` bytes (as sent) was read, in `encoding`.
    pub(crate) fn body(&self, encoding: &str, bytes: usize) {
        self.bytes_received.inc_by(bytes as u64);
        self.bodies.with_label_values(&[encoding]).inc();
    }

    /// `events` events of a request are durable.
    pub(crate) fn stored(&self, events: u64) {
        self.events_accepted.inc_by(events);
    }

    /// A request answered with `status` after `seconds`.
    pub(crate) fn answered(&self, status: u16, seconds: f64) {
        let code = if HTTP_CODES.contains(&status) {
            status.to_string()
        } else {
            "500".to_string()
        };
        self.requests.with_label_values(&[&code]).inc();
        self.response_latency_seconds.observe(seconds);
    }
}
