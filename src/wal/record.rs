//! One WAL record on disk: `u32 body_len | u32 crc32(body) | body`, where
//! `body = u64 seq | i64 arrival_ms | u16 key_len | dedupe key | EventBatch bytes`
//! (all little endian). The dedupe key names a client's chunk so a resent
//! chunk is recognised after a restart too.
//!
//! The CRC covers the sequence number and arrival time too, so a torn or
//! flipped record is never replayed with a wrong position or time.

use bytes::{BufMut, Bytes};

use crate::event::EventBatch;

/// Bytes before the key: length, CRC, seq, arrival, key length.
pub(crate) const RECORD_HEADER: usize = 4 + 4 + 8 + 8 + 2;

/// Longest dedupe key kept (longer keys are cut; they stay unique enough).
pub(crate) const MAX_KEY: usize = 1024;

/// Largest record accepted when reading back; a longer length field is
/// treated as damage rather than an allocation request.
pub(crate) const MAX_RECORD_BODY: usize = 1 << 30;

/// Largest batch one record holds (with the header and a dedupe key):
/// a request decoding to more is refused before its ack.
pub(crate) const MAX_BATCH_BYTES: usize = MAX_RECORD_BODY - 18 - MAX_KEY;

/// A record read back from the log.
#[derive(Debug, Clone)]
pub(crate) struct WalRecord {
    /// Position in the log; strictly increasing, never reused.
    pub(crate) seq: u64,
    /// Wall-clock time (ms) the WAL accepted the record; never decreases.
    /// The roller decides lateness by it, so replay after a crash decides the same.
    pub(crate) arrival_ms: i64,
    /// The client's chunk identity (empty when it sent none).
    pub(crate) dedupe_key: Bytes,
    pub(crate) batch: EventBatch,
}

/// Appends one encoded record to `out`.
#[cfg(test)]
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, arrival_ms: i64, key: &[u8], batch: &EventBatch) {
    let payload = batch.as_bytes();
    out.reserve(RECORD_HEADER + key.len().min(MAX_KEY) + payload.len());
    encode_header(out, seq, arrival_ms, key, payload);
    out.put_slice(payload);
}

/// Appends the part of a record before its batch bytes to `out`; the
/// record is whole once `payload` follows it. The checksum covers
/// `payload`, so the batch can be written from where it already is.
pub(crate) fn encode_header(
    out: &mut Vec<u8>,
    seq: u64,
    arrival_ms: i64,
    key: &[u8],
    payload: &[u8],
) {
    let key = &key[..key.len().min(MAX_KEY)];
    let body_len = 18 + key.len() + payload.len();
    let start = out.len();
    out.put_u32_le(body_len as u32);
    out.put_u32_le(0);
    out.put_u64_le(seq);
    out.put_i64_le(arrival_ms);
    out.put_u16_le(key.len() as u16);
    out.put_slice(key);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + 8..]);
    crc.update(payload);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// What reading at an offset found.
#[derive(Debug)]
pub(crate) enum Decoded {
    Record {
        record: WalRecord,
        len: usize,
    },
    /// Clean end: no bytes left.
    End,
    /// Bytes that are not a whole valid record (torn write or damage).
    Damaged(&'static str),
}

/// Reads the record at the start of `buf` (a shared buffer of the segment).
pub(crate) fn decode(buf: &Bytes) -> Decoded {
    if buf.is_empty() {
        return Decoded::End;
    }
    if buf.len() < 8 {
        return Decoded::Damaged("short record header");
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(18..=MAX_RECORD_BODY).contains(&body_len) {
        return Decoded::Damaged("impossible record length");
    }
    let Some(body) = buf.get(8..8 + body_len) else {
        return Decoded::Damaged("record runs past the end of the segment");
    };
    if crc32fast::hash(body) != crc {
        return Decoded::Damaged("checksum mismatch");
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let arrival_ms = i64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
    let key_len = u16::from_le_bytes([body[16], body[17]]) as usize;
    if 18 + key_len > body_len {
        return Decoded::Damaged("dedupe key runs past the record");
    }
    let key_start = 8 + 18;
    match EventBatch::from_bytes(buf.slice(key_start + key_len..8 + body_len)) {
        Ok(batch) => Decoded::Record {
            record: WalRecord {
                seq,
                arrival_ms,
                dedupe_key: buf.slice(key_start..key_start + key_len),
                batch,
            },
            len: 8 + body_len,
        },
        Err(_) => Decoded::Damaged("batch framing invalid despite a good checksum"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;

    fn batch() -> EventBatch {
        let mut b = BatchBuilder::new(b"t", 16);
        b.push(7, &[0x81, 0xa1, b'k', 0x01]);
        b.finish()
    }

    #[test]
    fn round_trip_and_every_single_byte_flip_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, 1234, b"key", &batch());
        let bytes = Bytes::from(buf.clone());
        match decode(&bytes) {
            Decoded::Record { record, len } => {
                assert_eq!((record.seq, record.arrival_ms, len), (9, 1234, buf.len()));
                assert_eq!(&record.dedupe_key[..], b"key");
                assert_eq!(record.batch, batch());
            }
            other => panic!("{other:?}"),
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&Bytes::from(bad)), Decoded::Damaged(_)),
                "flip at {i} not caught"
            );
        }
        for cut in 1..buf.len() {
            assert!(matches!(
                decode(&Bytes::from(buf[..cut].to_vec())),
                Decoded::Damaged(_)
            ));
        }
    }
}
