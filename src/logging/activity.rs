//! Lines weir logs per unit of work (a finished file, a delivery). Past
//! `log.lines_per_minute` of a kind in a minute they are left out, and one
//! summary line says what the minute held (lines, rows, bytes); metrics
//! count every one. So log volume follows configuration, not how many
//! tags clients send: 10,000 tags finish 10,000 files.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Suppressed;

/// Lines of each kind logged a minute when the config says nothing.
pub(crate) const DEFAULT_LINES_PER_MINUTE: u32 = 60;

static LINES_PER_MINUTE: AtomicU32 = AtomicU32::new(DEFAULT_LINES_PER_MINUTE);

const MINUTE: Duration = Duration::from_secs(60);

/// Sets `log.lines_per_minute` for the whole process (start and reload).
pub(crate) fn set_lines_per_minute(n: u32) {
    LINES_PER_MINUTE.store(n, Ordering::Relaxed);
}

/// What the lines left out in a minute were about.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeftOut {
    pub(crate) lines: u64,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// One kind of per-unit line and its minute.
///
/// # Memory
/// A few counters; nothing grows with the lines left out.
pub(crate) struct Activity {
    kind: &'static str,
    /// What the summary names besides the kind (a sink), if anything.
    scope: String,
    suppressed: Suppressed,
    started: Option<Instant>,
    logged: u32,
    left_out: LeftOut,
}

impl Activity {
    /// `kind` names the lines in the summary and in
    /// `weir_log_suppressed_total{kind}`.
    pub(crate) fn new(kind: &'static str, suppressed: Suppressed) -> Self {
        Self {
            kind,
            scope: String::new(),
            suppressed,
            started: None,
            logged: 0,
            left_out: LeftOut::default(),
        }
    }

    /// The same, its summary naming `scope` (a sink's name).
    pub(crate) fn scoped(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }

    /// Whether this unit's line is logged; if not, its rows and bytes go
    /// into the minute's summary.
    pub(crate) fn admit(&mut self, rows: u64, bytes: u64) -> bool {
        self.admit_at(Instant::now(), rows, bytes)
    }

    /// Ends a minute that is over, logging its summary (also done by the
    /// next [`Activity::admit`]; a tick says it when no line follows).
    pub(crate) fn tick(&mut self) {
        self.tick_at(Instant::now());
    }

    fn admit_at(&mut self, now: Instant, rows: u64, bytes: u64) -> bool {
        self.tick_at(now);
        if self.logged < LINES_PER_MINUTE.load(Ordering::Relaxed) {
            self.logged += 1;
            return true;
        }
        self.left_out.lines += 1;
        self.left_out.rows += rows;
        self.left_out.bytes += bytes;
        self.suppressed.count(self.kind);
        false
    }

    /// Starts a new minute if the last one is over; returns and logs what
    /// that minute left out.
    fn tick_at(&mut self, now: Instant) -> Option<LeftOut> {
        match self.started {
            Some(t) if now.duration_since(t) < MINUTE => return None,
            None => {
                self.started = Some(now);
                return None;
            }
            Some(_) => {}
        }
        self.started = Some(now);
        self.logged = 0;
        let left = std::mem::take(&mut self.left_out);
        if left.lines == 0 {
            return None;
        }
        tracing::info!(
            kind = self.kind,
            scope = self.scope,
            left_out = left.lines,
            rows = left.rows,
            bytes = left.bytes,
            lines_per_minute = LINES_PER_MINUTE.load(Ordering::Relaxed),
            "lines past log.lines_per_minute in the last minute, summed (metrics count each)"
        );
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_rate_lines_are_summed_once_a_minute() {
        let metrics = crate::metrics::Metrics::new();
        let mut a = Activity::new("finished_file", metrics.suppressed.clone());
        let t0 = Instant::now();
        let limit = DEFAULT_LINES_PER_MINUTE as usize;
        let logged = (0..limit + 40).filter(|_| a.admit_at(t0, 10, 100)).count();
        assert_eq!(logged, limit);
        assert_eq!(
            a.tick_at(t0 + Duration::from_secs(59)),
            None,
            "minute not over"
        );
        assert_eq!(
            a.tick_at(t0 + MINUTE),
            Some(LeftOut {
                lines: 40,
                rows: 400,
                bytes: 4_000
            })
        );
        // A new minute logs again; a quiet one says nothing.
        assert!(a.admit_at(t0 + MINUTE, 1, 1));
        assert_eq!(a.tick_at(t0 + MINUTE * 3), None);
    }
}
