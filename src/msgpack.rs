//! Zero-copy MessagePack reading over byte slices.
//!
//! The forward protocol is a stream of msgpack objects with no length prefix,
//! and real clients use non-minimal encodings (str32 entries, array32 headers).
//! This module gives three things on top of `rmp`'s marker table:
//! - [`Head`]: one object's header, read without copying its payload;
//! - [`Cursor`]: a reader over a *complete* buffer, used to decode a frame;
//! - [`FrameScanner`]: a resumable scanner that finds where the next whole
//!   top-level object ends, keeping its place between socket reads so a large
//!   frame arriving in many reads is scanned once, not once per read.
//!
//! Strings are treated as raw bytes: Fluentd packs binary data as str, so
//! nothing here validates UTF-8.

use rmp::Marker;

/// How deep arrays and maps may nest. Real records nest a few levels; the cap
/// keeps a hostile frame from growing the scanner's stack without bound.
pub(crate) const MAX_DEPTH: usize = 128;

/// One msgpack object's header. For str, bin and ext the payload follows the
/// header and is `len` bytes long; arrays and maps are followed by their items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Head {
    Nil,
    Bool(bool),
    /// Any integer that fits i64.
    Int(i64),
    /// An unsigned integer above i64::MAX.
    BigUint(u64),
    Float(f64),
    Str(u32),
    Bin(u32),
    Array(u32),
    Map(u32),
    Ext(i8, u32),
}

impl Head {
    /// Bytes of payload that follow the header (not counting nested items).
    pub(crate) fn payload_len(&self) -> usize {
        match *self {
            Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => n as usize,
            _ => 0,
        }
    }

    /// Nested items that follow (array elements, or map keys and values).
    pub(crate) fn child_count(&self) -> u64 {
        match *self {
            Head::Array(n) => u64::from(n),
            Head::Map(n) => 2 * u64::from(n),
            _ => 0,
        }
    }
}

/// Why bytes are not valid msgpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("invalid msgpack marker 0xc1")]
    ReservedMarker,
    #[error("msgpack nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("msgpack object ends before its declared length")]
    Truncated,
}

#[inline]
fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
#[inline]
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
#[inline]
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads the header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is too short to hold the whole header (more
/// bytes are needed), otherwise the header and its length in bytes.
#[inline]
pub(crate) fn read_head(buf: &[u8]) -> Result<Option<(Head, usize)>, MsgpackError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // (extra header bytes after the marker)
    let need = |n: usize| buf.len() > n;
    let rest = &buf[1..];
    let head = match Marker::from_u8(first) {
        Marker::FixPos(v) => (Head::Int(i64::from(v)), 1),
        Marker::FixNeg(v) => (Head::Int(i64::from(v)), 1),
        Marker::FixMap(n) => (Head::Map(u32::from(n)), 1),
        Marker::FixArray(n) => (Head::Array(u32::from(n)), 1),
        Marker::FixStr(n) => (Head::Str(u32::from(n)), 1),
        Marker::Null => (Head::Nil, 1),
        Marker::Reserved => return Err(MsgpackError::ReservedMarker),
        Marker::False => (Head::Bool(false), 1),
        Marker::True => (Head::Bool(true), 1),
        m @ (Marker::Bin8 | Marker::Str8) => {
            if !need(1) {
                return Ok(None);
            }
            let n = u32::from(rest[0]);
            (
                if m == Marker::Bin8 {
                    Head::Bin(n)
                } else {
                    Head::Str(n)
                },
                2,
            )
        }
        m @ (Marker::Bin16 | Marker::Str16 | Marker::Array16 | Marker::Map16) => {
            if !need(2) {
                return Ok(None);
            }
            let n = u32::from(be_u16(rest));
            let h = match m {
                Marker::Bin16 => Head::Bin(n),
                Marker::Str16 => Head::Str(n),
                Marker::Array16 => Head::Array(n),
                _ => Head::Map(n),
            };
            (h, 3)
        }
        m @ (Marker::Bin32 | Marker::Str32 | Marker::Array32 | Marker::Map32) => {
            if !need(4) {
                return Ok(None);
            }
            let n = be_u32(rest);
            let h = match m {
                Marker::Bin32 => Head::Bin(n),
                Marker::Str32 => Head::Str(n),
                Marker::Array32 => Head::Array(n),
                _ => Head::Map(n),
            };
            (h, 5)
        }
        Marker::Ext8 => {
            if !need(2) {
                return Ok(None);
            }
            (Head::Ext(rest[1] as i8, u32::from(rest[0])), 3)
        }
        Marker::Ext16 => {
            if !need(3) {
                return Ok(None);
            }
            (Head::Ext(rest[2] as i8, u32::from(be_u16(rest))), 4)
        }
        Marker::Ext32 => {
            if !need(5) {
                return Ok(None);
            }
            (Head::Ext(rest[4] as i8, be_u32(rest)), 6)
        }
        m @ (Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16) => {
            if !need(1) {
                return Ok(None);
            }
            let len = match m {
                Marker::FixExt1 => 1,
                Marker::FixExt2 => 2,
                Marker::FixExt4 => 4,
                Marker::FixExt8 => 8,
                _ => 16,
            };
            (Head::Ext(rest[0] as i8, len), 2)
        }
        Marker::F32 => {
            if !need(4) {
                return Ok(None);
            }
            (Head::Float(f64::from(f32::from_bits(be_u32(rest)))), 5)
        }
        Marker::F64 => {
            if !need(8) {
                return Ok(None);
            }
            (Head::Float(f64::from_bits(be_u64(rest))), 9)
        }
        Marker::U8 => {
            if !need(1) {
                return Ok(None);
            }
            (Head::Int(i64::from(rest[0])), 2)
        }
        Marker::U16 => {
            if !need(2) {
                return Ok(None);
            }
            (Head::Int(i64::from(be_u16(rest))), 3)
        }
        Marker::U32 => {
            if !need(4) {
                return Ok(None);
            }
            (Head::Int(i64::from(be_u32(rest))), 5)
        }
        Marker::U64 => {
            if !need(8) {
                return Ok(None);
            }
            let v = be_u64(rest);
            match i64::try_from(v) {
                Ok(i) => (Head::Int(i), 9),
                Err(_) => (Head::BigUint(v), 9),
            }
        }
        Marker::I8 => {
            if !need(1) {
                return Ok(None);
            }
            (Head::Int(i64::from(rest[0] as i8)), 2)
        }
        Marker::I16 => {
            if !need(2) {
                return Ok(None);
            }
            (Head::Int(i64::from(be_u16(rest) as i16)), 3)
        }
        Marker::I32 => {
            if !need(4) {
                return Ok(None);
            }
            (Head::Int(i64::from(be_u32(rest) as i32)), 5)
        }
        Marker::I64 => {
            if !need(8) {
                return Ok(None);
            }
            (Head::Int(be_u64(rest) as i64), 9)
        }
    };
    Ok(Some(head))
}

/// Finds the end of the next complete top-level object in a growing buffer.
///
/// Call [`FrameScanner::scan`] with the whole unconsumed buffer after each
/// read. The scanner remembers how far it got, so each byte is examined once
/// even when a frame arrives in thousands of reads. After a frame is taken
/// off the front of the buffer, call [`FrameScanner::reset`].
///
/// # Memory
/// The scanner holds one counter per open array/map, at most [`MAX_DEPTH`].
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Offset of the next header to read.
    pos: usize,
    /// Items still to read in each open container, innermost last.
    stack: Vec<u64>,
    /// Set once the top-level object's last header was read: where it ends
    /// (its final payload may still be arriving).
    end: Option<usize>,
}

impl FrameScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets progress; call after consuming a frame from the buffer front.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
        self.end = None;
    }

    /// Returns the length of the first complete object in `buf`, or `None`
    /// if more bytes are needed. `buf` must start where the previous call's
    /// buffer started and only ever grow between calls until `reset`.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, MsgpackError> {
        if let Some(end) = self.end {
            return Ok((end <= buf.len()).then_some(end));
        }
        loop {
            if self.pos > buf.len() {
                // A payload that runs past the end of what has arrived.
                return Ok(None);
            }
            let Some((head, hlen)) = read_head(&buf[self.pos..])? else {
                return Ok(None);
            };
            self.pos += hlen + head.payload_len();
            let children = head.child_count();
            if children > 0 {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(MsgpackError::TooDeep);
                }
                self.stack.push(children);
                continue;
            }
            // A leaf (or empty container) finished: pop finished containers.
            loop {
                match self.stack.last_mut() {
                    None => {
                        self.end = Some(self.pos);
                        return Ok((self.pos <= buf.len()).then_some(self.pos));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.stack.pop();
                    }
                }
            }
        }
    }
}

/// Bytes in, complete top-level objects out, in order: a buffer and its
/// [`FrameScanner`]. Callers that must bound memory watch
/// [`FrameBuffer::pending`].
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    buf: bytes::BytesMut,
    scanner: FrameScanner,
}

impl FrameBuffer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they were read.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete object off the front, if one has arrived.
    pub(crate) fn next_frame(&mut self) -> Result<Option<bytes::Bytes>, MsgpackError> {
        let Some(len) = self.scanner.scan(&self.buf)? else {
            return Ok(None);
        };
        self.scanner.reset();
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Bytes buffered that are not yet a complete object.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Length of the complete object at the start of `buf`.
pub(crate) fn object_len(buf: &[u8]) -> Result<usize, MsgpackError> {
    FrameScanner::new()
        .scan(buf)?
        .ok_or(MsgpackError::Truncated)
}

/// A reader over a buffer that holds complete objects.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    /// Reads the next header without moving.
    pub(crate) fn peek(&self) -> Result<Head, MsgpackError> {
        match read_head(self.remaining())? {
            Some((h, _)) => Ok(h),
            None => Err(MsgpackError::Truncated),
        }
    }

    /// Reads the next header and moves past it (not past its payload).
    pub fn head(&mut self) -> Result<Head, MsgpackError> {
        match read_head(self.remaining())? {
            Some((h, n)) => {
                self.pos += n;
                Ok(h)
            }
            None => Err(MsgpackError::Truncated),
        }
    }

    /// Takes `len` payload bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.pos.checked_add(len).ok_or(MsgpackError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Skips one whole object and returns its encoded bytes.
    pub fn skip(&mut self) -> Result<&'a [u8], MsgpackError> {
        let start = self.pos;
        let len = object_len(self.remaining())?;
        self.pos += len;
        Ok(&self.buf[start..self.pos])
    }

    /// Reads a str or bin value's bytes; `None` (and no move) for other types.
    pub fn bytes(&mut self) -> Result<Option<&'a [u8]>, MsgpackError> {
        match self.peek()? {
            Head::Str(n) | Head::Bin(n) => {
                self.head()?;
                Ok(Some(self.take(n as usize)?))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_non_minimal_forms() {
        assert_eq!(
            read_head(&[0xdb, 0, 0, 0, 3]).unwrap(),
            Some((Head::Str(3), 5))
        );
        assert_eq!(
            read_head(&[0xdd, 0, 0, 0, 2]).unwrap(),
            Some((Head::Array(2), 5))
        );
        assert_eq!(
            read_head(&[0xdf, 0, 0, 0, 1]).unwrap(),
            Some((Head::Map(1), 5))
        );
        assert_eq!(read_head(&[0xd7, 0]).unwrap(), Some((Head::Ext(0, 8), 2)));
        assert_eq!(
            read_head(&[0xc7, 8, 0]).unwrap(),
            Some((Head::Ext(0, 8), 3))
        );
        assert_eq!(
            read_head(&[0xd2, 0xff, 0xff, 0xff, 0xfe]).unwrap(),
            Some((Head::Int(-2), 5))
        );
        assert_eq!(
            read_head(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            Some((Head::BigUint(u64::MAX), 9))
        );
        assert_eq!(read_head(&[0xdb, 0, 0]).unwrap(), None);
        assert_eq!(read_head(&[0xc1]), Err(MsgpackError::ReservedMarker));
    }

    #[test]
    fn scanner_finds_frames_fed_one_byte_at_a_time() {
        // ["a", [[1, {"m": "x"}]]] followed by nil
        let bytes = [
            0x92, 0xa1, b'a', 0x91, 0x92, 0x01, 0x81, 0xa1, b'm', 0xa1, b'x', 0xc0,
        ];
        let mut s = FrameScanner::new();
        for end in 0..11 {
            assert_eq!(s.scan(&bytes[..end]).unwrap(), None, "at {end}");
        }
        assert_eq!(s.scan(&bytes[..11]).unwrap(), Some(11));
        s.reset();
        assert_eq!(s.scan(&bytes[11..]).unwrap(), Some(1));
    }

    #[test]
    fn scanner_waits_for_a_long_payload() {
        let mut bytes = vec![0xc6, 0, 0, 0x10, 0]; // bin32 of 4096 bytes
        let mut s = FrameScanner::new();
        assert_eq!(s.scan(&bytes).unwrap(), None);
        bytes.resize(5 + 4095, 7);
        assert_eq!(s.scan(&bytes).unwrap(), None);
        bytes.push(7);
        assert_eq!(s.scan(&bytes).unwrap(), Some(4101));
    }

    #[test]
    fn scanner_rejects_deep_nesting() {
        let bytes = vec![0x91; MAX_DEPTH + 2];
        assert_eq!(FrameScanner::new().scan(&bytes), Err(MsgpackError::TooDeep));
    }

    #[test]
    fn empty_containers_are_complete() {
        assert_eq!(object_len(&[0x90]).unwrap(), 1);
        assert_eq!(object_len(&[0x92, 0x80, 0x90]).unwrap(), 3);
        assert_eq!(object_len(&[0x92, 0x80]), Err(MsgpackError::Truncated));
    }
}
