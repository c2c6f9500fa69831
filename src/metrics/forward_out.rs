//! Metrics of forward output, per sink and server: chunks acked and
//! failed, events and bytes sent, ack latency, whether the server is up.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the forward sinks.
#[derive(Clone)]
pub(crate) struct ForwardOutMetrics {
    chunks: IntCounterVec,
    events: IntCounterVec,
    bytes: IntCounterVec,
    ack_seconds: HistogramVec,
    server_up: IntGaugeVec,
    suppressed: Suppressed,
}

impl ForwardOutMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            chunks: counter_vec(r, "weir_forward_out_chunks_total", "Parts sent by forward sinks (each one PackedForward message per tag, acked together), by sink, server and result (acked; failed: connection, handshake or ack timeout, retried).", &["sink", "server", "result"]),
            events: counter_vec(r, "weir_forward_out_events_total", "Events in parts a forward server acked, by sink and server.", &["sink", "server"]),
            bytes: counter_vec(r, "weir_forward_out_bytes_total", "Message bytes (as sent, compressed or not) of parts a forward server acked, by sink and server.", &["sink", "server"]),
            ack_seconds: histogram_vec(r, "weir_forward_out_ack_seconds", "From a part's first byte sent to its last ack, by sink and server.", &["sink", "server"], latency_buckets()),
            server_up: gauge_vec(r, "weir_forward_out_server_up", "1 while a forward server takes parts (or answered the start probe), 0 while it rests after a failure or did not answer the probe, -1 until either is known, by sink and server.", &["sink", "server"]),
            suppressed: suppressed.clone(),
        }
    }

    /// A sink's server exists: its series start at zero, its state
    /// unknown (-1) until the start probe or a part reaches it.
    pub(crate) fn server(&self, sink: &str, server: &str) {
        for result in ["acked", "failed"] {
            self.chunks.with_label_values(&[sink, server, result]);
        }
        self.events.with_label_values(&[sink, server]);
        self.bytes.with_label_values(&[sink, server]);
        self.ack_seconds.with_label_values(&[sink, server]);
        self.server_up.with_label_values(&[sink, server]).set(-1);
    }

    /// The start probe reached `server` (`Ok`) or not.
    pub(crate) fn probed(&self, sink: &str, server: &str, result: Result<(), &str>) {
        let up = self.server_up.with_label_values(&[sink, server]);
        match result {
            Ok(()) => {
                if up.get() == 0 {
                    tracing::info!(sink, server, "forward server is up again");
                }
                up.set(1);
            }
            Err(error) => {
                if up.get() != 0 {
                    tracing::warn!(sink, server, error, "forward server does not answer");
                }
                up.set(0);
            }
        }
    }

    /// A server acked every message of a part, the last `took` after the
    /// first was sent.
    pub(crate) fn acked(&self, sink: &str, server: &str, took: std::time::Duration) {
        let labels = [sink, server];
        self.chunks
            .with_label_values(&[sink, server, "acked"])
            .inc();
        self.ack_seconds
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        let up = self.server_up.with_label_values(&labels);
        if up.get() == 0 {
            tracing::info!(sink, server, "forward server is up again");
        }
        up.set(1);
    }

    /// A server acked messages holding `events` events and `bytes` bytes
    /// (of a part it may not have taken whole).
    pub(crate) fn events_acked(&self, sink: &str, server: &str, events: u64, bytes: u64) {
        let labels = [sink, server];
        self.events.with_label_values(&labels).inc_by(events);
        self.bytes.with_label_values(&labels).inc_by(bytes);
    }

    /// A chunk failed on a server, which now rests for `rest`; the chunk is
    /// tried on another server or retried.
    pub(crate) fn failed(
        &self,
        sink: &str,
        server: &str,
        error: &dyn std::fmt::Display,
        rest: std::time::Duration,
    ) {
        self.chunks
            .with_label_values(&[sink, server, "failed"])
            .inc();
        let up = self.server_up.with_label_values(&[sink, server]);
        if up.get() != 0 {
            up.set(0);
            tracing::warn!(sink, server, error = %error, rest_ms = rest.as_millis() as u64,
                "forward server is DOWN: chunks go to the sink's other servers, or wait in the outbox");
        } else if let Some(suppressed) = self.suppressed.allow_per_minute("forward_out_failed") {
            tracing::info!(sink, server, error = %error, rest_ms = rest.as_millis() as u64, suppressed, "forward server still failing");
        }
    }
}
