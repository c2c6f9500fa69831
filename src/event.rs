//! [`EventBatch`]: the accepted events of one forward request, as one buffer.
//!
//! A batch is encoded once, by the forward decoder, in the exact form the
//! write-ahead log stores and the roller reads, so events are copied out of
//! the socket buffer once and never re-serialised between stages.
//!
//! Layout (little endian):
//! ```text
//! u16 tag_len | tag bytes | u32 count | count × ( i64 time_ns | u32 len | record msgpack map )
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Longest tag accepted from a client; fluentd tags are short dotted names.
pub(crate) const MAX_TAG_LEN: usize = 1024;

/// Longest tag stored: a client's tag behind `forward.tag_prefix` (at most
/// 256 bytes and a dot), never cut, so two tags cannot become one.
pub(crate) const MAX_STORED_TAG_LEN: usize = MAX_TAG_LEN + 257;

/// Events of one tag, encoded for the WAL. Cheap to clone (shared bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct EventBatch {
    bytes: Bytes,
    count: u32,
}

/// Why stored batch bytes cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("malformed event batch: {0}")]
pub struct BatchError(&'static str);

impl EventBatch {
    /// The encoded form, as stored in the WAL.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Reads a batch back from WAL bytes, checking its framing.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, BatchError> {
        let view = BatchView::parse(&bytes)?;
        let count = view.count;
        // Walk the events once so later iteration cannot fail.
        let mut it = Events {
            rest: &bytes[view.body_start..],
        };
        for _ in 0..count {
            it.next_checked()?
                .ok_or(BatchError("fewer events than counted"))?;
        }
        if !it.rest.is_empty() {
            return Err(BatchError("trailing bytes"));
        }
        Ok(Self { bytes, count })
    }

    pub fn tag(&self) -> &[u8] {
        let n = u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize;
        &self.bytes[2..2 + n]
    }

    /// The events in arrival order.
    pub fn events(&self) -> Events<'_> {
        let n = u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize;
        Events {
            rest: &self.bytes[2 + n + 4..],
        }
    }
}

struct BatchView {
    count: u32,
    body_start: usize,
}

impl BatchView {
    fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < 2 {
            return Err(BatchError("short header"));
        }
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        let c = b.get(2 + n..2 + n + 4).ok_or(BatchError("short header"))?;
        Ok(Self {
            count: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            body_start: 2 + n + 4,
        })
    }
}

/// One event: time and the record's msgpack map bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    /// The record as the client sent it: a msgpack map.
    pub record: &'a [u8],
}

/// Iterator over a batch's events.
pub struct Events<'a> {
    rest: &'a [u8],
}

impl<'a> Events<'a> {
    fn next_checked(&mut self) -> Result<Option<Event<'a>>, BatchError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        if self.rest.len() < 12 {
            return Err(BatchError("short event header"));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.rest[..8]);
        let len =
            u32::from_le_bytes([self.rest[8], self.rest[9], self.rest[10], self.rest[11]]) as usize;
        let record = self
            .rest
            .get(12..12 + len)
            .ok_or(BatchError("short record"))?;
        self.rest = &self.rest[12 + len..];
        Ok(Some(Event {
            time_ns: i64::from_le_bytes(t),
            record,
        }))
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        // Batches are checked when built or read back, so this cannot fail.
        self.next_checked().ok().flatten()
    }
}

/// Builds an [`EventBatch`] one event at a time.
pub struct BatchBuilder {
    buf: BytesMut,
    count: u32,
    count_at: usize,
    /// Encoded key/value pairs added to every record (the peer address
    /// and host name, `forward.source_*_key`), and how many.
    extra: Vec<u8>,
    extra_pairs: u32,
}

impl BatchBuilder {
    /// Starts a batch; `tag` must be at most [`MAX_STORED_TAG_LEN`] bytes.
    pub fn new(tag: &[u8], capacity: usize) -> Self {
        debug_assert!(tag.len() <= MAX_STORED_TAG_LEN);
        let mut buf = BytesMut::with_capacity(capacity + tag.len() + 6);
        buf.put_u16_le(tag.len() as u16);
        buf.put_slice(tag);
        let count_at = buf.len();
        buf.put_u32_le(0);
        Self {
            buf,
            count: 0,
            count_at,
            extra: Vec::new(),
            extra_pairs: 0,
        }
    }

    /// Adds `key: value` (both strings) to every record pushed from now on.
    pub(crate) fn add_to_every_record(&mut self, key: &str, value: &str) {
        let _ = rmp::encode::write_str(&mut self.extra, key);
        let _ = rmp::encode::write_str(&mut self.extra, value);
        self.extra_pairs += 1;
    }

    /// Adds an event; `record` must be a msgpack map.
    pub fn push(&mut self, time_ns: i64, record: &[u8]) {
        let extra = if self.extra_pairs == 0 {
            None
        } else {
            match crate::msgpack::read_head(record) {
                Ok(Some((crate::msgpack::Head::Map(n), hlen))) => Some((&self.extra[..], n, hlen)),
                _ => None,
            }
        };
        let len = match extra {
            Some((kv, _, hlen)) => 5 + record.len() - hlen + kv.len(),
            None => record.len(),
        };
        self.buf.reserve(12 + len);
        self.buf.put_i64_le(time_ns);
        self.buf.put_u32_le(len as u32);
        match extra {
            Some((kv, n, hlen)) => {
                // map32 header with one more pair, the pairs, then ours.
                self.buf.put_u8(0xdf);
                self.buf.put_u32(n + self.extra_pairs);
                self.buf.put_slice(&record[hlen..]);
                self.buf.put_slice(kv);
            }
            None => self.buf.put_slice(record),
        }
        self.count += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch holds so far.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn finish(mut self) -> EventBatch {
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        EventBatch {
            bytes: self.buf.freeze(),
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = BatchBuilder::new(b"app.web", 64);
        b.push(1_000, &[0x80]);
        b.push(-5, &[0x81, 0xa1, b'a', 0x01]);
        let batch = b.finish();
        let back = EventBatch::from_bytes(batch.as_bytes().clone()).unwrap();
        assert_eq!(back.tag(), b"app.web");
        let ev: Vec<_> = back.events().collect();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].time_ns, 1_000);
        assert_eq!(ev[1].record, &[0x81, 0xa1, b'a', 0x01]);
    }

    #[test]
    fn an_extra_pair_is_added_to_every_record() {
        let mut b = BatchBuilder::new(b"t", 16);
        b.add_to_every_record("src", "10.0.0.1");
        b.push(1, &[0x81, 0xa1, b'a', 0x01]);
        let batch = b.finish();
        let ev = batch.events().next().unwrap();
        let mut json = String::new();
        crate::roll::write_value(&mut json, &mut crate::msgpack::Cursor::new(ev.record)).unwrap();
        assert_eq!(json, r#"{"a":1,"src":"10.0.0.1"}"#);
    }

    #[test]
    fn damaged_bytes_are_rejected() {
        let mut b = BatchBuilder::new(b"t", 8);
        b.push(1, &[0x80]);
        let bytes = b.finish().as_bytes().clone();
        for cut in 0..bytes.len() {
            assert!(
                EventBatch::from_bytes(bytes.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
    }
}
