//! Following the log: how the roller reads records, behind the writer.
//!
//! The writer publishes a [`Durable`] mark after every group commit and
//! every clock tick: records below `seq` are complete on disk, and every
//! record from `seq` on arrives at or after `stamp_ms`. The roller's
//! [`Tail`] reads records up to that mark straight from the segment files
//! (the page cache, when it keeps up), so acks never wait for the roller
//! and a burst waits on disk, not in memory. Recovery after a crash is the
//! same path, starting at the oldest segment.
//!
//! # Memory
//! One record at a time and a 256 KiB read buffer, whatever the backlog.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::reader::SegmentReader;
use super::segment::{self, SegmentFile};
use super::WalRecord;

/// How far the log is durable, and the clock at that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    /// Records below this sequence are durable and complete on disk.
    pub(crate) seq: u64,
    /// Every record from `seq` on arrives at or after this time (ms).
    pub(crate) stamp_ms: i64,
    /// The writer has read the log at start (the mark covers what was on
    /// disk).
    pub(crate) recovered: bool,
    /// The writer has stopped: nothing will be appended any more.
    pub(crate) closed: bool,
}

/// The writer's published [`Mark`], which the roller waits on.
#[derive(Default)]
pub struct Durable {
    mark: Mutex<Mark>,
    changed: Condvar,
}

impl Durable {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mark> {
        self.mark.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a new mark (sequences and stamps never go back).
    pub(crate) fn publish(&self, seq: u64, stamp_ms: i64) {
        let mut m = self.lock();
        m.seq = m.seq.max(seq);
        m.stamp_ms = m.stamp_ms.max(stamp_ms);
        self.changed.notify_all();
    }

    /// Recovery is done: `seq` is where the log on disk ends.
    pub(crate) fn recovered(&self, seq: u64, stamp_ms: i64) {
        let mut m = self.lock();
        m.seq = m.seq.max(seq);
        m.stamp_ms = m.stamp_ms.max(stamp_ms);
        m.recovered = true;
        self.changed.notify_all();
    }

    /// The writer stopped.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub(crate) fn get(&self) -> Mark {
        *self.lock()
    }

    /// Waits until the mark differs from `seen`, or `timeout` passes.
    pub(crate) fn wait_change(&self, seen: Mark, timeout: Duration) -> Mark {
        let m = self.lock();
        let (m, _) = self
            .changed
            .wait_timeout_while(m, timeout, |m| *m == seen)
            .unwrap_or_else(|p| p.into_inner());
        *m
    }
}

/// Reads records in sequence order from the segments of `dir`.
pub(crate) struct Tail {
    dir: PathBuf,
    /// The segment being read and its reader.
    current: Option<(SegmentFile, SegmentReader)>,
    /// Next sequence wanted.
    next_seq: u64,
    /// Records the reader could not find (damage) since the caller last
    /// took them, and the last damage seen.
    skipped: u64,
    damage: Option<String>,
}

/// Records a tail skipped over damage: the caller counts and logs them once.
pub(crate) struct Skipped {
    pub(crate) records: u64,
    /// The damage, and where.
    pub(crate) why: String,
}

impl Tail {
    /// A tail that returns records from `from_seq` on.
    pub(crate) fn new(dir: &Path, from_seq: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            current: None,
            next_seq: from_seq,
            skipped: 0,
            damage: None,
        }
    }

    /// Records skipped over damage since the last call, if any.
    pub(crate) fn take_skipped(&mut self) -> Option<Skipped> {
        if self.skipped == 0 {
            return None;
        }
        Some(Skipped {
            records: std::mem::take(&mut self.skipped),
            why: self
                .damage
                .take()
                .unwrap_or_else(|| "a gap in the sequence".into()),
        })
    }

    /// The next sequence this tail returns.
    pub(crate) fn position(&self) -> u64 {
        self.next_seq
    }

    /// Reads from `seq` on; the file is reopened.
    #[cfg(test)]
    pub(crate) fn seek(&mut self, seq: u64) {
        self.next_seq = seq;
        self.current = None;
    }

    /// The next record below `durable`; `None` when there is none yet.
    ///
    /// # Errors
    /// A segment cannot be listed or read.
    pub(crate) fn next(&mut self, durable: u64) -> io::Result<Option<WalRecord>> {
        while self.next_seq < durable {
            if self.current.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let Some((seg, reader)) = &mut self.current else {
                return Ok(None);
            };
            match reader.next_record()? {
                Some(r) if r.seq < self.next_seq => continue,
                Some(r) => {
                    if r.seq > self.next_seq {
                        self.skipped += r.seq - self.next_seq;
                        if let Some(why) = reader.damage() {
                            self.damage = Some(format!("{why} in {}", seg.path.display()));
                        }
                    }
                    self.next_seq = r.seq + 1;
                    return Ok(Some(r));
                }
                None => {
                    // The end of this segment's readable records. A later
                    // segment means this one is sealed: go on there (past
                    // any damage). Otherwise the writer is still on it:
                    // the reader goes on from here at the next call.
                    let first = seg.first_seq;
                    let later = segment::list(&self.dir)?
                        .into_iter()
                        .find(|s| s.first_seq > first);
                    match later {
                        Some(s) => {
                            if let Some(why) = reader.damage() {
                                self.damage = Some(format!(
                                    "{why} in {} at byte {}",
                                    seg.path.display(),
                                    reader.offset()
                                ));
                            }
                            if s.first_seq > self.next_seq {
                                self.skipped += s.first_seq - self.next_seq;
                                self.next_seq = s.first_seq;
                            }
                            self.current = None;
                        }
                        None if reader.is_done() => {
                            self.current = None;
                            return Ok(None);
                        }
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// Opens the segment that holds `next_seq`; false if there is none.
    fn open_segment(&mut self) -> io::Result<bool> {
        let segments = segment::list(&self.dir)?;
        let Some(seg) = segments
            .iter()
            .rev()
            .find(|s| s.first_seq <= self.next_seq)
            .or_else(|| segments.first())
            .cloned()
        else {
            return Ok(false);
        };
        if seg.first_seq > self.next_seq {
            // Released or lost below the oldest segment.
            self.next_seq = seg.first_seq;
        }
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let first_seq = seg.first_seq;
        self.current = Some((seg, SegmentReader::new(file, first_seq)?));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;
    use crate::wal::record;

    fn append(path: &Path, seqs: std::ops::Range<u64>, fresh: bool) {
        use std::io::Write;
        let mut out = if fresh {
            segment::MAGIC.to_vec()
        } else {
            Vec::new()
        };
        for s in seqs {
            let mut b = BatchBuilder::new(b"t", 8);
            b.push(s as i64, &[0x80]);
            record::encode(&mut out, s, 0, b"", &b.finish());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(&out)
            .unwrap();
    }

    #[test]
    fn follows_a_growing_segment_and_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let s0 = segment::segment_path(dir.path(), 0);
        append(&s0, 0..3, true);
        let mut tail = Tail::new(dir.path(), 0);
        let mut got = Vec::new();
        while let Some(r) = tail.next(3).unwrap() {
            got.push(r.seq);
        }
        assert_eq!(got, vec![0, 1, 2]);
        assert!(tail.next(3).unwrap().is_none(), "caught up");
        // The writer appends, then rotates.
        append(&s0, 3..5, false);
        append(&segment::segment_path(dir.path(), 5), 5..7, true);
        while let Some(r) = tail.next(7).unwrap() {
            got.push(r.seq);
        }
        assert_eq!(got, (0..7).collect::<Vec<_>>());
        // Not past the durable mark, though the bytes are there.
        append(&segment::segment_path(dir.path(), 5), 7..9, false);
        assert_eq!(tail.next(8).unwrap().map(|r| r.seq), Some(7));
        assert!(tail.next(8).unwrap().is_none());
        tail.seek(1);
        assert_eq!(tail.next(8).unwrap().map(|r| r.seq), Some(1));
        assert!(tail.take_skipped().is_none());
    }

    #[test]
    fn damage_costs_only_the_records_it_hit_and_is_reported_once_with_where() {
        let dir = tempfile::tempdir().unwrap();
        let s0 = segment::segment_path(dir.path(), 0);
        append(&s0, 0..5, true);
        // Damage record 2's length: only record 2 is lost.
        let mut bytes = std::fs::read(&s0).unwrap();
        let at = segment::MAGIC.len() + 2 * (bytes.len() - segment::MAGIC.len()) / 5;
        bytes[at..at + 4].copy_from_slice(&[0xff; 4]);
        std::fs::write(&s0, &bytes).unwrap();
        append(&segment::segment_path(dir.path(), 5), 5..7, true);
        let mut tail = Tail::new(dir.path(), 0);
        let mut got = Vec::new();
        while let Some(r) = tail.next(7).unwrap() {
            got.push(r.seq);
        }
        assert_eq!(got, vec![0, 1, 3, 4, 5, 6]);
        let s = tail
            .take_skipped()
            .expect("the skipped records are reported");
        assert_eq!(s.records, 1);
        assert!(s.why.contains("impossible record length"), "{}", s.why);
        assert!(s.why.contains(&s0.display().to_string()), "{}", s.why);
        assert!(tail.take_skipped().is_none(), "reported once");
    }

    #[test]
    fn a_flipped_bit_in_a_body_or_damage_to_the_last_record_costs_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let s0 = segment::segment_path(dir.path(), 0);
        append(&s0, 0..8, true);
        let mut bytes = std::fs::read(&s0).unwrap();
        let rec = (bytes.len() - segment::MAGIC.len()) / 8;
        // A bit in record 3's body, and the last record's checksum.
        bytes[segment::MAGIC.len() + 3 * rec + 20] ^= 0x10;
        bytes[segment::MAGIC.len() + 7 * rec + 5] ^= 0x01;
        std::fs::write(&s0, &bytes).unwrap();
        append(&segment::segment_path(dir.path(), 8), 8..9, true);
        let mut tail = Tail::new(dir.path(), 0);
        let mut got = Vec::new();
        while let Some(r) = tail.next(9).unwrap() {
            got.push(r.seq);
        }
        assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 8]);
        let s = tail.take_skipped().unwrap();
        assert_eq!(s.records, 2);
        assert!(s.why.contains("checksum mismatch"), "{}", s.why);
    }

    #[test]
    fn the_mark_wakes_a_waiter() {
        let d = Durable::new();
        let seen = d.get();
        let d2 = d.clone();
        let t = std::thread::spawn(move || d2.wait_change(seen, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        d.publish(5, 100);
        assert_eq!(t.join().unwrap().seq, 5);
    }
}
