//! Decoding one complete forward-protocol request into an [`EventBatch`].
//!
//! The mode is chosen by the msgpack type of element `[1]`, as the spec says
//! (forward-protocol.md §2): array → Forward, str/bin → (Compressed)PackedForward,
//! anything else → Message. Single bad events are skipped and counted; the
//! rest of the request is kept and acknowledged. Errors returned from here
//! mean the stream itself cannot be trusted and close the connection.

use bytes::Bytes;

use super::decompress::{decompress, detect, Compression, DecompressError};
use super::time::read_time;
use crate::event::{BatchBuilder, EventBatch, MAX_TAG_LEN};
use crate::msgpack::{Cursor, Head, MsgpackError};

/// Which of the four event modes a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Message,
    Forward,
    PackedForward,
    CompressedPackedForward,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Message => "message",
            Mode::Forward => "forward",
            Mode::PackedForward => "packed_forward",
            Mode::CompressedPackedForward => "compressed_packed_forward",
        }
    }
}

/// Events dropped from a request, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Time missing, of a wrong type, or out of range.
    pub invalid_time: u64,
    /// Record is not a map.
    pub invalid_record: u64,
    /// Entry is not a `[time, record]` array.
    pub invalid_entry: u64,
    /// Tag is not a string (or empty, or too long): the whole request.
    pub invalid_tag: u64,
    /// `fluent_signal` ≠ 0: metrics/traces, not logs.
    pub non_log_signal: u64,
}

/// What one request turned into.
#[derive(Debug)]
pub enum Request {
    /// A `nil` object: a keep-alive no-op.
    Nil,
    /// A top-level object that is not an array; ignored, as the spec says.
    NotArray,
    /// An event request.
    Events(Decoded),
}

#[derive(Debug)]
pub struct Decoded {
    pub mode: Mode,
    /// Accepted events; `None` when none were accepted.
    pub batch: Option<EventBatch>,
    /// The encoded `{"ack": chunk}` reply, when the client asked for one.
    pub ack: Option<Bytes>,
    pub skipped: Skipped,
    /// Bytes of entries after decompression (equals wire size when not compressed).
    pub(crate) entries_bytes: usize,
}

/// Why a request cannot be decoded; the connection is closed, without ack.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    #[error("request array has {0} elements; at least 2 are needed")]
    ShortRequest(u32),
    #[error("unknown compression {0:?}; expected \"text\", \"gzip\" or \"zstd\"")]
    UnknownCompression(String),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
}

/// Limits that apply while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Upper bound on decompressed entries per request.
    pub max_decompressed_bytes: usize,
}

/// Per-connection changes to what is decoded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rewrite<'a> {
    /// Put in front of every tag as `prefix.`.
    pub(crate) tag_prefix: &'a [u8],
    /// Added to every record as `key: value` (the peer address and name).
    pub(crate) add: &'a [(String, String)],
}

/// Builds a batch for `tag`, applying the connection's rewrites.
fn builder_for(rw: &Rewrite<'_>, tag: &[u8], capacity: usize) -> BatchBuilder {
    let mut b = if rw.tag_prefix.is_empty() || tag.is_empty() {
        BatchBuilder::new(tag, capacity)
    } else {
        let mut full = Vec::with_capacity(rw.tag_prefix.len() + 1 + tag.len());
        full.extend_from_slice(rw.tag_prefix);
        full.push(b'.');
        full.extend_from_slice(tag);
        BatchBuilder::new(&full, capacity)
    };
    for (k, v) in rw.add {
        b.add_to_every_record(k, v);
    }
    b
}

/// The options map (last element) with the keys weir acts on.
pub(crate) struct Options<'a> {
    /// The `chunk` value, as encoded msgpack, to echo back unchanged.
    pub(crate) chunk: Option<&'a [u8]>,
    pub(crate) compression: Compression,
    pub(crate) fluent_signal: i64,
}

/// Reads the options map at `c` (anything else is skipped: defaults).
pub(crate) fn read_options<'a>(c: &mut Cursor<'a>) -> Result<Options<'a>, DecodeError> {
    let mut opts = Options {
        chunk: None,
        compression: Compression::None,
        fluent_signal: 0,
    };
    let Head::Map(n) = c.peek()? else {
        c.skip()?;
        return Ok(opts);
    };
    c.head()?;
    for _ in 0..n {
        let key = c.bytes()?;
        if key.is_none() {
            c.skip()?;
        }
        match key {
            // A nil chunk asks for no ack (Fluentd's `if chunk`).
            Some(b"chunk") => opts.chunk = Some(c.skip()?).filter(|v| *v != [0xc0]),
            Some(b"compressed") => match c.bytes()? {
                Some(b"text") => opts.compression = Compression::None,
                Some(b"gzip") => opts.compression = Compression::Gzip,
                Some(b"zstd") => opts.compression = Compression::Zstd,
                Some(other) => {
                    return Err(DecodeError::UnknownCompression(
                        String::from_utf8_lossy(other).into_owned(),
                    ))
                }
                None => {
                    let v = c.skip()?;
                    return Err(DecodeError::UnknownCompression(format!("{v:02x?}")));
                }
            },
            Some(b"fluent_signal") => match c.peek()? {
                Head::Int(v) => {
                    c.head()?;
                    opts.fluent_signal = v;
                }
                _ => {
                    c.skip()?;
                }
            },
            _ => {
                c.skip()?;
            }
        }
    }
    Ok(opts)
}

/// Encodes `{"ack": <chunk>}` with the chunk's original bytes.
pub(crate) fn encode_ack(chunk: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + chunk.len());
    v.extend_from_slice(&[0x81, 0xa3, b'a', b'c', b'k']);
    v.extend_from_slice(chunk);
    Bytes::from(v)
}

/// Reads one `[time, record]` entry (or v1.5 `[[time, meta], record]`) and
/// adds it to `out` when valid.
fn read_entry(
    c: &mut Cursor<'_>,
    now_ns: i64,
    out: &mut BatchBuilder,
    skipped: &mut Skipped,
) -> Result<(), MsgpackError> {
    match c.peek()? {
        Head::Array(2) => {
            c.head()?;
        }
        _ => {
            c.skip()?;
            skipped.invalid_entry += 1;
            return Ok(());
        }
    }
    let time = match c.peek()? {
        Head::Array(2) => {
            // v1.5 metadata form: [EventTime, {meta}]. The metadata is dropped.
            c.head()?;
            let t = read_time(c, now_ns)?;
            c.skip()?;
            t
        }
        _ => read_time(c, now_ns)?,
    };
    let record_is_map = matches!(c.peek()?, Head::Map(_));
    let record = c.skip()?;
    match (time, record_is_map) {
        (Some(t), true) => out.push(t, record),
        (None, _) => skipped.invalid_time += 1,
        (Some(_), false) => skipped.invalid_record += 1,
    }
    Ok(())
}

/// Decodes a complete top-level object.
///
/// `now_ns` replaces a zero event time, as Fluentd does.
pub fn decode_request(
    frame: &[u8],
    limits: &DecodeLimits,
    now_ns: i64,
) -> Result<Request, DecodeError> {
    decode_request_rewriting(frame, limits, now_ns, &Rewrite::default())
}

/// The compressed entries of a CompressedPackedForward request, and their
/// compression; `None` for every other request.
pub(crate) fn compressed_entries(
    frame: &[u8],
) -> Result<Option<(Compression, &[u8])>, DecodeError> {
    let mut c = Cursor::new(frame);
    let Head::Array(n) = c.peek()? else {
        return Ok(None);
    };
    c.head()?;
    if n < 2 {
        return Ok(None);
    }
    c.skip()?;
    let blob = match c.peek()? {
        Head::Str(_) | Head::Bin(_) => c.bytes()?.unwrap_or_default(),
        _ => return Ok(None),
    };
    let opts = if n >= 3 {
        read_options(&mut c)?
    } else {
        default_options()
    };
    Ok(match detect(opts.compression, blob) {
        Compression::None => None,
        kind => Some((kind, blob)),
    })
}

/// [`decode_request`], applying a connection's tag prefix and source key.
pub(crate) fn decode_request_rewriting(
    frame: &[u8],
    limits: &DecodeLimits,
    now_ns: i64,
    rw: &Rewrite<'_>,
) -> Result<Request, DecodeError> {
    decode_request_expanded(frame, limits, now_ns, rw, None)
}

/// [`decode_request_rewriting`] with the entries of a compressed request
/// already expanded by the caller ([`compressed_entries`]).
pub(crate) fn decode_request_expanded(
    frame: &[u8],
    limits: &DecodeLimits,
    now_ns: i64,
    rw: &Rewrite<'_>,
    expanded_entries: Option<&[u8]>,
) -> Result<Request, DecodeError> {
    let mut c = Cursor::new(frame);
    let n = match c.peek()? {
        Head::Nil => return Ok(Request::Nil),
        Head::Array(n) => n,
        _ => return Ok(Request::NotArray),
    };
    c.head()?;
    if n < 2 {
        return Err(DecodeError::ShortRequest(n));
    }
    let tag = match c.bytes()? {
        Some(t) if !t.is_empty() && t.len() <= MAX_TAG_LEN => Some(t),
        Some(_) => None,
        None => {
            c.skip()?;
            None
        }
    };
    let tag_bytes = tag.unwrap_or_default();
    let mut skipped = Skipped::default();
    let mut entries_bytes;
    let mut builder;
    let mode;
    let opts;
    match c.peek()? {
        Head::Array(count) => {
            mode = Mode::Forward;
            c.head()?;
            let entries_start = c.position();
            // Options come after the entries; walk entries first.
            builder = builder_for(rw, tag_bytes, frame.len());
            for _ in 0..count {
                read_entry(&mut c, now_ns, &mut builder, &mut skipped)?;
            }
            entries_bytes = c.position() - entries_start;
            opts = if n >= 3 {
                read_options(&mut c)?
            } else {
                default_options()
            };
        }
        Head::Str(_) | Head::Bin(_) => {
            let blob = c.bytes()?.unwrap_or_default();
            opts = if n >= 3 {
                read_options(&mut c)?
            } else {
                default_options()
            };
            let expanded;
            let entries: &[u8] = if detect(opts.compression, blob) == Compression::None {
                mode = Mode::PackedForward;
                blob
            } else {
                mode = Mode::CompressedPackedForward;
                match expanded_entries {
                    Some(e) => e,
                    None => {
                        expanded =
                            decompress(opts.compression, blob, limits.max_decompressed_bytes)?;
                        &expanded
                    }
                }
            };
            entries_bytes = entries.len();
            builder = builder_for(rw, tag_bytes, entries.len());
            let mut e = Cursor::new(entries);
            while !e.is_empty() {
                read_entry(&mut e, now_ns, &mut builder, &mut skipped)?;
            }
        }
        _ if n < 3 => {
            // [tag, time] with no record.
            mode = Mode::Message;
            builder = builder_for(rw, tag_bytes, 0);
            c.skip()?;
            entries_bytes = 0;
            skipped.invalid_entry += 1;
            opts = default_options();
        }
        _ => {
            mode = Mode::Message;
            builder = builder_for(rw, tag_bytes, frame.len());
            let time = read_time(&mut c, now_ns)?;
            let record_is_map = matches!(c.peek()?, Head::Map(_));
            let record = c.skip()?;
            entries_bytes = record.len();
            match (time, record_is_map) {
                (Some(t), true) => builder.push(t, record),
                (None, _) => skipped.invalid_time += 1,
                (Some(_), false) => skipped.invalid_record += 1,
            }
            opts = if n >= 4 {
                read_options(&mut c)?
            } else {
                default_options()
            };
        }
    }
    // Anything after the options is ignored, but must be valid msgpack.
    let read = if mode == Mode::Message { 4 } else { 3 };
    for _ in read..n {
        c.skip()?;
    }
    if tag.is_none() {
        skipped.invalid_tag += builder.len() as u64;
        builder = BatchBuilder::new(b"", 0);
    }
    if opts.fluent_signal != 0 {
        skipped.non_log_signal += builder.len() as u64;
        builder = BatchBuilder::new(b"", 0);
        entries_bytes = 0;
    }
    Ok(Request::Events(Decoded {
        mode,
        batch: (!builder.is_empty()).then(|| builder.finish()),
        ack: opts.chunk.map(encode_ack),
        skipped,
        entries_bytes,
    }))
}

fn default_options<'a>() -> Options<'a> {
    Options {
        chunk: None,
        compression: Compression::None,
        fluent_signal: 0,
    }
}
