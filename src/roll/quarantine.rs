//! Records the roller cannot turn into files, moved aside so the node
//! carries on (invariant 5: no input may make a node fail on every start).
//!
//! A quarantined WAL record is written to `data_dir/deadletter/roller/` as
//! `{seq}.wcap`, a capture file (proto/capture.md) holding the record's
//! events as one Forward-mode request, so after a fix it can be sent again
//! with `weir replay …/{seq}.wcap --to host:port`; `{seq}.json` beside it
//! says why. The roller skips quarantined sequences, also after a restart.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::capture::{encode_header, write_record, Kind, Record};
use crate::event::EventBatch;
use crate::wal::sync_dir;
use crate::wal::WalRecord;

/// The quarantine folder and the sequences in it.
pub(super) struct Quarantine {
    dir: PathBuf,
    seqs: BTreeSet<u64>,
}

impl Quarantine {
    /// Reads which sequences the folder holds (it is created with the
    /// first quarantined record, so a full disk cannot stop a start).
    pub(super) fn open(dir: PathBuf) -> io::Result<Self> {
        let mut seqs = BTreeSet::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self { dir, seqs }),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wcap"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.insert(seq);
            }
        }
        Ok(Self { dir, seqs })
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.seqs.contains(&seq)
    }

    /// Sequences below `oldest` can no longer be read from the WAL; their
    /// files stay, only the roller forgets them.
    pub(super) fn forget_below(&mut self, oldest: u64) {
        self.seqs = self.seqs.split_off(&oldest);
    }

    /// Moves a record aside durably; returns the capture file's path.
    pub(super) fn put(&mut self, r: &WalRecord, reason: &str) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let name = format!("{:020}", r.seq);
        let note = serde_json::json!({
            "seq": r.seq,
            "arrival_ms": r.arrival_ms,
            "tag": String::from_utf8_lossy(r.batch.tag()),
            "events": r.batch.len(),
            "reason": reason,
            "replay": format!("weir replay {} --to HOST:PORT", self.dir.join(format!("{name}.wcap")).display()),
        });
        write_synced(
            &self.dir.join(format!("{name}.json")),
            &serde_json::to_vec_pretty(&note).map_err(io::Error::other)?,
        )?;
        let mut capture = Vec::with_capacity(r.batch.as_bytes().len() + 256);
        let started_us = u64::try_from(r.arrival_ms)
            .unwrap_or(0)
            .saturating_mul(1000);
        capture.extend_from_slice(&encode_header(started_us));
        for (kind, payload) in [
            (Kind::Open, Bytes::from_static(b"quarantine")),
            (Kind::Request, Bytes::from(forward_request(&r.batch))),
            (Kind::Close, Bytes::new()),
        ] {
            write_record(
                &mut capture,
                &Record {
                    kind,
                    conn: 0,
                    offset_us: 0,
                    payload,
                },
            )?;
        }
        let path = self.dir.join(format!("{name}.wcap"));
        let tmp = self.dir.join(format!("{name}.wcap.tmp"));
        write_synced(&tmp, &capture)?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.seqs.insert(r.seq);
        Ok(path)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The batch as a Forward-mode request, `[tag, [[time, record], …]]`, with
/// exact times (msgpack timestamp 96: nanoseconds and seconds).
pub(super) fn forward_request(batch: &EventBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.as_bytes().len() + 16 * batch.len() + 16);
    out.push(0x92);
    let _ = rmp::encode::write_str_len(&mut out, batch.tag().len() as u32);
    out.extend_from_slice(batch.tag());
    let _ = rmp::encode::write_array_len(&mut out, batch.len() as u32);
    for ev in batch.events() {
        out.push(0x92);
        out.extend_from_slice(&[0xc7, 12, 0xff]);
        out.extend_from_slice(&(ev.time_ns.rem_euclid(1_000_000_000) as u32).to_be_bytes());
        out.extend_from_slice(&ev.time_ns.div_euclid(1_000_000_000).to_be_bytes());
        out.extend_from_slice(ev.record);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;
    use crate::input::{decode_request, DecodeLimits, Request};

    #[test]
    fn a_quarantined_record_decodes_back_to_the_same_events() {
        let mut b = BatchBuilder::new(b"app.web", 64);
        b.push(1_764_090_000_123_456_789, &[0x81, 0xa1, b'a', 0x01]);
        b.push(-1, &[0x80]);
        let batch = b.finish();
        let req = forward_request(&batch);
        let limits = DecodeLimits {
            max_decompressed_bytes: 1 << 20,
        };
        let Request::Events(d) = decode_request(&req, &limits, 0).unwrap() else {
            panic!("not events");
        };
        assert_eq!(d.batch.unwrap(), batch);

        let dir = tempfile::tempdir().unwrap();
        let mut q = Quarantine::open(dir.path().join("q")).unwrap();
        let r = WalRecord {
            seq: 42,
            arrival_ms: 1,
            dedupe_key: Bytes::new(),
            batch,
        };
        let path = q.put(&r, "test").unwrap();
        let reader = crate::capture::Reader::open(&path).unwrap();
        let records: Vec<_> = reader.collect();
        assert_eq!(records.len(), 3);
        assert_eq!(&records[1].payload[..], &req[..]);
        let again = Quarantine::open(dir.path().join("q")).unwrap();
        assert!(again.contains(42) && !again.contains(41));
    }
}
