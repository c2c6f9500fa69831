//! Metrics of the capture tee (`forward.capture_dir`).

use prometheus::{IntCounter, IntCounterVec};

use super::registry::*;
use crate::logging::Suppressed;

/// Metrics of the capture tee (`forward.capture_dir`).
#[derive(Clone)]
pub(crate) struct CaptureMetrics {
    records: IntCounter,
    bytes: IntCounter,
    dropped: IntCounterVec,
    /// Rate limit of this stage's repeated warnings.
    suppressed: Suppressed,
}

impl CaptureMetrics {
    pub(super) fn register(r: &Reg, suppressed: &Suppressed) -> Self {
        Self {
            records: counter(r, "weir_capture_records_total", "Records written to capture files (forward.capture_dir)."),
            bytes: counter(r, "weir_capture_written_bytes_total", "Bytes written to capture files."),
            dropped: counter_vec(r, "weir_capture_dropped_total", "Capture records not written, by reason (queue_full, write_error); ingestion is never slowed by capture.", &["reason"]),
            suppressed: suppressed.clone(),
        }
    }
}

impl CaptureMetrics {
    /// Its series at zero from the start.
    pub(super) fn zeros(&self) {
        for reason in ["queue_full", "write_error"] {
            self.dropped.with_label_values(&[reason]);
        }
    }

    /// A capture record was dropped because the writer's queue was full
    /// (ingestion is never slowed by capture).
    pub(crate) fn queue_full(&self) {
        self.dropped.with_label_values(&["queue_full"]).inc();
        if let Some(suppressed) = self.suppressed.allow("capture") {
            tracing::warn!(
                suppressed,
                "capture: writer behind, queue full; record dropped"
            );
        }
    }

    /// A capture record of `bytes` bytes was written.
    pub(crate) fn written(&self, bytes: usize) {
        self.records.inc();
        self.bytes.inc_by(bytes as u64);
    }

    /// A capture record could not be written: dropped (ingestion goes on).
    pub(crate) fn write_failed(&self, why: &str) {
        self.dropped.with_label_values(&["write_error"]).inc();
        if let Some(suppressed) = self.suppressed.allow("capture") {
            tracing::warn!(suppressed, "capture: {why}; record dropped");
        }
    }
}
