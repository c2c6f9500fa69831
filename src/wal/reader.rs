//! Reading records back from the segments on disk, oldest first, one record
//! at a time: how the roller rebuilds its open files after it had to throw
//! them away (a quarantined record, a full disk).
//!
//! # Memory
//! One record at a time (at most one request), plus a 256 KiB read buffer.

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
        let mut reader = SegmentReader::new(file)?;
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
    /// Damage seen, and what it was: nothing more is read. The reader does
    /// not log it; its caller counts and logs it once, knowing what the
    /// damage costs (a torn tail, or records skipped).
    damage: Option<&'static str>,
    /// File offset after the last complete record.
    offset: u64,
}

impl SegmentReader {
    /// Checks the segment's magic.
    pub(crate) fn new(file: File) -> io::Result<Self> {
        let mut inner = BufReader::with_capacity(256 << 10, file);
        let mut magic = [0u8; 8];
        let damage = match inner.read_exact(&mut magic) {
            Ok(()) => (&magic != MAGIC).then_some("not a WAL segment (magic)"),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some("no segment header"),
            Err(e) => return Err(e),
        };
        Ok(Self {
            inner,
            damage,
            offset: MAGIC.len() as u64,
        })
    }

    /// The next intact record; `None` at the end of what is on disk (call
    /// again later for more) or for good after damage.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<WalRecord>> {
        if self.damage.is_some() {
            return Ok(None);
        }
        let mut head = [0u8; 8];
        if !read_full(&mut self.inner, &mut head)? {
            return self.rewind();
        }
        let body_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(18..=MAX_RECORD_BODY).contains(&body_len) {
            self.damage = Some("impossible record length");
            return Ok(None);
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
                Ok(Some(record))
            }
            // A whole record's bytes always decode to something.
            Decoded::End => {
                self.damage = Some("empty record");
                Ok(None)
            }
            Decoded::Damaged(why) => {
                self.damage = Some(why);
                Ok(None)
            }
        }
    }

    /// File offset after the last complete record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// What damage ended the reading for good, if any.
    pub(crate) fn damage(&self) -> Option<&'static str> {
        self.damage
    }

    /// Back to the end of the last complete record, for the next call.
    fn rewind(&mut self) -> io::Result<Option<WalRecord>> {
        self.inner.seek(SeekFrom::Start(self.offset))?;
        Ok(None)
    }
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
