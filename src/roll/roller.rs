//! The roller thread: WAL records in, finished files out.
//!
//! Each record's events are sorted into *outputs* (an open Parquet file per
//! route, group and [`Slot`], an open Treasure Data part per TD sink and
//! table), appended, and each output is finished at its deadline, or early
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

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::encoder::Encoder;
use super::quarantine::Quarantine;
use super::schema::RouteSchema;
use super::td_part::TdPartWriter;
use super::window::{Slot, Window};
use super::writer::{PartitionWriter, WriteError};
use crate::backoff::Backoff;
use crate::config::{Config, FileGrouping, TdSinkConfig};
use crate::event::Event;
use crate::health::StageStatus;
use crate::metrics::Metrics;
use crate::outbox::manifest::{hex, unhex, FileKind, PreviewSlot, Slot as ManifestSlot, VERSION};
use crate::outbox::{Manifest, OutboxDir};
use crate::sink::key::{sink_key, FileName, KeyParts, PreviewOf};
use crate::wal::WalRecord;

/// A late or outside file stays open at least this long, so stragglers
/// share a file.
const MIN_SHORT_WINDOW_MS: i64 = 60_000;

/// Memory of an open Treasure Data part before any record: the gzip
/// compressor's state and the write buffer.
const TD_PART_OVERHEAD: usize = 320 << 10;

/// Tags whose route is remembered; past it the cache starts over, so the
/// number of tags clients choose cannot grow it.
const ROUTE_CACHE: usize = 65_536;

/// Distinct past periods one record's late events may open late files
/// for; its late events in other periods go to the outside file.
const MAX_LATE_PERIODS_PER_RECORD: usize = 4;

/// A file buffering less than this is finished early rather than flushed
/// when memory runs short: tiny row groups would make a poor Parquet file.
const MIN_FLUSH_BYTES: usize = 1 << 20;

/// Longest pause between retries after a disk error.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Channels and stores the roller works with.
pub struct RollerLinks {
    /// How far the WAL is durable: the roller reads up to there.
    pub durable: Arc<crate::wal::tail::Durable>,
    /// Published: the WAL sequence the roller reads next.
    pub position: Arc<std::sync::atomic::AtomicU64>,
    /// Lowest WAL sequence still needed (published after every message).
    pub release: watch::Sender<u64>,
    /// Lowest WAL sequence still on disk: coverage below it is forgotten.
    pub wal_oldest: watch::Receiver<u64>,
    /// Finished files, for delivery.
    pub finished: mpsc::Sender<Manifest>,
    pub outbox: OutboxDir,
    /// Manifests already in the outbox at start.
    pub initial: Vec<Manifest>,
    pub metrics: Metrics,
    /// The outbox backlog; the roller waits while it is over its limit.
    pub backlog: Arc<crate::outbox::Backlog>,
    pub shutdown: watch::Receiver<bool>,
    /// Set before shutdown for a drain: when the WAL closes, finish every
    /// open file instead of leaving it for the next start.
    pub drain: Arc<std::sync::atomic::AtomicBool>,
    /// Why the roller is failing, for `/readyz` (none when it is not).
    pub status: Arc<StageStatus>,
}

/// Starts the roller thread. It returns when the WAL closes its output
/// (or, for a drain, with an error if a file could not be finished).
pub fn start(
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
    let schemas = config
        .routes
        .iter()
        .map(|r| RouteSchema::new(r, &config.roll))
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let encoder = Encoder::start()?;
    std::thread::Builder::new()
        .name("weir-roller".into())
        .spawn(move || {
            crate::priority::run_behind_acks();
            let mut roller = Roller::new(config, schemas, open_dir, quarantine, links, encoder);
            roller.run()
        })
}

/// Why the roller stopped on its own (anything else it retries).
#[derive(Debug, thiserror::Error)]
pub enum RollerError {
    /// A drain could not finish a file; the WAL keeps its events.
    #[error("drain: cannot finish a file: {0}")]
    Drain(WriteError),
}

/// What an output is: also the key under which replay coverage is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OutputKey {
    /// A Parquet file of one route and group (tag, or route name).
    File {
        route: usize,
        group: Arc<[u8]>,
        slot: FileSlot,
    },
    /// A Treasure Data part of one TD sink and `db.table`.
    Td { target: usize, table: Arc<str> },
}

/// Coverage is kept under 16 bytes of a hash of the output's identity.
type CoverageKey = [u8; 16];

/// [`Slot`] without the outside direction: one outside file per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileSlot {
    Period(i64),
    Late(i64),
    Outside,
}

impl From<Slot> for FileSlot {
    fn from(s: Slot) -> Self {
        match s {
            Slot::Period(p) => FileSlot::Period(p),
            Slot::Late(p) => FileSlot::Late(p),
            Slot::Outside(_) => FileSlot::Outside,
        }
    }
}

enum Output {
    Parquet(Box<PartitionWriter>),
    Td(Box<TdPartWriter>),
}

impl Output {
    fn memory(&self) -> usize {
        match self {
            Output::Parquet(w) => w.memory(),
            Output::Td(_) => TD_PART_OVERHEAD,
        }
    }

    fn buffered_rows(&self) -> usize {
        match self {
            Output::Parquet(w) => w.buffered_rows(),
            Output::Td(_) => 0,
        }
    }
}

/// One open output.
struct Open {
    output: Output,
    path: PathBuf,
    first_seq: u64,
    deadline_ms: i64,
    /// The period the file is filed under (an outside file's: when it opened).
    period_start: i64,
    /// Last `output.memory()` counted in the roller's total.
    memory: usize,
    /// Last `output.buffered_rows()` counted likewise.
    rows: usize,
    /// Write clock at the last append, for least-recently-written eviction.
    last_write: u64,
    /// While a preview is being collected (`roll.freshness`): the first
    /// WAL record in it, and the last.
    preview: Option<(u64, u64)>,
}

/// Why an output is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Its deadline passed.
    Deadline,
    /// A Treasure Data part reached `max_part_bytes`.
    Full,
    /// Finished early to stay within a bound: `max_open_files` or `memory`.
    Early(&'static str),
    /// Finished early for a drain.
    Drain,
}

/// Something went wrong handling a record or a tick.
#[derive(Debug)]
enum Failure {
    /// Appending the record's own events failed.
    Record(WriteError),
    /// Finishing, flushing or creating a file failed.
    File(WriteError),
    /// Processing panicked.
    Panic(String),
}

impl Failure {
    /// Whether the cause lies in this record's data (or a bug it triggers)
    /// rather than in the disk.
    fn blames_record(&self) -> bool {
        match self {
            Failure::Record(e) => io_error(e).is_none(),
            Failure::Panic(_) => true,
            Failure::File(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Record(e) | Failure::File(e) => write!(f, "{e}"),
            Failure::Panic(m) => write!(f, "panic: {m}"),
        }
    }
}

/// The I/O error behind a write error, if it is one.
fn io_error(e: &WriteError) -> Option<&std::io::Error> {
    match e {
        WriteError::Io(e) => Some(e),
        WriteError::Parquet(parquet::errors::ParquetError::External(b)) => b.downcast_ref(),
        WriteError::Arrow(arrow_schema::ArrowError::IoError(_, e)) => Some(e),
        _ => None,
    }
}

/// A record's events bound for one output.
struct Write<'a> {
    key: OutputKey,
    events: Vec<Event<'a>>,
}

/// A Treasure Data sink the roller writes import parts for.
struct TdTarget {
    sink: String,
    cfg: TdSinkConfig,
}

/// Why a rebuild from the WAL stopped.
enum RebuildError {
    Io(std::io::Error),
    Failed(Failure, Box<WalRecord>),
}

impl From<std::io::Error> for RebuildError {
    fn from(e: std::io::Error) -> Self {
        RebuildError::Io(e)
    }
}

struct Roller {
    config: Arc<Config>,
    schemas: Vec<RouteSchema>,
    open_dir: PathBuf,
    wal_dir: PathBuf,
    links: RollerLinks,
    window: Window,
    quarantine: Quarantine,
    open: HashMap<OutputKey, Open>,
    /// Finished outputs: the WAL sequence each covers through. Pruned once
    /// the WAL no longer holds those records.
    covered: HashMap<CoverageKey, u64>,
    routes: HashMap<Vec<u8>, Option<usize>>,
    now_ms: i64,
    /// Earliest deadline among open outputs (i64::MAX when none).
    next_deadline_ms: i64,
    /// Sequence of the last record fully processed.
    last_seq: Option<u64>,
    /// The release mark last published (what the WAL keeps).
    published_mark: u64,
    memory: usize,
    buffered_rows: usize,
    write_clock: u64,
    td_targets: Vec<TdTarget>,
    /// TD targets of each route.
    route_td: Vec<Vec<usize>>,
    /// Whether each route has a sink that takes Parquet files.
    route_has_files: Vec<bool>,
    /// Set when shutdown arrives while waiting to retry.
    stopping: bool,
    /// Where the roller reads the WAL.
    tail: crate::wal::tail::Tail,
    /// Arrival of the last record read, for the lag metric.
    lag_arrival_ms: i64,
    /// Open outputs' previews: the WAL sequence each output's committed
    /// previews reach, so a replay does not preview those rows again.
    previewed: HashMap<CoverageKey, u64>,
    /// Sinks of each route that take previews (`fresh = true`).
    route_fresh: Vec<Vec<String>>,
    /// `roll.freshness` in ms, and when previews are next written.
    freshness_ms: Option<i64>,
    next_preview_ms: i64,
    /// Encodes the record batches of every open Parquet file.
    encoder: Encoder,
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
        let td_targets: Vec<TdTarget> = config
            .sinks
            .iter()
            .filter_map(|(name, s)| match s {
                crate::config::SinkConfig::Td(cfg) => Some(TdTarget {
                    sink: name.clone(),
                    cfg: cfg.clone(),
                }),
                _ => None,
            })
            .collect();
        let route_td = config
            .routes
            .iter()
            .map(|r| {
                td_targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| r.sinks.contains(&t.sink))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let route_has_files = config
            .routes
            .iter()
            .map(|r| {
                r.sinks
                    .iter()
                    .any(|s| !td_targets.iter().any(|t| &t.sink == s))
            })
            .collect();
        let route_fresh = config
            .routes
            .iter()
            .map(|r| {
                r.sinks
                    .iter()
                    .filter(|s| config.sinks.get(*s).is_some_and(|c| c.fresh()))
                    .cloned()
                    .collect()
            })
            .collect();
        let freshness_ms = roll.freshness.map(|f| f.0.as_millis() as i64);
        let initial = std::mem::take(&mut links.initial);
        let wal_dir = config.data_dir.join("wal");
        let mut r = Self {
            wal_dir: wal_dir.clone(),
            td_targets,
            route_td,
            route_has_files,
            window,
            quarantine,
            open: HashMap::new(),
            covered: HashMap::new(),
            routes: HashMap::new(),
            now_ms: i64::MIN,
            next_deadline_ms: i64::MAX,
            last_seq: None,
            published_mark: 0,
            memory: 0,
            buffered_rows: 0,
            write_clock: 0,
            schemas,
            open_dir,
            config,
            tail: crate::wal::tail::Tail::new(&wal_dir, 0),
            lag_arrival_ms: 0,
            previewed: HashMap::new(),
            route_fresh,
            freshness_ms,
            next_preview_ms: i64::MIN,
            encoder,
            links,
            stopping: false,
        };
        for m in &initial {
            r.remember_finished(m);
        }
        r
    }

    /// Records a finished file's coverage, from a manifest of this run or
    /// the outbox at start.
    fn remember_finished(&mut self, m: &Manifest) {
        let Some(key) = self.key_of_manifest(m) else {
            tracing::warn!(
                id = m.id,
                route = m.route,
                "outbox file of a route or sink no longer configured; its events may be written again on replay"
            );
            return;
        };
        if m.kind == FileKind::Parquet && m.period_secs != self.window.period_secs {
            tracing::warn!(
                id = m.id,
                "manifest from a different roll.period; its events may be written again"
            );
        }
        let ck = self.coverage_key(&key);
        let map = if m.slot == ManifestSlot::Preview {
            &mut self.previewed
        } else {
            &mut self.covered
        };
        let e = map.entry(ck).or_insert(0);
        *e = (*e).max(m.covered_through);
    }

    fn key_of_manifest(&self, m: &Manifest) -> Option<OutputKey> {
        let group = unhex(&m.group_hex)?;
        if m.kind == FileKind::TdPart || m.slot == ManifestSlot::Td {
            let sink = m.keys.keys().next()?;
            let target = self.td_targets.iter().position(|t| &t.sink == sink)?;
            let table: Arc<str> = String::from_utf8(group).ok()?.into();
            return Some(OutputKey::Td { target, table });
        }
        let route = self.config.routes.iter().position(|r| r.name == m.route)?;
        let slot = match (m.slot, m.preview_of) {
            (ManifestSlot::Main | ManifestSlot::Part, _)
            | (ManifestSlot::Preview, Some((PreviewSlot::Period, _))) => {
                FileSlot::Period(m.period_start)
            }
            (ManifestSlot::Late, _) | (ManifestSlot::Preview, Some((PreviewSlot::Late, _))) => {
                FileSlot::Late(m.period_start)
            }
            (ManifestSlot::Outside, _)
            | (ManifestSlot::Preview, Some((PreviewSlot::Outside, _))) => FileSlot::Outside,
            (ManifestSlot::Td | ManifestSlot::Preview, _) => return None,
        };
        Some(OutputKey::File {
            route,
            group: group.into(),
            slot,
        })
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
                        self.lag_arrival_ms = r.arrival_ms;
                        self.handle(r);
                        self.links
                            .position
                            .store(self.tail.position(), std::sync::atomic::Ordering::Relaxed);
                        read += 1;
                        if read.is_multiple_of(256) {
                            self.publish_release();
                            self.report_lag(mark.seq);
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
            if self.tail.skipped > 0 {
                self.links
                    .metrics
                    .wal_corrupt_records
                    .inc_by(self.tail.skipped);
                tracing::error!(
                    records = self.tail.skipped,
                    "WAL records unreadable (damaged segment); skipped"
                );
                self.tail.skipped = 0;
            }
            let caught_up = self.tail.position() >= mark.seq;
            if caught_up {
                // Every record still to come arrives at or after the mark's
                // stamp: the clock may move on (period ends, deadlines).
                self.tick(mark.stamp_ms);
            }
            self.publish_release();
            self.report_lag(mark.seq);
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
                open_files = self.open.len(),
                "drain: finishing every open file"
            );
            let covered = self.last_seq.unwrap_or(0);
            for key in self.keys_by_first_seq(|_| true) {
                if let Err(e) = self.finish_output(&key, Why::Drain, covered) {
                    self.links.metrics.roll_errors.inc();
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
            self.covered.retain(|_, c| *c >= oldest);
            self.previewed.retain(|_, c| *c >= oldest);
            self.quarantine.forget_below(oldest);
        }
        self.links
            .metrics
            .roll_coverage_entries
            .set(self.covered.len() as i64);
        if self.routes.len() > ROUTE_CACHE {
            self.routes.clear();
        }
    }

    /// Processes a record; a panic becomes a [`Failure`].
    fn process_guarded(&mut self, r: &WalRecord) -> Result<(), Failure> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.on_record(r))) {
            Ok(result) => result,
            Err(panic) => Err(Failure::Panic(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into()),
            )),
        }
    }

    /// After a failure: quarantine the record if it is to blame, else wait
    /// (a disk error); then throw away the open files and rebuild them from
    /// the WAL through `through`, repeating until that succeeds.
    fn recover(&mut self, mut failure: Failure, mut record: Option<Box<WalRecord>>, through: u64) {
        let mut backoff = Backoff::new(Duration::from_millis(500), MAX_RETRY_DELAY);
        loop {
            self.links.metrics.roll_errors.inc();
            let mut wait = true;
            if let Some(r) = record.take().filter(|_| failure.blames_record()) {
                match self.quarantine.put(&r, &failure.to_string()) {
                    Ok(path) => {
                        wait = false;
                        self.links.metrics.roll_quarantined_records.inc();
                        tracing::error!(seq = r.seq, tag = %String::from_utf8_lossy(r.batch.tag()),
                            events = r.batch.len(), error = %failure, file = %path.display(),
                            "cannot turn a WAL record into files; moved it aside (replay it with `weir replay` once fixed)");
                    }
                    Err(e) => failure = Failure::File(WriteError::Io(e)),
                }
            }
            if wait {
                if let Some(suppressed) =
                    crate::logging::allow("roller_failing", &self.links.metrics)
                {
                    tracing::error!(error = %failure, retry_in_ms = backoff.peek().as_millis() as u64, suppressed,
                        "roller cannot write files; retrying (the WAL keeps every event)");
                }
                self.links
                    .status
                    .set(format!("roller cannot write files: {failure}"));
                if !self.sleep(backoff.next_delay()) {
                    self.stopping = true;
                    return;
                }
            }
            match self.rebuild(through) {
                Ok(()) => {
                    self.links.status.clear();
                    return;
                }
                Err(RebuildError::Io(e)) => failure = Failure::File(WriteError::Io(e)),
                Err(RebuildError::Failed(f, r)) => {
                    failure = f;
                    record = Some(r);
                }
            }
        }
    }

    /// Sleeps unless shutdown comes first; false on shutdown.
    fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if *self.links.shutdown.borrow() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
        true
    }

    /// Throws the open outputs away and processes the WAL again from the
    /// published release mark through `through`, as a restart would.
    fn rebuild(&mut self, through: u64) -> Result<(), RebuildError> {
        self.discard_open();
        let from = self.published_mark;
        self.last_seq = from.checked_sub(1);
        self.now_ms = i64::MIN;
        let wal_dir = self.wal_dir.clone();
        crate::wal::reader::for_each_in(&wal_dir, from, through, |r| {
            if self.quarantine.contains(r.seq) {
                self.last_seq = Some(r.seq);
                return Ok(());
            }
            self.process_guarded(&r)
                .map_err(|f| RebuildError::Failed(f, Box::new(r)))
        })?;
        self.last_seq = Some(through.max(self.last_seq.unwrap_or(0)));
        Ok(())
    }

    /// Drops every open output and its file.
    fn discard_open(&mut self) {
        for (_, o) in self.open.drain() {
            drop(o.output);
            let _ = std::fs::remove_file(&o.path);
        }
        self.memory = 0;
        self.buffered_rows = 0;
        self.next_deadline_ms = i64::MAX;
        self.report_gauges();
    }

    /// How far behind the writer the roller is, for the metrics.
    fn report_lag(&self, durable_seq: u64) {
        let m = &self.links.metrics;
        let behind = durable_seq.saturating_sub(self.tail.position());
        m.roll_lag_records.set(behind as i64);
        let secs = if behind == 0 {
            0.0
        } else {
            (crate::wal::now_ms() - self.lag_arrival_ms).max(0) as f64 / 1000.0
        };
        m.roll_lag_seconds.set(secs);
    }

    /// Waits while the outbox backlog is over its limit (backpressure: the
    /// WAL's backlog grows, then connections stop reading).
    /// Returns false if weir is shutting down meanwhile; the WAL keeps what
    /// was not processed.
    fn wait_for_backlog(&self) -> bool {
        if !self.links.backlog.is_over() {
            return true;
        }
        tracing::warn!(
            backlog_bytes = self.links.backlog.bytes(),
            limit = self.links.backlog.limit,
            "outbox backlog over outbox.max_backlog_bytes: pausing until sinks catch up"
        );
        self.links.metrics.outbox_blocked.set(1);
        // Resume only below the low-water mark, so weir does not flap
        // between paused and running with every file delivered.
        while self.links.backlog.bytes() > self.links.backlog.low_water() {
            if *self.links.shutdown.borrow() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.links.metrics.outbox_blocked.set(0);
        tracing::info!("outbox backlog under its limit again; resuming");
        true
    }

    fn publish_release(&mut self) {
        let mark = self
            .open
            .values()
            .map(|o| o.first_seq)
            .min()
            .or(self.last_seq.map(|s| s + 1))
            .unwrap_or(0);
        self.published_mark = mark;
        self.links.release.send_if_modified(|v| {
            let changed = *v != mark;
            *v = mark;
            changed
        });
    }

    /// Moves the clock and finishes every output whose deadline passed.
    fn advance(&mut self, now_ms: i64) -> Result<(), WriteError> {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        if let Some(every) = self.freshness_ms {
            if self.next_preview_ms == i64::MIN {
                self.next_preview_ms = self.now_ms.saturating_add(every);
            } else if self.now_ms >= self.next_preview_ms {
                self.preview_all()?;
                self.next_preview_ms = self.now_ms.saturating_add(every);
            }
        }
        if self.now_ms < self.next_deadline_ms {
            return Ok(());
        }
        let now = self.now_ms;
        let covered = self.last_seq.unwrap_or(0);
        for key in self.keys_by_first_seq(|o| o.deadline_ms <= now) {
            self.finish_output(&key, Why::Deadline, covered)?;
        }
        self.next_deadline_ms = self
            .open
            .values()
            .map(|o| o.deadline_ms)
            .min()
            .unwrap_or(i64::MAX);
        Ok(())
    }

    /// Keys of open outputs passing `pick`, oldest first (a stable order).
    fn keys_by_first_seq(&self, pick: impl Fn(&Open) -> bool) -> Vec<OutputKey> {
        let mut keys: Vec<(u64, i64, OutputKey)> = self
            .open
            .iter()
            .filter(|(_, o)| pick(o))
            .map(|(k, o)| (o.first_seq, o.period_start, k.clone()))
            .collect();
        keys.sort_by_key(|k| (k.0, k.1));
        keys.into_iter().map(|(_, _, k)| k).collect()
    }

    /// The fixed-size key under which an output's coverage is kept (the
    /// map holds one per finished file while the WAL holds its records,
    /// which a hostile client can make many).
    fn coverage_key(&self, key: &OutputKey) -> CoverageKey {
        let d = self.output_digest(key, 0);
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    }

    /// The stable digest naming an output (route, group, slot; or TD sink
    /// and table); an `outside` file's period is `outside_period`.
    fn output_digest(&self, key: &OutputKey, outside_period: i64) -> [u8; 32] {
        match key {
            OutputKey::File { route, group, slot } => {
                let (kind, p): (&[u8], i64) = match slot {
                    FileSlot::Period(p) => (b"period", *p),
                    FileSlot::Late(p) => (b"late", *p),
                    FileSlot::Outside => (b"outside", outside_period),
                };
                crate::ids::digest(&[
                    b"file",
                    self.config.routes[*route].name.as_bytes(),
                    group,
                    kind,
                    &p.to_le_bytes(),
                ])
            }
            OutputKey::Td { target, table } => crate::ids::digest(&[
                b"td",
                self.td_targets[*target].sink.as_bytes(),
                table.as_bytes(),
            ]),
        }
    }

    /// Whether record `seq`'s events for `key` are in a finished file.
    fn is_covered(&self, key: &OutputKey, seq: u64) -> bool {
        self.covered
            .get(&self.coverage_key(key))
            .is_some_and(|&c| seq <= c)
    }

    fn route_of(&mut self, tag: &[u8]) -> Option<usize> {
        if let Some(r) = self.routes.get(tag) {
            return *r;
        }
        let r = self.config.route_for(tag);
        self.routes.insert(tag.to_vec(), r);
        r
    }

    fn on_record(&mut self, r: &WalRecord) -> Result<(), Failure> {
        self.advance(r.arrival_ms).map_err(Failure::File)?;
        let tag = r.batch.tag();
        if crate::failpoint::value("roll.fail_tag").is_some_and(|t| t.as_bytes() == tag) {
            return Err(Failure::Record(WriteError::Injected));
        }
        #[cfg(test)]
        if std::env::var("WEIR_TEST_PANIC_TAG").is_ok_and(|t| t.as_bytes() == tag) {
            panic!("test panic for {}", String::from_utf8_lossy(tag));
        }
        let Some(route) = self.route_of(tag) else {
            self.links
                .metrics
                .roll_unrouted_events
                .inc_by(r.batch.len() as u64);
            self.last_seq = Some(r.seq);
            return Ok(());
        };
        let mut writes = self.plan(r, route);
        // Outputs already open first: then every output evicted while this
        // record opens new ones has all of this record's events it will
        // get, so it covers through this record (see `open_output`).
        writes.sort_by_key(|w| !self.open.contains_key(&w.key));
        let split = writes
            .iter()
            .position(|w| !self.open.contains_key(&w.key))
            .unwrap_or(writes.len());
        let m = self.links.metrics.clone();
        let mut rows = 0u64;
        for (i, w) in writes.iter().enumerate() {
            if i == split {
                self.enforce_memory(r.seq)?;
            }
            rows += self.write(r, w, tag)?;
            if i >= split {
                self.enforce_memory(r.seq)?;
            }
        }
        if split == writes.len() {
            self.enforce_memory(r.seq)?;
        }
        m.roll_rows.inc_by(rows);
        self.last_seq = Some(r.seq);
        self.report_gauges();
        Ok(())
    }

    /// Sorts a record's events into the outputs they go to, dropping
    /// (and counting) those already in a finished file.
    fn plan<'a>(&mut self, r: &'a WalRecord, route: usize) -> Vec<Write<'a>> {
        let m = self.links.metrics.clone();
        let mut writes = Vec::new();
        let tag = r.batch.tag();
        let mut skipped = 0u64;
        for &target in &self.route_td[route] {
            let (db, table) = crate::sink::td::names_for(tag, &self.td_targets[target].cfg);
            let key = OutputKey::Td {
                target,
                table: format!("{db}.{table}").into(),
            };
            if self.is_covered(&key, r.seq) {
                skipped += r.batch.len() as u64;
                continue;
            }
            writes.push(Write {
                key,
                events: r.batch.events().collect(),
            });
        }
        if self.route_has_files[route] {
            let group: Arc<[u8]> = match self.config.routes[route].files {
                FileGrouping::PerTag => tag.into(),
                FileGrouping::PerRoute => self.config.routes[route].name.as_bytes().into(),
            };
            let (mut late, mut past, mut future) = (0u64, 0u64, 0u64);
            let mut by_slot: Vec<(FileSlot, Vec<Event<'a>>)> = Vec::new();
            let mut index: HashMap<FileSlot, usize> = HashMap::new();
            let mut late_periods: Vec<i64> = Vec::new();
            for ev in r.batch.events() {
                let mut slot = self.window.slot(ev.time_ns, r.arrival_ms);
                // A request dated over many past periods (a wrong clock)
                // would make a late file per period: past a few, outside.
                if let Slot::Late(p) = slot {
                    if !late_periods.contains(&p) {
                        if late_periods.len() >= MAX_LATE_PERIODS_PER_RECORD {
                            slot = Slot::Outside(super::window::Direction::Past);
                        } else {
                            late_periods.push(p);
                        }
                    }
                }
                match slot {
                    Slot::Period(_) => {}
                    Slot::Late(_) => late += 1,
                    Slot::Outside(super::window::Direction::Past) => past += 1,
                    Slot::Outside(super::window::Direction::Future) => future += 1,
                }
                let fs = FileSlot::from(slot);
                // Most records hold one slot: check the last before hashing.
                let at = match by_slot.last() {
                    Some((s, _)) if *s == fs => Some(by_slot.len() - 1),
                    _ => index.get(&fs).copied(),
                };
                match at {
                    Some(i) => by_slot[i].1.push(ev),
                    None => {
                        index.insert(fs, by_slot.len());
                        by_slot.push((fs, vec![ev]));
                    }
                }
            }
            for (slot, events) in by_slot {
                let key = OutputKey::File {
                    route,
                    group: group.clone(),
                    slot,
                };
                if self.is_covered(&key, r.seq) {
                    skipped += events.len() as u64;
                    continue;
                }
                writes.push(Write { key, events });
            }
            if late > 0 {
                m.roll_late_events.inc_by(late);
            }
            for (dir, n) in [("past", past), ("future", future)] {
                if n > 0 {
                    m.roll_outside_events.with_label_values(&[dir]).inc_by(n);
                }
            }
        }
        if skipped > 0 {
            m.roll_replayed_skipped_events.inc_by(skipped);
        }
        writes
    }

    /// Appends one planned write; returns the rows added.
    fn write(&mut self, r: &WalRecord, w: &Write<'_>, tag: &[u8]) -> Result<u64, Failure> {
        if let OutputKey::Td { target, .. } = &w.key {
            let limit = self.td_targets[*target].cfg.max_part_bytes.as_usize();
            let incoming = r.batch.as_bytes().len();
            let full = self.open.get(&w.key).is_some_and(|o| match &o.output {
                Output::Td(t) => t.raw_bytes() > 0 && t.raw_bytes() + incoming > limit,
                Output::Parquet(_) => false,
            });
            if full {
                // This record's events go to the next part.
                self.finish_output(&w.key, Why::Full, r.seq.saturating_sub(1))
                    .map_err(Failure::File)?;
            }
        }
        if !self.open.contains_key(&w.key) {
            self.open_output(&w.key, r).map_err(Failure::File)?;
        }
        let clock = self.write_clock;
        self.write_clock += 1;
        // A preview starts with the first record after the last one
        // written (on replay, after what earlier previews hold); the digest
        // lookup is made only then, not for every record.
        let start_preview = match &w.key {
            OutputKey::File { route, .. }
                if !self.route_fresh[*route].is_empty()
                    && self.open.get(&w.key).is_some_and(|o| o.preview.is_none()) =>
            {
                self.previewed
                    .get(&self.coverage_key(&w.key))
                    .is_none_or(|d| r.seq > *d)
            }
            _ => false,
        };
        let Some(o) = self.open.get_mut(&w.key) else {
            return Ok(0);
        };
        if start_preview {
            if let Output::Parquet(p) = &mut o.output {
                p.start_tee().map_err(Failure::File)?;
                o.preview = Some((r.seq, r.seq));
            }
        }
        if let Some((_, last)) = &mut o.preview {
            *last = r.seq;
        }
        let mut rows = 0u64;
        let mut bad = 0u64;
        for ev in &w.events {
            let result = match &mut o.output {
                Output::Parquet(p) => {
                    if rows == 0 && bad == 0 {
                        p.set_tag(tag);
                    }
                    p.append(ev.time_ns, ev.record)
                }
                Output::Td(t) => t.append(ev.time_ns, ev.record),
            };
            match result {
                Ok(()) => rows += 1,
                Err(WriteError::BadRecord(e)) => {
                    bad += 1;
                    if let Some(suppressed) =
                        crate::logging::allow("bad_wal_record", &self.links.metrics)
                    {
                        tracing::warn!(seq = r.seq, error = %e, suppressed, "record in the WAL is not a valid map; skipped");
                    }
                }
                Err(e) => return Err(Failure::Record(e)),
            }
        }
        if bad > 0 {
            self.links.metrics.roll_errors.inc_by(bad);
        }
        o.last_write = clock;
        let (mem, buffered) = (o.output.memory(), o.output.buffered_rows());
        self.memory = self.memory.saturating_sub(o.memory) + mem;
        self.buffered_rows = self.buffered_rows.saturating_sub(o.rows) + buffered;
        (o.memory, o.rows) = (mem, buffered);
        Ok(if matches!(w.key, OutputKey::File { .. }) {
            rows
        } else {
            0
        })
    }

    /// Opens the output `key` for a record, first finishing the least
    /// recently written outputs if `roll.max_open_files` are open.
    ///
    /// Those cover through this record: they are either not written by it
    /// or already written (open outputs are written first).
    fn open_output(&mut self, key: &OutputKey, r: &WalRecord) -> Result<(), WriteError> {
        while self.open.len() >= self.config.roll.max_open_files {
            let Some(victim) = self.least_recently_written() else {
                break;
            };
            self.finish_output(&victim, Why::Early("max_open_files"), r.seq)?;
        }
        let short_ms = self.window.grace_ms.max(MIN_SHORT_WINDOW_MS);
        let arrival_period = super::period_start(
            r.arrival_ms.saturating_mul(1_000_000),
            self.window.period_secs,
        );
        let (output, path, deadline_ms, period_start) = match key {
            OutputKey::File { route, slot, .. } => {
                let (deadline, period) = match *slot {
                    FileSlot::Period(p) => (self.window.period_deadline_ms(p), p),
                    FileSlot::Late(p) => (r.arrival_ms.saturating_add(short_ms), p),
                    FileSlot::Outside => (r.arrival_ms.saturating_add(short_ms), arrival_period),
                };
                let path = self
                    .open_dir
                    .join(format!("{}.parquet", self.output_id(key, r.seq, period)));
                let w = PartitionWriter::create(&path, &self.schemas[*route], &self.encoder)?;
                (Output::Parquet(Box::new(w)), path, deadline, period)
            }
            OutputKey::Td { target, .. } => {
                let flush = self.td_targets[*target].cfg.flush_interval.0.as_millis() as i64;
                let path = self
                    .open_dir
                    .join(format!("{}.msgpack.gz", self.output_id(key, r.seq, 0)));
                let w = TdPartWriter::create(&path)?;
                (
                    Output::Td(Box::new(w)),
                    path,
                    r.arrival_ms.saturating_add(flush),
                    0,
                )
            }
        };
        self.next_deadline_ms = self.next_deadline_ms.min(deadline_ms);
        let memory = output.memory();
        self.memory += memory;
        self.open.insert(
            key.clone(),
            Open {
                output,
                path,
                first_seq: r.seq,
                deadline_ms,
                period_start,
                memory,
                rows: 0,
                last_write: self.write_clock,
                preview: None,
            },
        );
        self.report_gauges();
        Ok(())
    }

    fn least_recently_written(&self) -> Option<OutputKey> {
        self.open
            .iter()
            .min_by_key(|(_, o)| (o.last_write, o.first_seq))
            .map(|(k, _)| k.clone())
    }

    /// Outbox id of an output: `{first_seq}-{hash}`, the same on replay.
    fn output_id(&self, key: &OutputKey, first_seq: u64, period: i64) -> String {
        let hash = crate::ids::leading_u64(&self.output_digest(key, period));
        format!("{first_seq:020}-{hash:016x}")
    }

    /// Keeps memory under `roll.max_buffer_bytes`: writes the largest
    /// buffer out as a row group, or, when every buffer is small (many open
    /// files), finishes the least recently written file early.
    fn enforce_memory(&mut self, seq: u64) -> Result<(), Failure> {
        let budget = self.config.roll.max_buffer_bytes.as_usize();
        let min_flush = MIN_FLUSH_BYTES.min(budget / 8).max(1);
        if self.memory > budget {
            // Previews holding a good share of the memory go out early,
            // rather than files being finished early; a few small ones are
            // not worth a file each.
            let previews: usize = self
                .open
                .values()
                .filter_map(|o| match &o.output {
                    Output::Parquet(p) if o.preview.is_some() => Some(p.tee_bytes()),
                    _ => None,
                })
                .sum();
            if previews >= budget / 8 {
                self.preview_all().map_err(Failure::File)?;
            }
        }
        while self.memory > budget && !self.open.is_empty() {
            let largest = self
                .open
                .iter()
                .filter_map(|(k, o)| match &o.output {
                    Output::Parquet(p) => Some((p.buffered_bytes(), k)),
                    Output::Td(_) => None,
                })
                .max_by_key(|(b, _)| *b)
                .map(|(b, k)| (b, k.clone()));
            match largest {
                Some((buffered, key)) if buffered >= min_flush => {
                    let Some(o) = self.open.get_mut(&key) else {
                        break;
                    };
                    if let Output::Parquet(p) = &mut o.output {
                        p.flush_row_group().map_err(Failure::File)?;
                        self.links.metrics.roll_row_groups.inc();
                    }
                    let (mem, rows) = (o.output.memory(), o.output.buffered_rows());
                    self.memory = self.memory.saturating_sub(o.memory) + mem;
                    self.buffered_rows = self.buffered_rows.saturating_sub(o.rows) + rows;
                    (o.memory, o.rows) = (mem, rows);
                }
                _ => {
                    let Some(victim) = self.least_recently_written() else {
                        break;
                    };
                    self.finish_output(&victim, Why::Early("memory"), seq)
                        .map_err(Failure::File)?;
                }
            }
        }
        Ok(())
    }

    fn report_gauges(&self) {
        let m = &self.links.metrics;
        m.roll_open_partitions.set(self.open.len() as i64);
        m.roll_buffer_bytes.set(self.memory as i64);
        m.roll_buffered_rows.set(self.buffered_rows as i64);
    }

    /// Finishes an output and hands it to the outbox; it covers every event
    /// of its key through `covered_through`.
    fn finish_output(
        &mut self,
        key: &OutputKey,
        why: Why,
        covered_through: u64,
    ) -> Result<(), WriteError> {
        let Some(o) = self.open.remove(key) else {
            return Ok(());
        };
        self.memory = self.memory.saturating_sub(o.memory);
        self.buffered_rows = self.buffered_rows.saturating_sub(o.rows);
        let covered_through = covered_through.max(o.first_seq);
        let closed = match o.output {
            Output::Parquet(w) => w.finish(),
            Output::Td(w) => w.finish(),
        };
        let closed = match closed {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&o.path);
                return Err(e);
            }
        };
        let node = self.config.node_id.clone();
        let id = self.output_id(key, o.first_seq, o.period_start);
        // What differs between a Parquet file and a Treasure Data part:
        // (file kind, route, group, period, slot, object key per sink, label).
        let (file_kind, route, group, period_start, slot, keys, kind) = match key {
            OutputKey::File { route, group, slot } => {
                let (name, mslot, kind) = match (slot, why) {
                    (FileSlot::Period(_), Why::Deadline) => {
                        (FileName::Main, ManifestSlot::Main, "period")
                    }
                    (FileSlot::Period(_), _) => {
                        (FileName::Part(o.first_seq), ManifestSlot::Part, "part")
                    }
                    (FileSlot::Late(_), _) => {
                        (FileName::Late(o.first_seq), ManifestSlot::Late, "late")
                    }
                    (FileSlot::Outside, _) => (
                        FileName::Outside(o.first_seq),
                        ManifestSlot::Outside,
                        "outside",
                    ),
                };
                let route_cfg = &self.config.routes[*route];
                let mut keys = std::collections::BTreeMap::new();
                for sink in route_cfg.sinks.iter().filter(|s| self.is_object_sink(s)) {
                    let parts = KeyParts {
                        prefix: "",
                        group,
                        period_start: o.period_start,
                        period_secs: self.window.period_secs,
                        node: &node,
                        name,
                    };
                    keys.insert(
                        sink.clone(),
                        sink_key(self.config.sink_prefix(sink), &route_cfg.prefix, parts),
                    );
                }
                let route = route_cfg.name.clone();
                (
                    FileKind::Parquet,
                    route,
                    group.to_vec(),
                    o.period_start,
                    mslot,
                    keys,
                    kind,
                )
            }
            OutputKey::Td { target, table } => {
                let t = &self.td_targets[*target];
                let unique_id = crate::ids::stable_hex(
                    &[
                        b"td",
                        node.as_bytes(),
                        t.sink.as_bytes(),
                        table.as_bytes(),
                        &o.first_seq.to_le_bytes(),
                    ],
                    16,
                );
                let (db, tbl) = table.split_once('.').unwrap_or((table, ""));
                let mut keys = std::collections::BTreeMap::new();
                keys.insert(t.sink.clone(), format!("{db}/{tbl}/{unique_id}"));
                let route = self
                    .config
                    .routes
                    .iter()
                    .find(|r| r.sinks.contains(&t.sink))
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let group = table.as_bytes().to_vec();
                (
                    FileKind::TdPart,
                    route,
                    group,
                    0,
                    ManifestSlot::Td,
                    keys,
                    "td_part",
                )
            }
        };
        let manifest = Manifest {
            version: VERSION,
            id,
            kind: file_kind,
            route,
            group_hex: hex(&group),
            group: String::from_utf8_lossy(&group).into_owned(),
            period_start,
            period_secs: self.window.period_secs,
            slot,
            late_seq: None,
            first_seq: o.first_seq,
            covered_through,
            rows: closed.rows,
            bytes: closed.bytes,
            keys,
            finished_at_ms: crate::wal::now_ms(),
            node: node.clone(),
            preview_of: None,
        };
        let early = match why {
            Why::Early(reason) => Some(reason),
            Why::Drain => Some("drain"),
            Why::Deadline | Why::Full => None,
        };
        if let Some(reason) = early {
            self.links
                .metrics
                .roll_files_finished_early
                .with_label_values(&[reason])
                .inc();
            if why == Why::Drain {
                // Asked for: no warning.
            } else if let Some(suppressed) =
                crate::logging::allow("early_finish", &self.links.metrics)
            {
                tracing::warn!(group = manifest.group, reason, suppressed,
                    "finishing a file before its deadline (bound reached: see roll.max_open_files, roll.max_buffer_bytes)");
            }
        }
        tracing::info!(
            group = manifest.group,
            period_start = manifest.period_start,
            kind,
            rows = closed.rows,
            bytes = closed.bytes,
            "finished file"
        );
        self.links.outbox.commit(&closed.path, &manifest)?;
        let e = self.covered.entry(self.coverage_key(key)).or_insert(0);
        *e = (*e).max(covered_through);
        self.links
            .metrics
            .roll_files_finished
            .with_label_values(&[kind])
            .inc();
        self.report_gauges();
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!(
                "outbox delivery stopped; the file waits in the outbox for the next start"
            );
        }
        Ok(())
    }

    /// Writes every open file's preview out (`roll.freshness`).
    fn preview_all(&mut self) -> Result<(), WriteError> {
        let keys: Vec<OutputKey> = self
            .open
            .iter()
            .filter(|(_, o)| o.preview.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.preview(&key)?;
        }
        Ok(())
    }

    /// Ends one open file's preview and hands it to the outbox: the rows
    /// the file got since its last preview, under `_fresh/` of the sinks
    /// with `fresh = true`.
    fn preview(&mut self, key: &OutputKey) -> Result<(), WriteError> {
        let OutputKey::File { route, group, slot } = key else {
            return Ok(());
        };
        let Some(o) = self.open.get_mut(key) else {
            return Ok(());
        };
        let Some((from, through)) = o.preview.take() else {
            return Ok(());
        };
        let Output::Parquet(p) = &mut o.output else {
            return Ok(());
        };
        let tee = p.take_tee()?;
        let (mem, rows) = (o.output.memory(), o.output.buffered_rows());
        self.memory = self.memory.saturating_sub(o.memory) + mem;
        self.buffered_rows = self.buffered_rows.saturating_sub(o.rows) + rows;
        (o.memory, o.rows) = (mem, rows);
        let (opened, period_start) = (o.first_seq, o.period_start);
        let Some(tee) = tee.filter(|t| t.rows > 0) else {
            return Ok(());
        };
        let (of, preview_slot) = match slot {
            FileSlot::Period(_) => (PreviewOf::Period(opened), PreviewSlot::Period),
            FileSlot::Late(_) => (PreviewOf::Late(opened), PreviewSlot::Late),
            FileSlot::Outside => (PreviewOf::Outside(opened), PreviewSlot::Outside),
        };
        let node = self.config.node_id.clone();
        let route_cfg = &self.config.routes[*route];
        let mut keys = std::collections::BTreeMap::new();
        for sink in &self.route_fresh[*route] {
            let parts = KeyParts {
                prefix: "",
                group,
                period_start,
                period_secs: self.window.period_secs,
                node: &node,
                name: FileName::Preview { of, seq: from },
            };
            keys.insert(
                sink.clone(),
                sink_key(self.config.sink_prefix(sink), &route_cfg.prefix, parts),
            );
        }
        let id = format!("{}-preview", self.output_id(key, from, period_start));
        let path = self.open_dir.join(format!("{id}.parquet"));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&tee.bytes)?;
            f.sync_all()?;
        }
        let manifest = Manifest {
            version: VERSION,
            id,
            kind: FileKind::Parquet,
            route: route_cfg.name.clone(),
            group_hex: hex(group),
            group: String::from_utf8_lossy(group).into_owned(),
            period_start,
            period_secs: self.window.period_secs,
            slot: ManifestSlot::Preview,
            late_seq: None,
            first_seq: from,
            covered_through: through,
            rows: tee.rows,
            bytes: tee.bytes.len() as u64,
            keys,
            finished_at_ms: crate::wal::now_ms(),
            node,
            preview_of: Some((preview_slot, opened)),
        };
        tracing::debug!(group = manifest.group, rows = tee.rows, "preview written");
        self.links.outbox.commit(&path, &manifest)?;
        let e = self.previewed.entry(self.coverage_key(key)).or_insert(0);
        *e = (*e).max(through);
        self.links
            .metrics
            .roll_files_finished
            .with_label_values(&["preview"])
            .inc();
        self.report_gauges();
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!("outbox delivery stopped; the preview waits in the outbox");
        }
        Ok(())
    }

    /// Whether a sink takes Parquet files (every sink but Treasure Data).
    fn is_object_sink(&self, sink: &str) -> bool {
        !self.td_targets.iter().any(|t| t.sink == sink)
    }
}
