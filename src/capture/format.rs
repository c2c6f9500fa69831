//! The capture file format, version 1 (specified in `proto/capture.md`).
//!
//! A 24-byte header, then framed records. Every record carries a CRC32 over
//! everything after its length and checksum, so a reader stops at the first
//! torn or damaged record and still hands back every record before it.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use bytes::Bytes;

/// First eight bytes of every capture file.
pub(crate) const MAGIC: &[u8; 8] = b"weircap\0";
/// The version this build writes and the newest it reads.
pub(crate) const VERSION: u16 = 1;
/// Bytes in the file header.
pub const HEADER_LEN: usize = 24;
/// Bytes in a record header: len u32, crc u32, kind u8, conn u64, offset_us u64.
pub const RECORD_HEADER_LEN: usize = 25;
/// A record longer than this is treated as damage, not allocated.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// What a record says happened on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One complete request (a msgpack object) exactly as the client sent it.
    Request = 1,
    /// A connection opened; the payload is the peer address as text.
    Open = 2,
    /// A connection closed; no payload.
    Close = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Request),
            2 => Some(Kind::Open),
            3 => Some(Kind::Close),
            _ => None,
        }
    }
}

/// One record of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// Connection id, unique within the capturing process.
    pub(crate) conn: u64,
    /// Microseconds after the file header's start time.
    pub offset_us: u64,
    pub payload: Bytes,
}

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u16,
    /// Wall clock when the file was started, microseconds since the epoch.
    pub(crate) started_unix_us: u64,
}

/// Encodes the file header.
pub(crate) fn encode_header(started_unix_us: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    // 10..12: flags, zero in version 1.
    h[12..20].copy_from_slice(&started_unix_us.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Writes one record; returns the bytes written.
pub(crate) fn write_record(w: &mut impl Write, r: &Record) -> io::Result<usize> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[0..4].copy_from_slice(&(r.payload.len() as u32).to_le_bytes());
    head[8] = r.kind as u8;
    head[9..17].copy_from_slice(&r.conn.to_le_bytes());
    head[17..25].copy_from_slice(&r.offset_us.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[8..]);
    crc.update(&r.payload);
    head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    w.write_all(&head)?;
    w.write_all(&r.payload)?;
    Ok(RECORD_HEADER_LEN + r.payload.len())
}

/// Why a capture file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: not a weir capture file (bad magic)")]
    NotCapture { path: String },
    #[error("{path}: capture format version {version}; this weir reads version {VERSION}")]
    Version { path: String, version: u16 },
    #[error("{path}: the file header is damaged (checksum mismatch)")]
    HeaderDamaged { path: String },
}

/// Where and why reading stopped before the end of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first record not read.
    pub(crate) offset: u64,
    /// Records read before it.
    pub(crate) records_before: u64,
    pub(crate) reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {} (after {} good records)",
            self.reason, self.offset, self.records_before
        )
    }
}

/// Reads records in order, stopping at the end or at the first damage.
pub struct Reader<R> {
    inner: R,
    pub(crate) header: Header,
    offset: u64,
    records: u64,
    damage: Option<Damage>,
    done: bool,
}

impl Reader<BufReader<File>> {
    /// Opens a capture file and checks its header.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| OpenError::Io {
            path: name.clone(),
            source,
        })?;
        Self::new(BufReader::with_capacity(1 << 20, f), &name)
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header from `inner`; `name` labels errors.
    pub(crate) fn new(mut inner: R, name: &str) -> Result<Self, OpenError> {
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut h).map_err(|source| OpenError::Io {
            path: name.to_string(),
            source,
        })?;
        if got < 8 || &h[..8] != MAGIC {
            return Err(OpenError::NotCapture {
                path: name.to_string(),
            });
        }
        if got < HEADER_LEN
            || crc32fast::hash(&h[..20]) != u32::from_le_bytes([h[20], h[21], h[22], h[23]])
        {
            return Err(OpenError::HeaderDamaged {
                path: name.to_string(),
            });
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(OpenError::Version {
                path: name.to_string(),
                version,
            });
        }
        let mut started = [0u8; 8];
        started.copy_from_slice(&h[12..20]);
        Ok(Self {
            inner,
            header: Header {
                version,
                started_unix_us: u64::from_le_bytes(started),
            },
            offset: HEADER_LEN as u64,
            records: 0,
            damage: None,
            done: false,
        })
    }

    /// Why reading stopped early, once the iterator has ended.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    fn stop(&mut self, reason: impl Into<String>) -> Option<Record> {
        self.done = true;
        self.damage = Some(Damage {
            offset: self.offset,
            records_before: self.records,
            reason: reason.into(),
        });
        None
    }

    fn next_record(&mut self) -> Option<Record> {
        if self.done {
            return None;
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        let got = match read_full(&mut self.inner, &mut head) {
            Ok(n) => n,
            Err(e) => return self.stop(format!("read error: {e}")),
        };
        if got == 0 {
            self.done = true;
            return None;
        }
        if got < RECORD_HEADER_LEN {
            return self.stop("truncated record header");
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(kind) = Kind::from_u8(head[8]) else {
            return self.stop(format!("unknown record kind {}", head[8]));
        };
        if len > MAX_PAYLOAD {
            return self.stop(format!("record length {len} is implausible"));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut self.inner, &mut payload) {
            Ok(n) if n == len => {}
            Ok(n) => {
                return self.stop(format!(
                    "truncated record ({n} of {len} payload bytes present)"
                ))
            }
            Err(e) => return self.stop(format!("read error: {e}")),
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[8..]);
        crc.update(&payload);
        if crc.finalize() != u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
            return self.stop("checksum mismatch");
        }
        let mut u = [0u8; 8];
        u.copy_from_slice(&head[9..17]);
        let conn = u64::from_le_bytes(u);
        u.copy_from_slice(&head[17..25]);
        let offset_us = u64::from_le_bytes(u);
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        self.records += 1;
        Some(Record {
            kind,
            conn,
            offset_us,
            payload: Bytes::from(payload),
        })
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        self.next_record()
    }
}

/// Reads until `buf` is full or the input ends; returns bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, Vec<Record>) {
        let records = vec![
            Record {
                kind: Kind::Open,
                conn: 1,
                offset_us: 0,
                payload: Bytes::from_static(b"127.0.0.1:5000"),
            },
            Record {
                kind: Kind::Request,
                conn: 1,
                offset_us: 1500,
                payload: Bytes::from_static(&[0x93, 0xa1, b't', 0x90, 0x80]),
            },
            Record {
                kind: Kind::Close,
                conn: 1,
                offset_us: 2000,
                payload: Bytes::new(),
            },
        ];
        let mut file = encode_header(1_700_000_000_000_000).to_vec();
        for r in &records {
            write_record(&mut file, r).unwrap();
        }
        (file, records)
    }

    #[test]
    fn round_trips() {
        let (file, records) = sample();
        let mut r = Reader::new(&file[..], "t").unwrap();
        assert_eq!(r.header.started_unix_us, 1_700_000_000_000_000);
        let got: Vec<_> = r.by_ref().collect();
        assert_eq!(got, records);
        assert_eq!(r.damage(), None);
    }

    #[test]
    fn every_truncation_yields_the_records_before_it() {
        let (file, records) = sample();
        let ends: Vec<usize> = records
            .iter()
            .scan(HEADER_LEN, |at, r| {
                *at += RECORD_HEADER_LEN + r.payload.len();
                Some(*at)
            })
            .collect();
        for cut in HEADER_LEN..file.len() {
            let mut r = Reader::new(&file[..cut], "t").unwrap();
            let got: Vec<_> = r.by_ref().collect();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), whole, "cut at {cut}");
            let at_boundary = cut == HEADER_LEN || ends.contains(&cut);
            assert_eq!(r.damage().is_some(), !at_boundary, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_stops_at_that_record() {
        let (mut file, _) = sample();
        let second = HEADER_LEN + RECORD_HEADER_LEN + 14;
        file[second + RECORD_HEADER_LEN + 2] ^= 0x40;
        let mut r = Reader::new(&file[..], "t").unwrap();
        assert_eq!(r.by_ref().count(), 1);
        let d = r.damage().unwrap();
        assert_eq!(d.offset, second as u64);
        assert_eq!(d.reason, "checksum mismatch");
    }

    #[test]
    fn headers_are_checked() {
        let (file, _) = sample();
        assert!(matches!(
            Reader::new(&b"GIF89a..........................."[..], "x"),
            Err(OpenError::NotCapture { .. })
        ));
        let mut v2 = file.clone();
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[..20]);
        v2[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Reader::new(&v2[..], "x"),
            Err(OpenError::Version { version: 2, .. })
        ));
        let mut bad = file;
        bad[13] ^= 1;
        assert!(matches!(
            Reader::new(&bad[..], "x"),
            Err(OpenError::HeaderDamaged { .. })
        ));
    }
}
