//! The outbox's levels: what waits for each sink (files, bytes, how long
//! the oldest has waited), the backlog and what retention keeps. Delivery
//! owns the queues, so it keeps these and reports them in one call after
//! every change; nothing else sets the outbox's gauges.
//!
//! # Memory
//! One [`Waiting`] per configured sink.

use std::collections::BTreeMap;

use super::{Backlog, Retention};
use crate::metrics::{Metrics, OutboxGauges, Waiting};

pub(super) struct Levels {
    waiting: BTreeMap<String, Waiting>,
}

impl Levels {
    /// Every sink at zero (its series exist from the start).
    pub(super) fn new<'a>(sinks: impl Iterator<Item = &'a String>) -> Self {
        Self {
            waiting: sinks.map(|s| (s.clone(), Waiting::default())).collect(),
        }
    }

    /// A file of `bytes` now waits for `sink`.
    pub(super) fn waits(&mut self, sink: &str, bytes: u64) {
        if let Some(w) = self.waiting.get_mut(sink) {
            w.files += 1;
            w.bytes += bytes;
        }
    }

    /// `sink` has taken (or dead-lettered) a file of `bytes`.
    pub(super) fn taken(&mut self, sink: &str, bytes: u64) {
        if let Some(w) = self.waiting.get_mut(sink) {
            w.files = w.files.saturating_sub(1);
            w.bytes = w.bytes.saturating_sub(bytes);
            if w.files == 0 {
                // Nothing waits: no age to wait for the next count.
                w.oldest_age_secs = 0;
            }
        }
    }

    /// How long each sink's oldest waiting file has waited at `now_ms`;
    /// `finished_at` says when a sink's oldest was finished (`None`: no
    /// file waits for it).
    pub(super) fn ages(&mut self, finished_at: impl Fn(&str) -> Option<i64>, now_ms: i64) {
        for (sink, w) in &mut self.waiting {
            w.oldest_age_secs = finished_at(sink).map_or(0, |t| (now_ms - t).max(0) / 1000);
        }
    }

    pub(super) fn report(
        &self,
        metrics: &Metrics,
        backlog: &Backlog,
        retention: Option<&Retention>,
    ) {
        metrics.outbox.report(OutboxGauges {
            waiting: &self.waiting,
            backlog_bytes: backlog.bytes(),
            retained: retention.map(Retention::totals),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_files_are_counted_until_taken_and_reported_together() {
        let metrics = Metrics::new();
        let backlog = Backlog::new(1 << 30, metrics.clone());
        let sinks = ["a".to_string(), "b".to_string()];
        let mut levels = Levels::new(sinks.iter());
        levels.report(&metrics, &backlog, None);
        assert_eq!(metrics.value("weir_outbox_files", &[("sink", "b")]), 0.0);
        levels.waits("a", 100);
        levels.waits("a", 50);
        levels.waits("b", 100);
        levels.waits("gone", 7);
        backlog.add(150);
        levels.taken("b", 100);
        levels.ages(|s| (s == "a").then_some(1_000), 61_500);
        levels.report(&metrics, &backlog, None);
        assert_eq!(metrics.value("weir_outbox_files", &[("sink", "a")]), 2.0);
        assert_eq!(metrics.value("weir_outbox_bytes", &[("sink", "a")]), 150.0);
        assert_eq!(metrics.value("weir_outbox_files", &[("sink", "b")]), 0.0);
        assert_eq!(
            metrics.value("weir_outbox_oldest_age_seconds", &[("sink", "a")]),
            60.0
        );
        assert_eq!(metrics.value("weir_outbox_backlog_bytes", &[]), 150.0);
        levels.taken("b", 100);
        levels.report(&metrics, &backlog, None);
        assert_eq!(
            metrics.value("weir_outbox_files", &[("sink", "b")]),
            0.0,
            "a repeated take never goes below zero"
        );
    }
}
