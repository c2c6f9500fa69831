//! The roller thread's state machine.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::period_start;
use super::schema::RouteSchema;
use super::td_part::TdPartWriter;
use super::writer::{PartitionWriter, WriteError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::manifest::{hex, unhex, FileKind, VERSION};
use crate::outbox::{Manifest, OutboxDir};
use crate::sink::key::{object_key, KeyParts};
use crate::wal::{WalOutput, WalRecord};

/// A late file stays open at least this long, so stragglers share a file.
const MIN_LATE_WINDOW_MS: i64 = 60_000;

/// Channels and stores the roller works with.
pub struct RollerLinks {
    pub input: crate::wal::queue::QueueRx,
    /// Lowest WAL sequence still needed (published after every message).
    pub release: watch::Sender<u64>,
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
}

/// Starts the roller thread. It returns when the WAL closes its output, or
/// with an error when a file cannot be written (the WAL keeps the data).
pub fn start(
    config: Arc<Config>,
    links: RollerLinks,
) -> std::io::Result<std::thread::JoinHandle<Result<(), String>>> {
    let open_dir = config.data_dir.join("roll").join("open");
    // Files left open by a previous run are rebuilt from the WAL.
    if open_dir.exists() {
        std::fs::remove_dir_all(&open_dir)?;
    }
    std::fs::create_dir_all(&open_dir)?;
    let schemas = config
        .routes
        .iter()
        .map(|r| RouteSchema::new(r, &config.roll))
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("weir-roller".into())
        .spawn(move || {
            let mut roller = Roller::new(config, schemas, open_dir, links);
            roller.run()
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PartKey {
    period_start: i64,
    late: bool,
}

struct OpenFile {
    writer: PartitionWriter,
    first_seq: u64,
    deadline_ms: i64,
    /// Last value of `writer.memory()` counted in the roller's total.
    memory: usize,
    /// Last value of `writer.buffered_rows()` counted likewise.
    rows: usize,
}

/// A Treasure Data sink the roller writes import parts for.
struct TdTarget {
    sink: String,
    cfg: crate::config::TdSinkConfig,
}

/// An open Treasure Data part for one (tag, TD sink).
struct OpenTd {
    writer: TdPartWriter,
    first_seq: u64,
    deadline_ms: i64,
    db: String,
    table: String,
}

/// Everything the roller knows about one tag.
struct TagState {
    route: Option<usize>,
    open: HashMap<PartKey, OpenFile>,
    /// Finished period files: covered_through per period.
    finished: HashMap<i64, u64>,
    /// Finished late files: highest covered_through per period.
    finished_late: HashMap<i64, u64>,
    /// Open TD parts, by TD target.
    td_open: HashMap<usize, OpenTd>,
    /// Finished TD parts: highest covered_through per TD target.
    td_finished: HashMap<usize, u64>,
}

struct Roller {
    config: Arc<Config>,
    schemas: Vec<RouteSchema>,
    open_dir: PathBuf,
    links: RollerLinks,
    tags: HashMap<Vec<u8>, TagState>,
    period_secs: u64,
    grace_ms: i64,
    now_ms: i64,
    /// Earliest deadline among open files (i64::MAX when none).
    next_deadline_ms: i64,
    /// Sequence of the last record fully processed.
    last_seq: Option<u64>,
    memory: usize,
    buffered_rows: usize,
    open_count: i64,
    td_targets: Vec<TdTarget>,
    /// TD targets of each route.
    route_td: Vec<Vec<usize>>,
    /// Whether each route has a sink that takes Parquet files.
    route_has_files: Vec<bool>,
}

impl Roller {
    fn new(
        config: Arc<Config>,
        schemas: Vec<RouteSchema>,
        open_dir: PathBuf,
        mut links: RollerLinks,
    ) -> Self {
        let period_secs = config.roll.period.0.as_secs();
        let grace_ms = config.roll.grace.0.as_millis() as i64;
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
        let mut r = Self {
            td_targets,
            route_td,
            route_has_files,
            tags: HashMap::new(),
            period_secs,
            grace_ms,
            now_ms: i64::MIN,
            next_deadline_ms: i64::MAX,
            last_seq: None,
            memory: 0,
            buffered_rows: 0,
            open_count: 0,
            schemas,
            open_dir,
            config,
            links: RollerLinks {
                initial: Vec::new(),
                ..links
            },
        };
        for m in std::mem::take(&mut links.initial) {
            r.remember_finished(&m);
        }
        r
    }

    fn remember_finished(&mut self, m: &Manifest) {
        let Some(tag) = unhex(&m.tag_hex) else {
            tracing::warn!(
                id = m.id,
                "manifest with an unreadable tag; ignored for replay"
            );
            return;
        };
        if m.period_secs != self.period_secs {
            tracing::warn!(
                id = m.id,
                "manifest from a different roll.period; its events may be written again"
            );
        }
        if m.kind == FileKind::TdPart {
            let target = m
                .keys
                .keys()
                .next()
                .and_then(|sink| self.td_targets.iter().position(|t| &t.sink == sink));
            if let Some(t) = target {
                let e = self.tag_state(&tag).td_finished.entry(t).or_insert(0);
                *e = (*e).max(m.covered_through);
            }
            return;
        }
        let state = self.tag_state(&tag);
        let map = if m.late_seq.is_some() {
            &mut state.finished_late
        } else {
            &mut state.finished
        };
        let e = map.entry(m.period_start).or_insert(0);
        *e = (*e).max(m.covered_through);
    }

    fn tag_state(&mut self, tag: &[u8]) -> &mut TagState {
        if !self.tags.contains_key(tag) {
            let route = self.config.route_for(tag);
            self.tags.insert(
                tag.to_vec(),
                TagState {
                    route,
                    open: HashMap::new(),
                    finished: HashMap::new(),
                    finished_late: HashMap::new(),
                    td_open: HashMap::new(),
                    td_finished: HashMap::new(),
                },
            );
        }
        // Inserted just above when missing.
        self.tags.get_mut(tag).unwrap_or_else(|| unreachable!())
    }

    fn run(&mut self) -> Result<(), String> {
        while let Ok(msg) = self.links.input.recv() {
            if !self.wait_for_backlog() {
                return Ok(());
            }
            let result = match msg {
                WalOutput::Record(r) => self.on_record(r),
                WalOutput::Tick { now_ms } => self.advance(now_ms),
                WalOutput::ReplayDone => {
                    tracing::debug!(
                        open_files = self.open_count,
                        "roller caught up with the WAL"
                    );
                    Ok(())
                }
            };
            if let Err(e) = result {
                self.links.metrics.roll_errors.inc();
                tracing::error!(error = %e, "cannot write Parquet; stopping (the WAL keeps every event for the next start)");
                return Err(e.to_string());
            }
            self.publish_release();
        }
        if self.links.drain.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(
                open_files = self.open_count,
                "drain: finishing every open file"
            );
            if let Err(e) = self.advance(i64::MAX) {
                self.links.metrics.roll_errors.inc();
                return Err(e.to_string());
            }
            self.publish_release();
        }
        Ok(())
    }

    /// Waits while the outbox backlog is over its limit (backpressure: the
    /// WAL's queue to the roller fills and connections stop reading).
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
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        self.links.metrics.outbox_blocked.set(0);
        tracing::info!("outbox backlog under its limit again; resuming");
        true
    }

    fn publish_release(&self) {
        let mark = self
            .tags
            .values()
            .flat_map(|t| {
                t.open
                    .values()
                    .map(|o| o.first_seq)
                    .chain(t.td_open.values().map(|o| o.first_seq))
            })
            .min()
            .or(self.last_seq.map(|s| s + 1))
            .unwrap_or(0);
        self.links.release.send_if_modified(|v| {
            let changed = *v != mark;
            *v = mark;
            changed
        });
    }

    fn advance(&mut self, now_ms: i64) -> Result<(), WriteError> {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        if self.now_ms < self.next_deadline_ms {
            return Ok(());
        }
        for (tag, key) in due(&self.tags, self.now_ms, |t| &t.open) {
            self.finish(&tag, key)?;
        }
        for (tag, target) in due(&self.tags, self.now_ms, |t| &t.td_open) {
            self.finish_td(&tag, target)?;
        }
        self.next_deadline_ms = self
            .tags
            .values()
            .flat_map(|t| {
                t.open
                    .values()
                    .map(|o| o.deadline_ms)
                    .chain(t.td_open.values().map(|o| o.deadline_ms))
            })
            .min()
            .unwrap_or(i64::MAX);
        Ok(())
    }

    fn on_record(&mut self, r: WalRecord) -> Result<(), WriteError> {
        self.advance(r.arrival_ms)?;
        let m = self.links.metrics.clone();
        let tag = r.batch.tag();
        let period_secs = self.period_secs;
        let period_ms = period_secs as i64 * 1000;
        let grace_ms = self.grace_ms;
        let arrival = r.arrival_ms;
        let seq = r.seq;
        let Some(route) = self.tag_state(tag).route else {
            m.roll_unrouted_events.inc_by(r.batch.len() as u64);
            self.last_seq = Some(seq);
            return Ok(());
        };
        for target in self.route_td[route].clone() {
            self.write_td(&r, target)?;
        }
        if !self.route_has_files[route] {
            self.last_seq = Some(seq);
            return Ok(());
        }
        let mut late_events = 0u64;
        let mut skipped = 0u64;
        let mut rows = 0u64;
        let mut touched: Vec<PartKey> = Vec::new();
        for ev in r.batch.events() {
            let ps = period_start(ev.time_ns, period_secs);
            let late = arrival >= ps * 1000 + period_ms + grace_ms;
            let state = self.tag_state(tag);
            let covered = if late {
                state.finished_late.get(&ps)
            } else {
                state.finished.get(&ps)
            };
            if covered.is_some_and(|&c| seq <= c) {
                skipped += 1;
                continue;
            }
            let key = PartKey {
                period_start: ps,
                late,
            };
            if !state.open.contains_key(&key) {
                self.open_file(tag, key, seq, arrival)?;
            }
            let state = self.tag_state(tag);
            let Some(open) = state.open.get_mut(&key) else {
                continue;
            };
            match open.writer.append(ev.time_ns, ev.record) {
                Ok(()) => rows += 1,
                Err(WriteError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!(seq, error = %e, "record in the WAL is not a valid map; skipped");
                    m.roll_errors.inc();
                }
                Err(e) => return Err(e),
            }
            if late {
                late_events += 1;
            }
            if touched.last() != Some(&key) && !touched.contains(&key) {
                touched.push(key);
            }
        }
        for key in touched {
            if let Some(o) = self.tags.get_mut(tag).and_then(|t| t.open.get_mut(&key)) {
                let (mem, rows) = (o.writer.memory(), o.writer.buffered_rows());
                self.memory = self.memory.saturating_sub(o.memory) + mem;
                self.buffered_rows = self.buffered_rows.saturating_sub(o.rows) + rows;
                (o.memory, o.rows) = (mem, rows);
            }
        }
        m.roll_rows.inc_by(rows);
        if late_events > 0 {
            m.roll_late_events.inc_by(late_events);
        }
        if skipped > 0 {
            m.roll_replayed_skipped_events.inc_by(skipped);
        }
        self.last_seq = Some(seq);
        self.enforce_memory()?;
        m.roll_buffer_bytes.set(self.memory as i64);
        m.roll_buffered_rows.set(self.buffered_rows as i64);
        Ok(())
    }

    fn open_file(
        &mut self,
        tag: &[u8],
        key: PartKey,
        seq: u64,
        arrival_ms: i64,
    ) -> Result<(), WriteError> {
        let Some(route) = self.tag_state(tag).route else {
            return Ok(());
        };
        let name = format!("{seq:020}-{:016x}.parquet", part_hash(route, tag, key));
        let writer = PartitionWriter::create(&self.open_dir.join(name), &self.schemas[route], tag)?;
        let deadline_ms = if key.late {
            arrival_ms.saturating_add(self.grace_ms.max(MIN_LATE_WINDOW_MS))
        } else {
            (key.period_start + self.period_secs as i64)
                .saturating_mul(1000)
                .saturating_add(self.grace_ms)
        };
        self.next_deadline_ms = self.next_deadline_ms.min(deadline_ms);
        self.tag_state(tag).open.insert(
            key,
            OpenFile {
                writer,
                first_seq: seq,
                deadline_ms,
                memory: 0,
                rows: 0,
            },
        );
        self.open_count += 1;
        self.links.metrics.roll_open_partitions.set(self.open_count);
        Ok(())
    }

    /// Whether a sink takes Parquet files (every sink but Treasure Data).
    fn is_object_sink(&self, sink: &str) -> bool {
        !self.td_targets.iter().any(|t| t.sink == sink)
    }

    /// Adds a record's events to the tag's open TD part for `target`,
    /// starting a new part first when this record would push the part past
    /// `max_part_bytes` (parts end on record boundaries, so replay cuts them
    /// the same way and their unique ids stay valid).
    fn write_td(&mut self, r: &WalRecord, target: usize) -> Result<(), WriteError> {
        let tag = r.batch.tag();
        let limit = self.td_targets[target].cfg.max_part_bytes.as_usize();
        let state = self.tag_state(tag);
        if state.td_finished.get(&target).is_some_and(|&c| r.seq <= c) {
            return Ok(());
        }
        let incoming = r.batch.as_bytes().len();
        let full = state
            .td_open
            .get(&target)
            .is_some_and(|o| o.writer.raw_bytes() > 0 && o.writer.raw_bytes() + incoming > limit);
        if full {
            self.finish_td(tag, target)?;
        }
        if !self.tag_state(tag).td_open.contains_key(&target) {
            let t = &self.td_targets[target];
            let (db, table) = crate::sink::td::names_for(tag, &t.cfg);
            let deadline_ms = r
                .arrival_ms
                .saturating_add(t.cfg.flush_interval.0.as_millis() as i64);
            let name = format!("{:020}-{:016x}.msgpack.gz", r.seq, td_hash(&t.sink, tag, 0));
            let writer = TdPartWriter::create(&self.open_dir.join(name))?;
            self.next_deadline_ms = self.next_deadline_ms.min(deadline_ms);
            self.tag_state(tag).td_open.insert(
                target,
                OpenTd {
                    writer,
                    first_seq: r.seq,
                    deadline_ms,
                    db,
                    table,
                },
            );
        }
        let Some(open) = self
            .tags
            .get_mut(tag)
            .and_then(|t| t.td_open.get_mut(&target))
        else {
            return Ok(());
        };
        for ev in r.batch.events() {
            match open.writer.append(ev.time_ns, ev.record) {
                Ok(()) => {}
                Err(WriteError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!(seq = r.seq, error = %e, "record in the WAL is not a valid map; skipped");
                    self.links.metrics.roll_errors.inc();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Hands a TD part to the outbox.
    fn finish_td(&mut self, tag: &[u8], target: usize) -> Result<(), WriteError> {
        let state = self.tag_state(tag);
        let Some(route) = state.route else {
            return Ok(());
        };
        let Some(open) = state.td_open.remove(&target) else {
            return Ok(());
        };
        let closed = open.writer.finish()?;
        let sink = self.td_targets[target].sink.clone();
        let t = &self.td_targets[target];
        let unique_id = format!(
            "{:016x}{:016x}",
            td_hash(&t.sink, tag, open.first_seq ^ 0x5eed),
            td_hash(&self.config.node_id, tag, open.first_seq)
        );
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(
            t.sink.clone(),
            format!("{}/{}/{unique_id}", open.db, open.table),
        );
        let manifest = Manifest {
            version: VERSION,
            id: format!("{:020}-{:016x}", open.first_seq, td_hash(&t.sink, tag, 1)),
            kind: FileKind::TdPart,
            route: self.config.routes[route].name.clone(),
            tag_hex: hex(tag),
            tag: String::from_utf8_lossy(tag).into_owned(),
            period_start: 0,
            period_secs: self.period_secs,
            late_seq: None,
            first_seq: open.first_seq,
            covered_through: self.last_seq.unwrap_or(open.first_seq),
            rows: closed.rows,
            bytes: closed.bytes,
            keys,
            finished_at_ms: crate::wal::now_ms(),
        };
        tracing::info!(
            tag = manifest.tag,
            sink,
            rows = closed.rows,
            bytes = closed.bytes,
            "finished Treasure Data part"
        );
        self.hand_over(&closed.path, manifest, "td_part")
    }

    /// Commits a finished file to the outbox, records it as finished (so
    /// replay skips its events) and tells delivery.
    fn hand_over(
        &mut self,
        path: &std::path::Path,
        manifest: Manifest,
        kind: &str,
    ) -> Result<(), WriteError> {
        self.links.outbox.commit(path, &manifest)?;
        self.remember_finished(&manifest);
        self.links
            .metrics
            .roll_files_finished
            .with_label_values(&[kind])
            .inc();
        self.links.metrics.roll_open_partitions.set(self.open_count);
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!(
                "outbox delivery stopped; the file waits in the outbox for the next start"
            );
        }
        Ok(())
    }

    /// Writes row groups from the largest open files until under budget.
    fn enforce_memory(&mut self) -> Result<(), WriteError> {
        let budget = self.config.roll.max_buffer_bytes.as_usize();
        while self.memory > budget {
            let Some(o) = self
                .tags
                .values_mut()
                .flat_map(|t| t.open.values_mut())
                .max_by_key(|o| o.memory)
            else {
                break;
            };
            if o.memory == 0 {
                self.memory = 0;
                break;
            }
            o.writer.flush_row_group()?;
            let (mem, rows) = (o.writer.memory(), o.writer.buffered_rows());
            self.memory = self.memory.saturating_sub(o.memory) + mem;
            self.buffered_rows = self.buffered_rows.saturating_sub(o.rows) + rows;
            (o.memory, o.rows) = (mem, rows);
            self.links.metrics.roll_row_groups.inc();
        }
        Ok(())
    }

    fn finish(&mut self, tag: &[u8], key: PartKey) -> Result<(), WriteError> {
        let state = self.tag_state(tag);
        let Some(route) = state.route else {
            return Ok(());
        };
        let Some(open) = state.open.remove(&key) else {
            return Ok(());
        };
        self.open_count -= 1;
        self.memory = self.memory.saturating_sub(open.memory);
        self.buffered_rows = self.buffered_rows.saturating_sub(open.rows);
        let first_seq = open.first_seq;
        let closed = open.writer.finish()?;
        let covered_through = self.last_seq.unwrap_or(first_seq);
        let late_seq = key.late.then_some(first_seq);
        let route_cfg = &self.config.routes[route];
        let mut keys = std::collections::BTreeMap::new();
        for sink in route_cfg.sinks.iter().filter(|s| self.is_object_sink(s)) {
            let sink_prefix = self
                .config
                .sinks
                .get(sink)
                .map(|s| s.prefix())
                .unwrap_or_default();
            let prefix = crate::sink::join_prefix(sink_prefix, &route_cfg.prefix);
            keys.insert(
                sink.clone(),
                object_key(&KeyParts {
                    prefix: &prefix,
                    tag,
                    period_start: key.period_start,
                    period_secs: self.period_secs,
                    node: &self.config.node_id,
                    late_seq,
                }),
            );
        }
        let manifest = Manifest {
            version: VERSION,
            id: format!("{first_seq:020}-{:016x}", part_hash(route, tag, key)),
            kind: FileKind::Parquet,
            route: route_cfg.name.clone(),
            tag_hex: hex(tag),
            tag: String::from_utf8_lossy(tag).into_owned(),
            period_start: key.period_start,
            period_secs: self.period_secs,
            late_seq,
            first_seq,
            covered_through,
            rows: closed.rows,
            bytes: closed.bytes,
            keys,
            finished_at_ms: crate::wal::now_ms(),
        };
        let kind = if key.late { "late" } else { "period" };
        tracing::info!(
            tag = manifest.tag,
            period_start = key.period_start,
            kind,
            rows = closed.rows,
            bytes = closed.bytes,
            "finished file"
        );
        self.hand_over(&closed.path, manifest, kind)
    }
}

/// Something the roller closes at a deadline.
trait Deadline {
    fn deadline_ms(&self) -> i64;
}

impl Deadline for OpenFile {
    fn deadline_ms(&self) -> i64 {
        self.deadline_ms
    }
}

impl Deadline for OpenTd {
    fn deadline_ms(&self) -> i64 {
        self.deadline_ms
    }
}

/// (tag, key) of every entry of `pick(tag state)` whose deadline has passed.
fn due<K: Copy, V: Deadline>(
    tags: &HashMap<Vec<u8>, TagState>,
    now_ms: i64,
    pick: impl Fn(&TagState) -> &HashMap<K, V>,
) -> Vec<(Vec<u8>, K)> {
    tags.iter()
        .flat_map(|(tag, t)| {
            pick(t)
                .iter()
                .filter(|(_, o)| o.deadline_ms() <= now_ms)
                .map(move |(k, _)| (tag.clone(), *k))
        })
        .collect()
}

/// A stable hash naming TD parts (unique ids must be the same on replay).
fn td_hash(a: &str, tag: &[u8], n: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h);
    tag.hash(&mut h);
    n.hash(&mut h);
    h.finish()
}

/// Names one (route, tag, period, late) group; with the first sequence it is
/// unique, and the same on replay.
fn part_hash(route: usize, tag: &[u8], key: PartKey) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    route.hash(&mut h);
    tag.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}
