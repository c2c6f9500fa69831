//! One forward part being written: the events of every tag routed to the
//! sink since the part opened, each as `[tag, EventTime, record]` (the tag
//! it goes out under), plain msgpack. Sending regroups them per tag into
//! PackedForward messages ([`super::chunk`]), so one part is one round of
//! messages on one connection, however many tags it holds.
//!
//! # Memory
//! The write buffer and the last tag's name; records are written as they
//! come ([`super::records`] counts a fixed cost per open part).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::event::MAX_TAG_LEN;
use crate::msgpack::{Cursor, Head};
use crate::sink::records::{ClosedPart, PartError, RecordPart};

/// The tag an event goes out under: `tag`, or `tag_prefix` + its own, cut
/// to the longest tag a forward server takes ([`MAX_TAG_LEN`] bytes; a
/// server skips the events of a longer one).
#[derive(Debug, Clone)]
pub(crate) struct OutTag {
    fixed: Option<String>,
    prefix: String,
}

impl OutTag {
    pub(crate) fn new(fixed: Option<&str>, prefix: &str) -> Self {
        Self {
            fixed: fixed.map(str::to_string),
            prefix: prefix.to_string(),
        }
    }

    pub(crate) fn of(&self, tag: &[u8]) -> String {
        let mut out = match &self.fixed {
            Some(t) => t.clone(),
            None => format!("{}{}", self.prefix, String::from_utf8_lossy(tag)),
        };
        if out.len() > MAX_TAG_LEN {
            let mut cut = MAX_TAG_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

pub(crate) struct ForwardPartWriter {
    path: PathBuf,
    out: BufWriter<File>,
    tags: OutTag,
    /// The last tag seen and its encoded out-tag (`fixstr`/`str8`…).
    last_tag: Vec<u8>,
    last_out: Vec<u8>,
    raw_bytes: usize,
    rows: u64,
}

impl ForwardPartWriter {
    pub(crate) fn create(path: &Path, tags: OutTag) -> Result<Self, PartError> {
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 << 10, File::create(path)?),
            tags,
            last_tag: Vec::new(),
            last_out: Vec::new(),
            raw_bytes: 0,
            rows: 0,
        })
    }
}

/// `EventTime(time_ns)`: msgpack ext type 0 with seconds and nanoseconds as
/// big-endian u32, so a receiver keeps the nanoseconds (10 bytes).
pub(crate) fn event_time(time_ns: i64) -> [u8; 10] {
    let secs = time_ns.div_euclid(1_000_000_000).clamp(0, u32::MAX as i64) as u32;
    let nanos = time_ns.rem_euclid(1_000_000_000) as u32;
    let mut h = [0u8; 10];
    h[0] = 0xd7;
    h[1] = 0x00;
    h[2..6].copy_from_slice(&secs.to_be_bytes());
    h[6..10].copy_from_slice(&nanos.to_be_bytes());
    h
}

impl RecordPart for ForwardPartWriter {
    fn raw_bytes(&self) -> usize {
        self.raw_bytes
    }

    fn append(&mut self, tag: &[u8], time_ns: i64, record: &[u8]) -> Result<(), PartError> {
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
        if self.rows == 0 || tag != self.last_tag.as_slice() {
            self.last_tag.clear();
            self.last_tag.extend_from_slice(tag);
            self.last_out.clear();
            let _ = rmp::encode::write_str(&mut self.last_out, &self.tags.of(tag));
        }
        let time = event_time(time_ns);
        self.out.write_all(&[0x93])?;
        self.out.write_all(&self.last_out)?;
        self.out.write_all(&time)?;
        self.out.write_all(record)?;
        self.raw_bytes += 1 + self.last_out.len() + time.len() + record.len();
        self.rows += 1;
        Ok(())
    }

    /// Syncs the file.
    fn finish(self: Box<Self>) -> Result<ClosedPart, PartError> {
        let this = *self;
        let file = this.out.into_inner().map_err(|e| e.into_error())?;
        ClosedPart::sync(file, this.path, this.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_out_tag_and_event_time_with_nanoseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let tags = OutTag::new(None, "dc1.");
        let mut w: Box<dyn RecordPart> = Box::new(ForwardPartWriter::create(&path, tags).unwrap());
        w.append(b"a", 1_700_000_000_123_456_789, b"\x81\xa1a\x01")
            .unwrap();
        assert!(
            w.append(b"a", 0, b"\x01").is_err(),
            "a record that is not a map"
        );
        let closed = w.finish().unwrap();
        assert_eq!(closed.rows, 1);
        let raw = std::fs::read(&closed.path).unwrap();
        let mut want = vec![0x93, 0xa5];
        want.extend_from_slice(b"dc1.a");
        want.extend_from_slice(&[0xd7, 0x00]);
        want.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        want.extend_from_slice(&123_456_789u32.to_be_bytes());
        want.extend_from_slice(b"\x81\xa1a\x01");
        assert_eq!(raw, want);
    }

    #[test]
    fn a_prefixed_tag_never_passes_what_a_server_takes() {
        let t = OutTag::new(None, "dc1.");
        assert_eq!(t.of(b"app.web"), "dc1.app.web");
        let long = "é".repeat(600);
        let out = t.of(long.as_bytes());
        assert!(out.len() <= MAX_TAG_LEN && out.starts_with("dc1.é"));
        assert_eq!(OutTag::new(Some("all"), "").of(b"x"), "all");
    }

    #[test]
    fn times_before_1970_or_past_2106_are_clamped_not_wrapped() {
        assert_eq!(&event_time(-5)[2..6], &0u32.to_be_bytes());
        assert_eq!(&event_time(i64::MAX)[2..6], &u32::MAX.to_be_bytes());
    }
}
