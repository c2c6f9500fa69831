//! The roller thread: WAL records in, finished files out.
//!
//! Each record's events are sorted into *outputs* (an open Parquet file per
//! route, group and [`Slot`], an open part per [record
//! sink](crate::sink::records) and group, such as Treasure Data's
//! `db.table`), appended, and each output is finished at its deadline, or early
//! when `roll.max_open_files` or `roll.max_buffer_bytes` is reached. A
//! finished output goes to the outbox with a manifest saying which WAL
//! records it covers, so replay skips what is already in a finished file.
//!
//! # Failures
//! A record that cannot be turned into files for a reason in the data (or a
//! bug) is quarantined (see [`super::quarantine`]); a disk error is retried
//! with backoff. Either way the roller throws its open files away and
//! rebuilds them from the WAL, as a restart would, and carries on: no input
//! makes it exit, or fail again at the next start.
//!
//! # Files
//! This file: the thread and its loop over WAL records and ticks. The
//! parts it owns, each with its own state that no other part touches:
//! [`outputs`] (the open outputs and what they hold together), [`coverage`]
//! (what finished files and previews hold), [`publish`] (the release mark
//! and the lag), [`destinations`] (a tag's route and the sinks behind it),
//! [`unrouted`] (events no route takes), [`describe`] (a closed output's
//! manifest, a pure function). The jobs: [`write`] (records into outputs, the memory
//! bound), [`output`] (what an output is, its identity, opening),
//! [`finish`] (footer, outbox commit), [`preview`] (freshness previews),
//! [`recovery`] (rebuild, retry and quarantine). Jobs touch the parts
//! only through their methods (their fields are private to their files).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::encoder::Encoder;
use super::quarantine::Quarantine;
use super::schema::RouteSchema;
use super::window::{Slot, Window};
use super::writer::{ClosedFile, PartitionWriter, WriteError};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::outbox::{unhex, FileKind, Manifest, OutboxDir, PreviewSlot, Slot as ManifestSlot};
use crate::router::FileGrouping;
use crate::sink::RecordPart;
use crate::status::StageStatus;
use crate::wal::WalRecord;

mod coverage;
mod describe;
mod destinations;
mod finish;
mod open;
mod output;
mod outputs;
mod preview;
mod publish;
mod recovery;
mod unrouted;
mod write;

use output::{FileSlot, Output, OutputKey, Why};
use recovery::Failure;

/// Most files finished as one group (one commit, three file-system syncs).
const GROUP_FILES: usize = 256;

/// Channels and stores the roller works with.
pub(crate) struct RollerLinks {
    /// How far the WAL is durable: the roller reads up to there.
    pub durable: Arc<crate::wal::Durable>,
    /// Published: the WAL sequence the roller reads next.
    pub(crate) position: Arc<std::sync::atomic::AtomicU64>,
    /// Lowest WAL sequence still needed (published after every message).
    pub release: Arc<watch::Sender<u64>>,
    /// Lowest WAL sequence still on disk: coverage below it is forgotten.
    pub(crate) wal_oldest: watch::Receiver<u64>,
    /// Finished files, for delivery.
    pub(crate) finished: mpsc::Sender<Manifest>,
    pub(crate) outbox: OutboxDir,
    /// Manifests already in the outbox at start.
    pub(crate) initial: Vec<Manifest>,
    pub(crate) metrics: Metrics,
    /// The outbox backlog; the roller waits while it is over its limit.
    pub(crate) backlog: Arc<crate::outbox::Backlog>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Set before shutdown for a drain: when the WAL closes, finish every
    /// open file instead of leaving it for the next start.
    pub(crate) drain: Arc<std::sync::atomic::AtomicBool>,
    /// Why the roller is failing, for `/readyz` (none when it is not).
    pub(crate) status: Arc<StageStatus>,
}

/// Starts the roller thread. It returns when the WAL closes its output
/// (or, for a drain, with an error if a file could not be finished).
pub(crate) fn start(
    config: Arc<Config>,
    links: RollerLinks,
) -> std::io::Result<std::thread::JoinHandle<Result<(), RollerError>>> {
    let open_dir = config.data_dir.join("roll").join("open");
    // Files left open by a previous run are rebuilt from the WAL.
    if open_dir.exists() {
        std::fs::remove_dir_all(&open_dir)?;
    }
    std::fs::create_dir_all(&open_dir)?;
    let quarantine = Quarantine::open(config.data_dir.join("deadletter").join("roller"))?;
    for r in &config.routes {
        links
            .metrics
            .roll
            .declare_columns(&r.name, r.columns.iter().map(|(c, _)| c.as_str()));
    }
    let schemas = config
        .routes
        .iter()
        .map(|r| RouteSchema::new(r, &config.roll, config.route_has_table(r)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let encoder = Encoder::start()?;
    // Record sinks' part keys carry it with the WAL position: random at
    // every start, so no part made now shares a key with one made by an
    // earlier run of this data_dir (lost, restored from a snapshot, or
    // cloned with its node_id). Parts finished before keep the key their
    // manifest holds, so a resent part is still recognised.
    let run_id = format!("{:032x}", rand::random::<u128>());
    std::thread::Builder::new()
        .name("weir-roller".into())
        .spawn(move || {
            crate::priority::run_behind_acks();
            let mut roller = Roller::new(config, schemas, open_dir, quarantine, links, encoder);
            roller.run_id = run_id;
            roller.run()
        })
}

/// Why the roller stopped on its own (anything else it retries).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RollerError {
    /// A drain could not finish a file; the WAL keeps its events.
    #[error("drain: cannot finish a file: {0}")]
    Drain(WriteError),
}

struct Roller {
    config: Arc<Config>,
    schemas: Vec<RouteSchema>,
    open_dir: PathBuf,
    wal_dir: PathBuf,
    links: RollerLinks,
    window: Window,
    quarantine: Quarantine,
    /// The open outputs and what they hold together.
    outputs: outputs::Outputs,
    /// What finished files and previews hold.
    coverage: coverage::Coverage,
    /// Where each tag's events go.
    destinations: destinations::Destinations,
    now_ms: i64,
    /// Sequence of the last record fully processed.
    last_seq: Option<u64>,
    /// The release mark and the lag, as published.
    publish: publish::Publish,
    /// Events no route takes: counted and reported.
    unrouted: unrouted::Unrouted,
    /// "finished file" lines, bounded by `log.lines_per_minute`.
    finished_lines: crate::logging::Activity,
    /// Set when shutdown arrives while waiting to retry.
    stopping: bool,
    /// Where the roller reads the WAL.
    tail: crate::wal::Tail,
    /// When previews are next written (`roll.freshness`).
    previews: preview::PreviewClock,
    /// Encodes the record batches of every open Parquet file.
    encoder: Encoder,
    /// This start's random id, for record sinks' part keys.
    run_id: String,
}

impl Roller {
    fn new(
        config: Arc<Config>,
        schemas: Vec<RouteSchema>,
        open_dir: PathBuf,
        quarantine: Quarantine,
        mut links: RollerLinks,
        encoder: Encoder,
    ) -> Self {
        let roll = &config.roll;
        let window = Window {
            period_secs: roll.period.0.as_secs(),
            grace_ms: roll.grace.0.as_millis() as i64,
            max_future_ms: roll.max_future.0.as_millis() as i64,
            max_past_ms: roll.max_past.0.as_millis() as i64,
        };
        let freshness_ms = roll.freshness.map(|f| f.0.as_millis() as i64);
        let initial = std::mem::take(&mut links.initial);
        let wal_dir = config.data_dir.join("wal");
        let mut r = Self {
            wal_dir: wal_dir.clone(),
            destinations: destinations::Destinations::new(&config),
            window,
            quarantine,
            outputs: outputs::Outputs::default(),
            coverage: coverage::Coverage::default(),
            now_ms: i64::MIN,
            last_seq: None,
            publish: publish::Publish::new(links.release.clone(), crate::wal::now_ms()),
            unrouted: unrouted::Unrouted::new(),
            finished_lines: crate::logging::Activity::new(
                "finished_file",
                links.metrics.suppressed.clone(),
            ),
            schemas,
            open_dir,
            config,
            tail: crate::wal::Tail::new(&wal_dir, 0),
            previews: preview::PreviewClock::new(freshness_ms),
            encoder,
            links,
            stopping: false,
            run_id: String::new(),
        };
        for m in &initial {
            r.remember_finished(m);
        }
        r
    }

    /// Reads the WAL behind the writer until weir stops (or, for a drain,
    /// until the writer has stopped and every durable record is read).
    fn run(&mut self) -> Result<(), RollerError> {
        let drain = self.links.drain.clone();
        let draining = || drain.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            let mark = self.links.durable.get();
            if !self.wait_for_backlog() {
                return Ok(());
            }
            let mut read = 0u32;
            loop {
                if self.stopping || (*self.links.shutdown.borrow() && !draining()) {
                    // The rest stays in the WAL for the next start.
                    return Ok(());
                }
                match self.tail.next(mark.seq) {
                    Ok(Some(r)) => {
                        self.publish.read(r.arrival_ms);
                        self.handle(r);
                        self.links
                            .position
                            .store(self.tail.position(), std::sync::atomic::Ordering::Relaxed);
                        read += 1;
                        if read.is_multiple_of(256) {
                            self.publish_release();
                            self.report_lag();
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let through = self.last_seq.unwrap_or(0);
                        self.recover(Failure::File(WriteError::Io(e)), None, through);
                        break;
                    }
                }
            }
            if let Some(s) = self.tail.take_skipped() {
                self.links.metrics.wal.corrupt(
                    s.records,
                    &format_args!("WAL records unreadable ({}); skipped", s.why),
                );
            }
            let caught_up = self.tail.position() >= mark.seq;
            if caught_up {
                // Every record still to come arrives at or after the mark's
                // stamp: the clock may move on (period ends, deadlines).
                self.tick(mark.stamp_ms);
            }
            self.publish_release();
            self.report_lag();
            if self.stopping {
                return Ok(());
            }
            if caught_up && mark.closed {
                break;
            }
            if caught_up {
                self.links
                    .durable
                    .wait_change(mark, std::time::Duration::from_millis(250));
            }
        }
        if self.links.drain.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(
                open_files = self.outputs.len(),
                "drain: finishing every open file"
            );
            let covered = self.last_seq.unwrap_or(0);
            let keys = self.outputs.keys_by_first_seq(|_| true);
            for group in keys.chunks(GROUP_FILES) {
                if let Err(e) = self.finish_outputs(group, Why::Drain, covered) {
                    self.links.metrics.roll.drain_failed(&e);
                    return Err(RollerError::Drain(e));
                }
            }
            self.publish_release();
        }
        Ok(())
    }

    fn handle(&mut self, r: WalRecord) {
        if self.quarantine.contains(r.seq) {
            self.last_seq = Some(r.seq);
            return;
        }
        if let Err(f) = self.process_guarded(&r) {
            let through = r.seq;
            self.recover(f, Some(Box::new(r)), through);
        }
    }

    fn tick(&mut self, now_ms: i64) {
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| self.advance(now_ms))) {
            Ok(r) => r.map_err(Failure::File),
            Err(_) => Err(Failure::Panic("while finishing files".into())),
        };
        if let Err(f) = result {
            let through = self.last_seq.unwrap_or(0);
            self.recover(f, None, through);
        }
        if self.links.wal_oldest.has_changed().unwrap_or(false) {
            let oldest = *self.links.wal_oldest.borrow_and_update();
            self.coverage.forget_below(oldest);
            self.quarantine.forget_below(oldest);
        }
        self.report_gauges();
        self.destinations.trim();
    }

    /// How far behind the writer the roller is, for the metrics: against
    /// the durable mark now, not the one this pass reads to (which the
    /// roller has just reached, so the lag would read 0 under load).
    /// The seconds are those of the oldest unread record at most: since the
    /// later of the last record read and the last time nothing was unread
    /// (after a restart with a backlog, since the start: a lower bound).
    fn report_lag(&mut self) {
        let durable_seq = self.links.durable.get().seq;
        let behind = durable_seq.saturating_sub(self.tail.position());
        self.publish.measure_lag(behind, crate::wal::now_ms());
        self.report_gauges();
    }

    /// Waits while the outbox backlog is over its limit (backpressure: the
    /// WAL's backlog grows, then connections stop reading).
    /// Returns false if weir is shutting down meanwhile; the WAL keeps what
    /// was not processed.
    fn wait_for_backlog(&mut self) -> bool {
        if !self.links.backlog.is_over() {
            return true;
        }
        self.links.backlog.paused(true);
        // Resume only below the low-water mark, so weir does not flap
        // between paused and running with every file delivered.
        while self.links.backlog.bytes() > self.links.backlog.low_water() {
            if *self.links.shutdown.borrow() {
                return false;
            }
            self.report_lag();
            std::thread::sleep(Duration::from_millis(200));
        }
        self.links.backlog.paused(false);
        true
    }

    fn publish_release(&mut self) {
        let oldest = self.outputs.oldest_first_seq();
        self.publish.release(oldest, self.last_seq);
    }

    /// Moves the clock and finishes every output whose deadline passed.
    fn advance(&mut self, now_ms: i64) -> Result<(), WriteError> {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        self.unrouted.maybe_summary(&self.links.metrics.roll);
        self.finished_lines.tick();
        if self.previews.due(self.now_ms) {
            self.preview_all()?;
            self.previews.written(self.now_ms);
        }
        if !self.outputs.any_due(self.now_ms) {
            return Ok(());
        }
        let now = self.now_ms;
        let covered = self.last_seq.unwrap_or(0);
        let keys = self.outputs.keys_by_first_seq(|o| o.deadline_ms <= now);
        for group in keys.chunks(GROUP_FILES) {
            self.finish_outputs(group, Why::Deadline, covered)?;
        }
        self.outputs.recompute_deadline();
        Ok(())
    }

    fn report_gauges(&self) {
        self.links.metrics.roll.report(crate::metrics::RollGauges {
            open_files: self.outputs.len(),
            buffer_bytes: self.outputs.memory(),
            buffered_rows: self.outputs.buffered_rows() as u64,
            coverage_entries: self.coverage.entries(),
            lag_records: self.publish.lag().0,
            lag_seconds: self.publish.lag().1,
        });
    }
}
