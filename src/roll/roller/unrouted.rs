//! Events whose tag matches no route, reported so none is dropped in
//! silence: each tag the first time it is seen (up to [`REMEMBERED`] tags;
//! later new tags are only counted), then one summary a minute while such
//! events keep coming. Counts stay exact in `weir_roll_unrouted_events_total`.
//!
//! # Memory
//! At most [`REMEMBERED`] tags of at most [`TAG_BYTES`] bytes each.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::metrics::RollMetrics;

/// Distinct tags remembered for first-sight lines.
const REMEMBERED: usize = 1_000;
/// Bytes of a tag kept (longer tags are cut for the log).
const TAG_BYTES: usize = 256;
/// How often the summary is logged while unrouted events arrive.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Unrouted {
    /// What `unmatched` does with them, for the log lines.
    policy: &'static str,
    seen: HashSet<Vec<u8>>,
    /// Since the last summary: events, and tags first seen.
    events: u64,
    new_tags: u64,
    since: Instant,
}

impl Unrouted {
    pub(super) fn new() -> Self {
        Self {
            policy: "dropped (unmatched = \"drop\")",
            seen: HashSet::new(),
            events: 0,
            new_tags: 0,
            since: Instant::now(),
        }
    }

    /// `n` events of `tag` matched no route.
    pub(super) fn record(&mut self, tag: &[u8], n: u64, metrics: &RollMetrics) {
        metrics.unrouted(n);
        self.events += n;
        let key = &tag[..tag.len().min(TAG_BYTES)];
        if self.seen.len() < REMEMBERED && !self.seen.contains(key) {
            self.seen.insert(key.to_vec());
            self.new_tags += 1;
            metrics.unrouted_tag(&String::from_utf8_lossy(key), self.policy);
        }
        self.maybe_summary(metrics);
    }

    /// Logs the summary of the last minute, if one is due.
    pub(super) fn maybe_summary(&mut self, metrics: &RollMetrics) {
        if self.events > 0 && self.since.elapsed() >= SUMMARY_EVERY {
            metrics.unrouted_summary(
                self.events,
                self.new_tags,
                self.since.elapsed(),
                self.policy,
            );
            self.events = 0;
            self.new_tags = 0;
            self.since = Instant::now();
        }
    }
}

impl Default for Unrouted {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_counts_and_tags_are_remembered_within_the_bound() {
        let m = crate::metrics::Metrics::new();
        let mut u = Unrouted::new();
        for i in 0..5_000u32 {
            u.record(format!("t{}", i % 2_000).as_bytes(), 3, &m.roll);
        }
        assert_eq!(m.value("weir_roll_unrouted_events_total", &[]), 15_000.0);
        assert_eq!(u.seen.len(), REMEMBERED);
        u.record(&[b'x'; 10_000], 1, &m.roll);
        assert!(u.seen.iter().all(|t| t.len() <= TAG_BYTES));
    }
}
