//! A commit group: the records one write (and one sync) makes durable.
//!
//! Only the record headers are built here; the batches' bytes are written
//! from the buffers the forward stage decoded them into, with one vectored
//! write, so a large request is never copied again on its way to disk.

use std::io::{self, IoSlice, Write};

use bytes::Bytes;

use super::record;
use crate::event::EventBatch;

#[derive(Default)]
pub(super) struct Group {
    /// Every record's header, back to back.
    headers: Vec<u8>,
    /// Per record: where its header ends in `headers`, and its batch bytes.
    records: Vec<(usize, Bytes)>,
    len: u64,
}

impl Group {
    pub(super) fn push(&mut self, seq: u64, arrival_ms: i64, key: &[u8], batch: &EventBatch) {
        let payload = batch.as_bytes();
        let before = self.headers.len();
        record::encode_header(&mut self.headers, seq, arrival_ms, key, payload);
        self.records.push((self.headers.len(), payload.clone()));
        self.len += (self.headers.len() - before + payload.len()) as u64;
    }

    /// Bytes the group takes in the log.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Forgets the records (and lets go of their batches).
    pub(super) fn clear(&mut self) {
        self.headers.clear();
        self.records.clear();
        self.len = 0;
        if self.headers.capacity() > 1 << 20 {
            self.headers.shrink_to(64 << 10);
        }
    }

    /// Writes every record, in order, at the writer's position.
    pub(super) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut slices = Vec::with_capacity(self.records.len() * 2);
        let mut header_start = 0;
        for (header_end, payload) in &self.records {
            slices.push(IoSlice::new(&self.headers[header_start..*header_end]));
            if !payload.is_empty() {
                slices.push(IoSlice::new(payload));
            }
            header_start = *header_end;
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match out.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;

    /// Accepts at most `step` bytes per call, as a busy disk may.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = (self.step - n).min(b.len());
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_group_writes_exactly_what_encode_would_even_in_short_writes() {
        let batches: Vec<EventBatch> = (0..5u8)
            .map(|i| {
                let mut b = BatchBuilder::new(b"t", 16);
                for _ in 0..i {
                    b.push(7, &[0x81, 0xa1, b'k', i]);
                }
                b.finish()
            })
            .collect();
        let mut expected = Vec::new();
        let mut group = Group::default();
        for (i, b) in batches.iter().enumerate() {
            let key = vec![b'k'; i];
            record::encode(&mut expected, i as u64, 100 + i as i64, &key, b);
            group.push(i as u64, 100 + i as i64, &key, b);
        }
        assert_eq!(group.len(), expected.len() as u64);
        for step in [1, 3, 7, 64, 1 << 20] {
            let mut out = Trickle {
                out: Vec::new(),
                step,
            };
            group.write_to(&mut out).unwrap();
            assert_eq!(out.out, expected, "step {step}");
        }
        group.clear();
        assert_eq!(group.len(), 0);
    }
}
