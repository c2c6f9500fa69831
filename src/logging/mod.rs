//! Log output (text or JSON), rate limiting of repeated warnings, and
//! per-unit lines bounded per minute ([`Activity`]).
//!
//! A misbehaving fleet can produce the same warning thousands of times a
//! second (one per bad connection). [`allow`] lets the first few of each kind
//! through per second, counts the rest in `weir_log_suppressed_total`, and
//! reports how many were suppressed on the next line that is logged.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

mod activity;
pub(crate) mod config;
pub(crate) use activity::{set_lines_per_minute, Activity};

/// Lines of one kind logged per window before suppression starts.
const BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

static WINDOWS: Mutex<Option<HashMap<&'static str, Window>>> = Mutex::new(None);

/// Whether a warning of `kind` may be logged now. `Some(n)`: log it, and say
/// `n` similar lines were suppressed since the last one; `None`: skip it.
pub(crate) fn allow(
    kind: &'static str,
    suppressed_total: &prometheus::IntCounterVec,
) -> Option<u64> {
    allow_within(kind, WINDOW, suppressed_total)
}

/// [`allow`] with its own window: [`BURST`] lines of `kind` per `window`.
pub(crate) fn allow_within(
    kind: &'static str,
    window: Duration,
    suppressed_total: &prometheus::IntCounterVec,
) -> Option<u64> {
    let mut guard = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let w = map.entry(kind).or_insert(Window {
        started: now,
        logged: 0,
        suppressed: 0,
    });
    if now.duration_since(w.started) >= window {
        w.started = now;
        w.logged = 0;
    }
    if w.logged < BURST {
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    } else {
        w.suppressed += 1;
        suppressed_total.with_label_values(&[kind]).inc();
        None
    }
}

/// Output format of the process log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Targets kept at warn whatever `WEIR_LOG` says: PostgreSQL's notices
/// ("relation ... already exists, skipping" at every start of a catalog),
/// and object_store's line for each HTTP retry inside one upload (a store
/// that is down made half of all log lines; weir's own rate-limited
/// warning already says the upload failed and why).
const QUIET: [&str; 2] = [
    "sqlx::postgres::notice=warn",
    "object_store::client::retry=warn",
];

/// Installs the global subscriber. The level comes from `WEIR_LOG`
/// (`info` by default; e.g. `WEIR_LOG=weir=debug`).
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    for quiet in QUIET {
        filter = filter.add_directive(quiet.parse().unwrap_or_default());
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The rate limit of repeated warnings (see [`allow`]); what
/// it holds back counts in `weir_log_suppressed_total`.
#[derive(Clone)]
pub(crate) struct Suppressed(prometheus::IntCounterVec);

impl Suppressed {
    /// Over `weir_log_suppressed_total{kind}`.
    pub(crate) fn new(counter: prometheus::IntCounterVec) -> Self {
        Self(counter)
    }

    /// Whether a warning of `kind` may be logged now: `Some(n)` (log it,
    /// saying `n` similar lines were suppressed since) or `None`.
    pub(crate) fn allow(&self, kind: &'static str) -> Option<u64> {
        allow(kind, &self.0)
    }

    /// [`Suppressed::allow`] for a warning that comes once per unit of work
    /// (a file finished early): 10 a minute, not 10 a second.
    pub(crate) fn allow_per_minute(&self, kind: &'static str) -> Option<u64> {
        allow_within(kind, std::time::Duration::from_secs(60), &self.0)
    }

    /// Counts one line of `kind` left out (see [`Activity`]).
    pub(crate) fn count(&self, kind: &'static str) {
        self.0.with_label_values(&[kind]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quiet_target_is_a_valid_directive() {
        for quiet in QUIET {
            assert!(
                quiet
                    .parse::<tracing_subscriber::filter::Directive>()
                    .is_ok(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn bursts_pass_then_are_counted() {
        let total =
            prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["kind"]).unwrap();
        let allowed = (0..25)
            .filter(|_| allow("test_kind", &total).is_some())
            .count();
        assert_eq!(allowed, BURST as usize);
        assert_eq!(total.with_label_values(&["test_kind"]).get(), 15);
    }
}
