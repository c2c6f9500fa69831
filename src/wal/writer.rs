//! The WAL writer thread: recovery, then group commit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::disk::DiskGuard;
use super::group::Group;
use super::segment::{self, SegmentFile};
use super::{
    now_ms, record, WalError, WalHandle, WalLinks, WalRequest, WalSettings, WalState, QUEUE_DEPTH,
};

/// Longest wait between retries of a failed write.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How often a waiting writer moves the roller's clock (as serve's ticker).
const TICK: Duration = Duration::from_millis(200);
use crate::backoff::Backoff;
use crate::wal::config::Durability;

/// Opens the log in `settings.dir` and starts its writer thread.
///
/// # Errors
/// The directory cannot be created or listed, or another weir holds its lock.
pub fn start(
    settings: WalSettings,
    links: WalLinks,
) -> io::Result<(WalHandle, std::thread::JoinHandle<()>)> {
    fs::create_dir_all(&settings.dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(settings.dir.join("LOCK"))?;
    lock.try_lock().map_err(|_| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is locked by another weir process",
                settings.dir.display()
            ),
        )
    })?;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let disk = DiskGuard::new(&settings.dir, settings.disk_reserve);
    let handle = std::thread::Builder::new()
        .name("weir-wal".into())
        .spawn(move || {
            let _lock = lock;
            let mut w = Writer {
                settings,
                links,
                segments: Vec::new(),
                active: None,
                active_len: 0,
                next_seq: 0,
                last_arrival_ms: i64::MIN,
                failed: None,
                dedupe: super::dedupe::Window::new(0),
                snapshot_at: None,
                written: 0,
                offsets: std::collections::VecDeque::new(),
                disk,
            };
            if let Err(e) = w.recover() {
                w.links.metrics.wal.upkeep_failed("recover", &e);
                w.fail(e.to_string());
            }
            // What is on disk now is for the roller to read.
            let stamp = w.last_arrival_ms;
            w.links.durable.recovered(w.next_seq, stamp);
            w.run(rx);
            w.links.durable.close();
        })?;
    Ok((WalHandle { tx }, handle))
}

struct Writer {
    settings: WalSettings,
    links: WalLinks,
    /// Segments on disk, oldest first; the last is the active one.
    segments: Vec<SegmentFile>,
    active: Option<File>,
    active_len: u64,
    next_seq: u64,
    /// Arrival stamps never go backwards, even if the clock does.
    last_arrival_ms: i64,
    failed: Option<String>,
    /// Recently logged chunk keys and their sequence numbers.
    dedupe: super::dedupe::Window,
    /// When the dedupe window was last saved (segments are deleted only
    /// after a snapshot holds their keys).
    snapshot_at: Option<Instant>,
    /// Bytes of records written (and recovered) so far.
    written: u64,
    /// (first sequence of a group, `written` before it): how many bytes the
    /// roller has still to read, from the sequence it is at.
    offsets: std::collections::VecDeque<(u64, u64)>,
    /// Free space on the WAL's file system against `wal.disk_reserve`.
    disk: DiskGuard,
}

/// An append in the group being written: what answers it, and what a retry
/// needs to write it again with a new arrival stamp.
struct Pending {
    reply: oneshot::Sender<Result<u64, WalError>>,
    seq: u64,
    arrival_ms: i64,
    key: Option<super::dedupe::Key>,
    batch: crate::event::EventBatch,
}

impl Writer {
    /// Stops taking writes for good: after a failed sync the page cache
    /// may have dropped data that will never reach the disk, so only a
    /// restart (re-reading the segments) can say what is durable.
    fn fail(&mut self, why: String) {
        self.failed = Some(why.clone());
        self.active = None;
        let _ = self.links.state.send(WalState::Failed(why));
    }

    fn snapshot_path(&self) -> std::path::PathBuf {
        self.settings.dir.join("dedupe.snapshot")
    }

    fn stamp(&mut self) -> i64 {
        self.last_arrival_ms = self.last_arrival_ms.max(now_ms());
        self.last_arrival_ms
    }

    fn recover(&mut self) -> io::Result<()> {
        let dir = self.settings.dir.clone();
        self.dedupe = super::dedupe::Window::new(self.settings.dedupe_window);
        if let Err(e) = self.dedupe.load(&self.snapshot_path()) {
            // Only resends of chunks in deleted segments go unrecognised.
            self.links.metrics.wal.corrupt(
                1,
                &format_args!(
                    "cannot read the dedupe snapshot {}: {e}; chunks resent from before the last restart may be stored twice",
                    self.snapshot_path().display()
                ),
            );
        }
        self.segments = segment::list(&dir)?;
        let started = Instant::now();
        let (mut records, mut events) = (0u64, 0u64);
        let count = self.segments.len();
        // One record at a time: a backlog of gigabytes is read, not held.
        for (i, seg) in self.segments.clone().iter().enumerate() {
            self.next_seq = self.next_seq.max(seg.first_seq);
            let file = File::open(&seg.path)?;
            let file_len = file.metadata()?.len();
            let mut reader = super::reader::SegmentReader::new(file, seg.first_seq)?;
            let mut first = true;
            while let Some(r) = reader.next_record()? {
                if r.seq < self.next_seq {
                    // A sequence number must grow; anything else is damage.
                    self.links.metrics.wal.corrupt(
                        1,
                        &format_args!(
                            "WAL record {} out of order in {}; skipped",
                            r.seq,
                            seg.path.display()
                        ),
                    );
                    continue;
                }
                if first {
                    self.offsets.push_back((r.seq, self.written));
                    first = false;
                }
                self.written +=
                    (record::RECORD_HEADER + r.dedupe_key.len() + r.batch.as_bytes().len()) as u64;
                self.next_seq = r.seq + 1;
                self.last_arrival_ms = self.last_arrival_ms.max(r.arrival_ms);
                self.dedupe.remember_stored(&r.dedupe_key, r.seq);
                records += 1;
                events += r.batch.len() as u64;
            }
            // Damage the reader read past (or, in a sealed segment, could
            // not) is counted by the roller's tail when it reads those
            // records, by the records it cost: once, not here as well.
            let good_len = reader.offset();
            if good_len < file_len && i + 1 == count {
                let why = match reader.damage() {
                    Some(why) if reader.is_done() => why,
                    _ => "incomplete record",
                };
                self.links.metrics.wal.torn_tail(
                    &seg.path,
                    good_len,
                    file_len.saturating_sub(good_len),
                    why,
                );
                let f = OpenOptions::new().write(true).open(&seg.path)?;
                f.set_len(good_len.max(segment::MAGIC.len() as u64))?;
                f.sync_all()?;
            }
        }
        if records > 0 {
            tracing::info!(
                segments = count,
                records,
                events,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "WAL recovered; the roller reads it from the oldest segment"
            );
        }
        // A newest segment holding no records is replaced by the fresh one,
        // opened with the first write (so a full disk at start is retried
        // like any other write, not a failed start).
        if let Some(last) = self.segments.last() {
            if last.first_seq == self.next_seq {
                fs::remove_file(&last.path)?;
                self.segments.pop();
            }
        }
        Ok(())
    }

    /// Starts a segment for records from `first_seq` on.
    fn open_segment(&mut self, first_seq: u64) -> io::Result<()> {
        // A failed earlier attempt (a full disk) may have left the file
        // behind, listed or not: it holds nothing that was ever durable,
        // since every record in it would be from `first_seq` on.
        let path = segment::segment_path(&self.settings.dir, first_seq);
        if self
            .segments
            .last()
            .is_some_and(|s| s.first_seq == first_seq)
        {
            self.segments.pop();
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let f = segment::create(&self.settings.dir, first_seq)?;
        self.segments.push(SegmentFile { first_seq, path });
        self.active = Some(f);
        self.active_len = segment::MAGIC.len() as u64;
        self.report_gauges();
        Ok(())
    }

    fn run(&mut self, mut rx: mpsc::Receiver<WalRequest>) {
        let mut group = Group::default();
        let mut pending: Vec<Pending> = Vec::new();
        let mut duplicates: Vec<(oneshot::Sender<Result<u64, WalError>>, u64)> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            // Backpressure holds appends back, so it is entered only when
            // one waits: a tick while idle never starts an episode.
            if matches!(first, WalRequest::Append { .. }) {
                self.wait_for_roller();
                self.wait_for_space();
            } else {
                self.report_backlog();
            }
            let mut tick = false;
            let mut group_bytes = 0usize;
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    WalRequest::Tick => tick = true,
                    WalRequest::Append {
                        batch,
                        dedupe_key,
                        reply,
                    } => {
                        if let Some(why) = &self.failed {
                            let _ = reply.send(Err(WalError::Failed(why.clone())));
                        } else if let Some(seq) = dedupe_key.and_then(|k| self.dedupe.get(&k)) {
                            // A resent chunk already in the log (this group's
                            // copy is acked when the group is durable).
                            self.links.metrics.forward.duplicate_chunk();
                            duplicates.push((reply, seq));
                        } else {
                            let seq = self.next_seq;
                            self.next_seq += 1;
                            let arrival_ms = self.stamp();
                            let key: &[u8] = dedupe_key.as_ref().map_or(&[], |k| &k[..]);
                            group.push(seq, arrival_ms, key, &batch);
                            group_bytes += batch.as_bytes().len();
                            if let Some(k) = dedupe_key {
                                self.dedupe.remember(k, seq);
                            }
                            pending.push(Pending {
                                reply,
                                seq,
                                arrival_ms,
                                key: dedupe_key,
                                batch,
                            });
                        }
                    }
                }
                if group_bytes < self.settings.max_group_bytes {
                    next = rx.try_recv().ok();
                }
            }
            if !pending.is_empty() {
                self.commit(&mut group, &mut pending);
            }
            for (reply, seq) in duplicates.drain(..) {
                let r = match &self.failed {
                    Some(why) => Err(WalError::Failed(why.clone())),
                    None => Ok(seq),
                };
                let _ = reply.send(r);
            }
            if tick {
                // Every record from next_seq on arrives at or after now.
                let now_ms = self.stamp();
                self.links.durable.publish(self.next_seq, now_ms);
            }
            self.release();
        }
        if let Some(f) = &self.active {
            let _ = f.sync_all();
        }
        tracing::debug!("WAL writer stopped");
    }

    /// Makes a group durable and answers it. A failed write (a full disk)
    /// is undone and retried with backoff, acking nothing meanwhile; a
    /// failed sync fails the WAL for good.
    ///
    /// While a write is retried the roller's clock keeps moving: before each
    /// wait the group's records are stamped with the time of their next
    /// attempt and that time is published, so periods end, files finish and
    /// segments are released, which is what frees a disk the WAL filled.
    fn commit(&mut self, group: &mut Group, pending: &mut Vec<Pending>) {
        let first_seq = pending.first().map_or(self.next_seq, |p| p.seq);
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_RETRY_DELAY);
        loop {
            match self.write_group(group, first_seq) {
                Ok(()) => break,
                Err(e) => {
                    self.restamp(group, pending, first_seq);
                    self.links.metrics.wal.write_failed(&e, backoff.peek());
                    let why = format!("cannot write the WAL: {e}");
                    self.links.state.send_if_modified(|s| {
                        let changed = *s != WalState::Stalled(why.clone());
                        *s = WalState::Stalled(why.clone());
                        changed
                    });
                    if !self.wait_moving_clock(backoff.next_delay(), first_seq) {
                        // Stopping with the group unwritten: its sequences
                        // were never on disk, so the durable mark must not
                        // pass them (the roller would wait for them forever).
                        self.next_seq = first_seq;
                        for p in pending.drain(..) {
                            let _ = p.reply.send(Err(WalError::Closed));
                        }
                        group.clear();
                        return;
                    }
                }
            }
        }
        let synced = match self.settings.durability {
            Durability::Fsync => {
                let t = Instant::now();
                let r = if crate::failpoint::is_set("wal.fail_sync") {
                    Err(io::Error::other("failpoint wal.fail_sync"))
                } else {
                    self.active.as_ref().map_or(Ok(()), |f| f.sync_data())
                };
                self.links.metrics.wal.synced(t.elapsed());
                r
            }
            Durability::None => Ok(()),
        };
        let m = &self.links.metrics;
        match synced {
            Ok(()) => {
                self.links.state.send_if_modified(|s| {
                    let changed = *s != WalState::Healthy;
                    *s = WalState::Healthy;
                    changed
                });
                m.wal.group_written(group.len(), pending.len());
                self.active_len += group.len();
                self.offsets.push_back((first_seq, self.written));
                self.written += group.len();
                self.disk.wrote(group.len());
                let (last_seq, last_arrival) = pending
                    .last()
                    .map_or((first_seq, 0), |p| (p.seq, p.arrival_ms));
                // Durable first, then acked: the roller may read them now.
                self.links.durable.publish(last_seq + 1, last_arrival);
                for p in pending.drain(..) {
                    let _ = p.reply.send(Ok(p.seq));
                }
                if self.active_len >= self.settings.segment_bytes {
                    // The next write starts a new segment.
                    self.active = None;
                }
            }
            Err(e) => {
                m.wal.sync_failed(&e);
                self.fail(format!("WAL sync failed: {e}"));
                for p in pending.drain(..) {
                    let _ = p.reply.send(Err(WalError::Failed(e.to_string())));
                }
            }
        }
        group.clear();
    }

    /// Writes a group at the end of the active segment (starting one if
    /// needed). On failure nothing of the group is left in the log: the
    /// segment is cut back, or, if that fails too, abandoned (recovery then
    /// stops reading it at the torn bytes, which were never acked).
    fn write_group(&mut self, group: &Group, first_seq: u64) -> io::Result<()> {
        #[cfg(test)]
        if take_failed_write(&self.settings.dir) {
            return Err(io::Error::other("test: this write fails"));
        }
        if self.active.is_none() {
            self.open_segment(first_seq)?;
        }
        let Some(f) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        let written = group.write_to(f);
        if let Err(e) = written {
            let good = self.active_len;
            let undone = f
                .set_len(good)
                .and_then(|()| f.seek(io::SeekFrom::Start(good)).map(|_| ()));
            if undone.is_err() {
                self.active = None;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Stamps the group's records with now, the earliest they can still
    /// arrive, and publishes that every record from `first_seq` on arrives
    /// at or after it (the records keep their sequences).
    fn restamp(&mut self, group: &mut Group, pending: &mut [Pending], first_seq: u64) {
        let now = self.stamp();
        group.clear();
        for p in pending.iter_mut() {
            p.arrival_ms = now;
            let key: &[u8] = p.key.as_ref().map_or(&[], |k| &k[..]);
            group.push(p.seq, now, key, &p.batch);
        }
        self.links.durable.publish(first_seq, now);
    }

    /// Waits `d` unless weir is stopping (false if it is), moving the
    /// roller's clock and releasing segments every tick meanwhile. Only for
    /// waits outside a group's sequences: every record from `next_seq` on
    /// arrives after the time published.
    fn wait_moving_clock(&mut self, d: Duration, next_seq: u64) -> bool {
        let end = Instant::now() + d;
        let mut ticked: Option<Instant> = None;
        while Instant::now() < end {
            if *self.links.stop.borrow() {
                return false;
            }
            if ticked.is_none_or(|t| t.elapsed() >= TICK) {
                let now = self.stamp();
                self.links.durable.publish(next_seq, now);
                self.release();
                self.report_backlog();
                ticked = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
        !*self.links.stop.borrow()
    }

    /// Below `wal.disk_reserve` of free space, takes no appends until files
    /// leave and segments are released: connections wait unread
    /// (backpressure), `/readyz` says why, and the clock keeps moving so the
    /// roller finishes what frees the space. Waits past the reserve by a
    /// segment, so one released segment does not flap it.
    fn wait_for_space(&mut self) {
        let group = self.settings.max_group_bytes as u64;
        if self.disk.admits(group) {
            self.report_gauges();
            return;
        }
        let reserve = self.disk.reserve();
        self.links
            .metrics
            .wal
            .disk_reserve_reached(self.disk.free(), reserve);
        let why = format!(
            "WAL disk has {} bytes free, under wal.disk_reserve ({reserve}): appends wait until finished files leave",
            self.disk.free()
        );
        self.links.state.send_if_modified(|s| {
            let changed = *s != WalState::Stalled(why.clone());
            *s = WalState::Stalled(why.clone());
            changed
        });
        self.links.backpressure.enter();
        let resume = group.saturating_add(self.settings.segment_bytes.min(64 << 20));
        let back = loop {
            self.disk.look();
            self.report_gauges();
            if self.disk.free() >= reserve.saturating_add(resume) {
                break true;
            }
            if !self.wait_moving_clock(Duration::from_millis(200), self.next_seq) {
                break false;
            }
        };
        self.links.backpressure.leave();
        self.links.state.send_if_modified(|s| {
            let changed = matches!(s, WalState::Stalled(_));
            if changed {
                *s = WalState::Healthy;
            }
            changed
        });
        if back {
            tracing::info!(
                free_bytes = self.disk.free(),
                reserve,
                "WAL disk space back over the reserve; taking appends again"
            );
        }
    }

    /// Bytes written that the roller has not read yet.
    fn backlog(&mut self) -> u64 {
        let read_to = self
            .links
            .roller_position
            .load(std::sync::atomic::Ordering::Relaxed);
        // Forget groups the roller is past (keep the one it is in).
        while self.offsets.len() > 1 && self.offsets[1].0 <= read_to {
            self.offsets.pop_front();
        }
        self.offsets
            .front()
            .map_or(0, |&(_, before)| self.written - before)
    }

    /// Past `wal.max_backlog_bytes` of records the roller has not read,
    /// takes no appends until it catches up: connections wait unread
    /// (backpressure), and the burst stays bounded on disk.
    fn wait_for_roller(&mut self) {
        let limit = self.settings.max_backlog_bytes;
        if self.report_backlog() <= limit {
            return;
        }
        self.links.backpressure.enter();
        while self.backlog() > limit {
            if *self.links.stop.borrow() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.report_backlog();
        self.links.backpressure.leave();
    }

    /// Updates the backlog gauge; returns the backlog.
    fn report_backlog(&mut self) -> u64 {
        let backlog = self.backlog();
        self.report_gauges_with(backlog);
        backlog
    }

    /// Reports the WAL's gauges.
    fn report_gauges(&mut self) {
        let backlog = self.backlog();
        self.report_gauges_with(backlog);
    }

    fn report_gauges_with(&self, backlog_bytes: u64) {
        self.links.metrics.wal.report(crate::metrics::WalGauges {
            segments: self.segments.len(),
            backlog_bytes,
            disk_free_bytes: self.disk.free(),
        });
    }

    /// Deletes segments whose every record is below the roller's release
    /// mark, once the dedupe window (which holds their chunk keys) is saved;
    /// saved at most once a second, so deletions may wait that long.
    fn release(&mut self) {
        let mark = *self.links.release.borrow();
        let deletable = self.segments.len() > 1 && self.segments[1].first_seq <= mark;
        if deletable && !self.dedupe.is_empty() {
            let due = self
                .snapshot_at
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            if !due {
                return;
            }
            if let Err(e) = self.dedupe.save(&self.snapshot_path()) {
                // Tried again a second later, not at every write.
                self.snapshot_at = Some(Instant::now());
                self.links.metrics.wal.upkeep_failed("snapshot", &e);
                return;
            }
            self.snapshot_at = Some(Instant::now());
        }
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].first_seq <= mark {
            let seg = self.segments.remove(0);
            match fs::remove_file(&seg.path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => removed = true,
                Err(e) => {
                    self.links.metrics.wal.upkeep_failed(
                        "delete_segment",
                        &format_args!("{}: {e}", seg.path.display()),
                    );
                    self.segments.insert(0, seg);
                    break;
                }
            }
        }
        if removed {
            let _ = segment::sync_dir(&self.settings.dir);
            self.report_gauges();
        }
        let oldest = self.segments.first().map_or(self.next_seq, |s| s.first_seq);
        self.links.oldest.send_if_modified(|v| {
            let changed = *v != oldest;
            *v = oldest;
            changed
        });
    }
}

/// Test seam: the next `n` group writes of the WAL in `dir` fail.
#[cfg(test)]
static FAIL_WRITES: std::sync::Mutex<Option<(std::path::PathBuf, u32)>> =
    std::sync::Mutex::new(None);

#[cfg(test)]
pub(super) fn fail_writes(dir: &std::path::Path, n: u32) {
    *FAIL_WRITES.lock().unwrap_or_else(|p| p.into_inner()) = Some((dir.to_path_buf(), n));
}

#[cfg(test)]
fn take_failed_write(dir: &std::path::Path) -> bool {
    let mut f = FAIL_WRITES.lock().unwrap_or_else(|p| p.into_inner());
    match f.as_mut() {
        Some((d, n)) if d == dir && *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}
