//! One Treasure Data import part being written: gzip of msgpack record maps,
//! each given an integer `time` (seconds), which TD requires.
//!
//! # Memory
//! The gzip state and write buffer, and one record's re-encoding
//! ([`super::records`] counts a fixed cost per open part).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;

use crate::msgpack::{Cursor, Head};
use crate::sink::records::{ClosedPart, PartError, RecordPart};

pub(super) struct TdPartWriter {
    path: PathBuf,
    gz: GzEncoder<BufWriter<File>>,
    /// msgpack bytes written (before gzip).
    raw_bytes: usize,
    rows: u64,
    scratch: Vec<u8>,
}

impl TdPartWriter {
    pub(super) fn create(path: &Path) -> Result<Self, PartError> {
        let file = File::create(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            gz: GzEncoder::new(BufWriter::new(file), flate2::Compression::fast()),
            raw_bytes: 0,
            rows: 0,
            scratch: Vec::with_capacity(1024),
        })
    }
}

impl RecordPart for TdPartWriter {
    fn raw_bytes(&self) -> usize {
        self.raw_bytes
    }

    /// Writes the record with `time` set to the event's second (replacing a
    /// `time` key the record may have).
    fn append(&mut self, _tag: &[u8], time_ns: i64, record: &[u8]) -> Result<(), PartError> {
        let bad = PartError::BadRecord;
        let mut c = Cursor::new(record);
        let Head::Map(n) = c.head().map_err(bad)? else {
            return Err(PartError::BadRecord(
                crate::msgpack::MsgpackError::Truncated,
            ));
        };
        let body = c;
        let mut keep = 0u32;
        for _ in 0..n {
            let k = c.skip().map_err(bad)?;
            c.skip().map_err(bad)?;
            if k != b"\xa4time" {
                keep += 1;
            }
        }
        let out = &mut self.scratch;
        out.clear();
        out.push(0xdf);
        out.extend_from_slice(&(keep + 1).to_be_bytes());
        out.extend_from_slice(b"\xa4time");
        let _ = rmp::encode::write_sint(out, time_ns.div_euclid(1_000_000_000));
        let mut c = body;
        for _ in 0..n {
            let start = c.position();
            let k = c.skip().map_err(bad)?;
            c.skip().map_err(bad)?;
            if k != b"\xa4time" {
                out.extend_from_slice(&record[start..c.position()]);
            }
        }
        self.gz.write_all(out)?;
        self.raw_bytes += out.len();
        self.rows += 1;
        Ok(())
    }

    /// Finishes the gzip stream and syncs the file.
    fn finish(self: Box<Self>) -> Result<ClosedPart, PartError> {
        let this = *self;
        let file = this.gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        ClosedPart::sync(file, this.path, this.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn records_get_an_integer_time_and_keep_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut w: Box<dyn RecordPart> =
            Box::new(TdPartWriter::create(&dir.path().join("p.msgpack.gz")).unwrap());
        // {"a": 1, "time": "x"}
        let rec = [
            0x82, 0xa1, b'a', 0x01, 0xa4, b't', b'i', b'm', b'e', 0xa1, b'x',
        ];
        w.append(b"app.web", 1_700_000_000_900_000_000, &rec)
            .unwrap();
        let closed = w.finish().unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(File::open(&closed.path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let mut json = String::new();
        crate::roll::write_value(&mut json, &mut Cursor::new(&raw)).unwrap();
        assert_eq!(json, r#"{"time":1700000000,"a":1}"#);
        // The bytes TD receives, pinned: a map32 with `time` first.
        assert_eq!(
            raw,
            b"\xdf\x00\x00\x00\x02\xa4time\xce\x65\x53\xf1\x00\xa1a\x01".to_vec()
        );
    }
}
