//! Reading records back from the segments on disk, oldest first, one record
//! at a time: how the roller rebuilds its open files after it had to throw
//! them away (a quarantined record, a full disk).
//!
//! # Memory
//! One record at a time (at most one request), plus a 256 KiB read buffer;
//! after damage, once, the rest of that segment (at most
//! `wal.segment_bytes` plus one record) while looking for the next intact
//! record.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::record::{self, Decoded, WalRecord, MAX_RECORD_BODY};
use super::segment::{self, MAGIC};

/// Calls `each` with every intact record whose sequence is in
/// `from..=through`, in order. Reading a segment stops at its first damaged
/// or incomplete record (the active segment's tail may still be in flight).
///
/// # Errors
/// A segment cannot be listed, opened or read; or `each` fails.
pub(crate) fn for_each_in<E: From<io::Error>>(
    dir: &Path,
    from: u64,
    through: u64,
    mut each: impl FnMut(WalRecord) -> Result<(), E>,
) -> Result<(), E> {
    if from > through {
        return Ok(());
    }
    let segments = segment::list(dir)?;
    for (i, seg) in segments.iter().enumerate() {
        // A segment holds sequences from its first up to the next one's first.
        let next_first = segments.get(i + 1).map_or(u64::MAX, |s| s.first_seq);
        if next_first <= from || seg.first_seq > through {
            continue;
        }
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            // Released meanwhile: nothing in it is needed any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let mut reader = SegmentReader::new(file, seg.first_seq)?;
        while let Some(r) = reader.next_record()? {
            if r.seq > through {
                return Ok(());
            }
            if r.seq >= from {
                each(r)?;
            }
        }
    }
    Ok(())
}

/// Reads one segment's records in order. Resumable: at the end of what is
/// on disk it stops before the incomplete record and, called again, goes on
/// from there (the segment the writer is still appending to).
pub(crate) struct SegmentReader {
    inner: BufReader<File>,
    /// The last damage seen, and what it was. The reader does not log it;
    /// its caller counts and logs it once, knowing what the damage costs (a
    /// torn tail, or records skipped).
    damage: Option<&'static str>,
    /// No intact record follows the damage: nothing more is read.
    done: bool,
    /// Sequence of the last record returned (before the first: the one
    /// before the segment's first).
    after_seq: Option<u64>,
    /// File offset after the last complete record.
    offset: u64,
}

impl SegmentReader {
    /// Checks the segment's magic; `first_seq` is the one its name says.
    pub(crate) fn new(file: File, first_seq: u64) -> io::Result<Self> {
        let mut inner = BufReader::with_capacity(256 << 10, file);
        let mut magic = [0u8; 8];
        let damage = match inner.read_exact(&mut magic) {
            Ok(()) => (&magic != MAGIC).then_some("not a WAL segment (magic)"),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some("no segment header"),
            Err(e) => return Err(e),
        };
        Ok(Self {
            inner,
            done: damage.is_some(),
            damage,
            after_seq: first_seq.checked_sub(1),
            offset: MAGIC.len() as u64,
        })
    }

    /// The next intact record; `None` at the end of what is on disk (call
    /// again later for more) or for good after damage no intact record
    /// follows. Damage in the middle of a segment (a flipped bit, a bad
    /// sector) costs the records it hit, not the rest of the segment.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<WalRecord>> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 8];
        if !read_full(&mut self.inner, &mut head)? {
            return self.rewind();
        }
        let body_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(18..=MAX_RECORD_BODY).contains(&body_len) {
            return self.damaged("impossible record length");
        }
        let mut buf = BytesMut::zeroed(8 + body_len);
        buf[..8].copy_from_slice(&head);
        if !read_full(&mut self.inner, &mut buf[8..])? {
            return self.rewind();
        }
        let bytes: Bytes = buf.freeze();
        match record::decode(&bytes) {
            Decoded::Record { record, len } => {
                self.offset += len as u64;
                self.after_seq = Some(record.seq);
                Ok(Some(record))
            }
            // A whole record's bytes always decode to something.
            Decoded::End => self.damaged("empty record"),
            Decoded::Damaged(why) => self.damaged(why),
        }
    }

    /// Damage at `offset`: goes on at the next intact record after it, if
    /// there is one (else reading ends for good).
    fn damaged(&mut self, why: &'static str) -> io::Result<Option<WalRecord>> {
        self.damage = Some(why);
        self.inner.seek(SeekFrom::Start(self.offset + 1))?;
        let mut rest = Vec::new();
        self.inner.read_to_end(&mut rest)?;
        match next_intact(&rest, self.after_seq) {
            Some(at) => {
                self.offset += 1 + at as u64;
                self.inner.seek(SeekFrom::Start(self.offset))?;
                self.next_record()
            }
            None => {
                self.done = true;
                self.inner.seek(SeekFrom::Start(self.offset))?;
                Ok(None)
            }
        }
    }

    /// File offset after the last complete record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The last damage seen, if any (reading may have gone on after it).
    pub(crate) fn damage(&self) -> Option<&'static str> {
        self.damage
    }

    /// Whether damage ended the reading for good.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Back to the end of the last complete record, for the next call.
    fn rewind(&mut self) -> io::Result<Option<WalRecord>> {
        self.inner.seek(SeekFrom::Start(self.offset))?;
        Ok(None)
    }
}

/// How far past the last good sequence the next intact record may be: a
/// damaged region of more records than this is not looked past.
const RESYNC_SEQS: u64 = 1 << 20;

/// Where in `buf` the next intact record starts: one whose sequence comes
/// within [`RESYNC_SEQS`] after `after_seq` (checked first: it makes the
/// scan cheap), that decodes (length in range, checksum good, framing
/// valid) and, so that chance bytes cannot pass for one, that ends the data
/// or is followed by another intact record with the next sequence.
fn next_intact(buf: &[u8], after_seq: Option<u64>) -> Option<usize> {
    let lowest = after_seq.map_or(0, |s| s + 1);
    let at = |p: usize| -> Option<(u64, usize)> {
        let head = buf.get(p..p + 16)?;
        let body_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(18..=MAX_RECORD_BODY).contains(&body_len) {
            return None;
        }
        let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
        if seq < lowest || seq - lowest >= RESYNC_SEQS {
            return None;
        }
        let whole = buf.get(p..p + 8 + body_len)?;
        match record::decode(&Bytes::copy_from_slice(whole)) {
            Decoded::Record { record, len } => Some((record.seq, len)),
            _ => None,
        }
    };
    (0..buf.len().saturating_sub(8)).find(|&p| {
        let Some((seq, len)) = at(p) else {
            return false;
        };
        let end = p + len;
        end == buf.len() || at(end).is_some_and(|(next, _)| next == seq + 1)
    })
}

/// Fills `buf`; false if the file ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;

    fn write_segment(dir: &Path, first: u64, seqs: std::ops::Range<u64>, torn: bool) {
        let mut out = MAGIC.to_vec();
        for s in seqs {
            let mut b = BatchBuilder::new(b"t", 8);
            b.push(s as i64, &[0x80]);
            record::encode(&mut out, s, 0, b"", &b.finish());
        }
        if torn {
            out.extend_from_slice(&[9, 0, 0, 0, 1]);
        }
        std::fs::write(segment::segment_path(dir, first), out).unwrap();
    }

    #[test]
    fn reads_a_range_across_segments_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 0..5, false);
        write_segment(dir.path(), 5, 5..9, true);
        let mut seen = Vec::new();
        for_each_in::<io::Error>(dir.path(), 3, 7, |r| {
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![3, 4, 5, 6, 7]);
        seen.clear();
        for_each_in::<io::Error>(dir.path(), 0, u64::MAX, |r| {
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
    }
}
