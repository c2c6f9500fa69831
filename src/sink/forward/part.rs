//! One forward chunk being written: the PackedForward entries stream
//! (`[EventTime, record]` after each other), gzip-compressed for
//! CompressedPackedForward. The file is the message's entries as they go
//! on the wire, so sending it is one read.
//!
//! # Memory
//! The write buffer (and with gzip the deflate state); records are written
//! as they come ([`super::records`] counts a fixed cost per open chunk).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;

use crate::msgpack::{Cursor, Head};
use crate::sink::records::{ClosedPart, PartError, RecordPart};

enum Out {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

pub(super) struct ForwardPartWriter {
    path: PathBuf,
    out: Out,
    raw_bytes: usize,
    rows: u64,
}

impl ForwardPartWriter {
    pub(super) fn create(path: &Path, gzip: bool) -> Result<Self, PartError> {
        let file = BufWriter::with_capacity(64 << 10, File::create(path)?);
        let out = if gzip {
            Out::Gzip(Box::new(GzEncoder::new(file, flate2::Compression::fast())))
        } else {
            Out::Plain(file)
        };
        Ok(Self {
            path: path.to_path_buf(),
            out,
            raw_bytes: 0,
            rows: 0,
        })
    }
}

/// `[EventTime(time_ns), ` : the entry's head, 11 bytes. EventTime is
/// msgpack ext type 0 with seconds and nanoseconds as big-endian u32, so a
/// receiver keeps the nanoseconds.
pub(super) fn entry_head(time_ns: i64) -> [u8; 11] {
    let secs = time_ns.div_euclid(1_000_000_000).clamp(0, u32::MAX as i64) as u32;
    let nanos = time_ns.rem_euclid(1_000_000_000) as u32;
    let mut h = [0u8; 11];
    h[0] = 0x92;
    h[1] = 0xd7;
    h[2] = 0x00;
    h[3..7].copy_from_slice(&secs.to_be_bytes());
    h[7..11].copy_from_slice(&nanos.to_be_bytes());
    h
}

impl RecordPart for ForwardPartWriter {
    fn raw_bytes(&self) -> usize {
        self.raw_bytes
    }

    fn append(&mut self, time_ns: i64, record: &[u8]) -> Result<(), PartError> {
        let mut c = Cursor::new(record);
        match c.head() {
            Ok(Head::Map(_)) => {}
            Ok(_) => {
                return Err(PartError::BadRecord(
                    crate::msgpack::MsgpackError::Truncated,
                ))
            }
            Err(e) => return Err(PartError::BadRecord(e)),
        }
        let head = entry_head(time_ns);
        match &mut self.out {
            Out::Plain(w) => {
                w.write_all(&head)?;
                w.write_all(record)?;
            }
            Out::Gzip(w) => {
                w.write_all(&head)?;
                w.write_all(record)?;
            }
        }
        self.raw_bytes += head.len() + record.len();
        self.rows += 1;
        Ok(())
    }

    /// Ends the stream and syncs the file.
    fn finish(self: Box<Self>) -> Result<ClosedPart, PartError> {
        let this = *self;
        let buffered = match this.out {
            Out::Plain(w) => w,
            Out::Gzip(w) => w.finish()?,
        };
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        ClosedPart::sync(file, this.path, this.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(gzip: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut w: Box<dyn RecordPart> = Box::new(ForwardPartWriter::create(&path, gzip).unwrap());
        w.append(1_700_000_000_123_456_789, b"\x81\xa1a\x01")
            .unwrap();
        assert!(w.append(0, b"\x01").is_err(), "a record that is not a map");
        let closed = w.finish().unwrap();
        assert_eq!(closed.rows, 1);
        let raw = std::fs::read(&closed.path).unwrap();
        if !gzip {
            return raw;
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn entries_carry_event_time_with_nanoseconds() {
        for gzip in [false, true] {
            let e = entries(gzip);
            let secs = 1_700_000_000u32.to_be_bytes();
            let nanos = 123_456_789u32.to_be_bytes();
            let mut want = vec![0x92, 0xd7, 0x00];
            want.extend_from_slice(&secs);
            want.extend_from_slice(&nanos);
            want.extend_from_slice(b"\x81\xa1a\x01");
            assert_eq!(e, want, "gzip {gzip}");
        }
    }

    #[test]
    fn times_before_1970_or_past_2106_are_clamped_not_wrapped() {
        assert_eq!(&entry_head(-5)[3..7], &0u32.to_be_bytes());
        assert_eq!(&entry_head(i64::MAX)[3..7], &u32::MAX.to_be_bytes());
    }
}
