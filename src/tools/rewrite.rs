//! Turns one captured request into the request to replay: a fresh chunk id
//! when the original asked for an ack (servers that de-duplicate would
//! otherwise ack a repeat without storing it), optionally a new tag and event
//! times moved by a fixed amount. The mode (and compression) stays as sent.
//! Objects that are not forward requests are replayed byte for byte.

use std::io::Write;

use crate::input::read_options;
use crate::input::read_time;
use crate::input::{compress, decompress, detect, Compression};
use crate::msgpack::{Cursor, Head, MsgpackError};

/// Decompressed entries larger than this are replayed as they are, uncounted.
const MAX_EXPANDED: usize = 1 << 30;

/// What to change in each request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes {
    /// New tag; `{tag}` in it stands for the original tag.
    pub(crate) retag: Option<String>,
    /// Added to every event time (0: times untouched). Times of zero ("now"
    /// to the server) stay zero.
    pub(crate) shift_ns: i64,
}

/// A request ready to send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub(crate) bytes: Vec<u8>,
    /// Events in it (0 for objects that are not event requests).
    pub(crate) events: u64,
    /// The chunk id to expect back in an ack, when the original asked for one.
    pub(crate) chunk: Option<String>,
}

/// Prepares `frame` for sending; `chunk_id` makes a fresh chunk id from
/// the original one.
pub(crate) fn prepare(
    frame: &[u8],
    changes: &Changes,
    chunk_id: impl FnOnce(&[u8]) -> String,
) -> Prepared {
    let mut out = Vec::with_capacity(frame.len() + 64);
    match walk(frame, changes, chunk_id, &mut out) {
        Ok(Some((events, chunk))) => Prepared {
            bytes: out,
            events,
            chunk,
        },
        // Not a request weir can read: send what the client sent.
        Ok(None) | Err(_) => Prepared {
            bytes: frame.to_vec(),
            events: 0,
            chunk: None,
        },
    }
}

/// Events in `frame` and the chunk id it asks to be acked with, read the
/// way [`prepare`] reads them but without copying anything.
pub(crate) fn inspect(frame: &[u8]) -> (u64, Option<String>) {
    let original = |id: &[u8]| String::from_utf8_lossy(id).into_owned();
    match walk(frame, &Changes::default(), original, &mut std::io::sink()) {
        Ok(Some(found)) => found,
        Ok(None) | Err(_) => (0, None),
    }
}

/// Reads one request and writes its replay to `out`; returns its events and
/// the chunk id written, or `None` when `frame` is not a request.
fn walk(
    frame: &[u8],
    changes: &Changes,
    chunk_id: impl FnOnce(&[u8]) -> String,
    out: &mut impl Write,
) -> Result<Option<(u64, Option<String>)>, MsgpackError> {
    let mut c = Cursor::new(frame);
    let Head::Array(n) = c.head()? else {
        return Ok(None);
    };
    if n < 2 {
        return Ok(None);
    }
    put(out, &frame[..c.position()]);
    let tag_raw = c.skip()?;
    match (&changes.retag, Cursor::new(tag_raw).bytes()?) {
        (Some(template), Some(tag)) => {
            let tag = String::from_utf8_lossy(tag);
            let _ = rmp::encode::write_str(out, &template.replace("{tag}", &tag));
        }
        _ => put(out, tag_raw),
    }
    let shift = changes.shift_ns;
    let events;
    let consumed; // elements of the array read so far
    match c.peek()? {
        Head::Array(count) => {
            let start = c.position();
            c.head()?;
            put(out, &frame[start..c.position()]);
            for _ in 0..count {
                entry(&mut c, shift, out)?;
            }
            events = u64::from(count);
            consumed = 2;
        }
        Head::Str(_) | Head::Bin(_) => {
            let blob = c.bytes()?.unwrap_or_default();
            // The options say whether the blob is compressed; read them first.
            let option = if n >= 3 {
                let mut at_options = c;
                match read_options(&mut at_options) {
                    Ok(o) => o.compression,
                    Err(_) => return Ok(None),
                }
            } else {
                Compression::None
            };
            let kind = detect(option, blob);
            let expanded = match kind {
                Compression::None => None,
                _ => match decompress(kind, blob, MAX_EXPANDED) {
                    Ok(e) => Some(e),
                    Err(_) => return Ok(None),
                },
            };
            let entries = expanded.as_deref().unwrap_or(blob);
            let mut e = Cursor::new(entries);
            let mut rewritten = Vec::with_capacity(if shift != 0 { entries.len() } else { 0 });
            let mut count = 0u64;
            while !e.is_empty() {
                if shift != 0 {
                    entry(&mut e, shift, &mut rewritten)?;
                } else {
                    e.skip()?;
                }
                count += 1;
            }
            events = count;
            let recompressed;
            let body: &[u8] = if shift == 0 {
                blob
            } else {
                recompressed = compress(kind, &rewritten);
                &recompressed
            };
            let _ = rmp::encode::write_bin_len(out, body.len() as u32);
            put(out, body);
            consumed = 2;
        }
        _ => {
            // Message mode: [tag, time, record, options?]
            time(&mut c, shift, out)?;
            if n >= 3 {
                put(out, c.skip()?);
            }
            events = 1;
            consumed = 3.min(n);
        }
    }
    let mut chunk = None;
    if n > consumed {
        chunk = options(&mut c, out, chunk_id)?;
    }
    let read = if n > consumed { consumed + 1 } else { consumed };
    for _ in read..n {
        put(out, c.skip()?);
    }
    Ok(Some((events, chunk)))
}

/// Writing to a `Vec` or a sink cannot fail.
fn put(out: &mut impl Write, bytes: &[u8]) {
    let _ = out.write_all(bytes);
}

/// Copies the options map, giving `chunk` a fresh id; returns that id.
fn options(
    c: &mut Cursor<'_>,
    out: &mut impl Write,
    chunk_id: impl FnOnce(&[u8]) -> String,
) -> Result<Option<String>, MsgpackError> {
    let Head::Map(pairs) = c.peek()? else {
        put(out, c.skip()?);
        return Ok(None);
    };
    c.head()?;
    let _ = rmp::encode::write_map_len(out, pairs);
    let mut chunk_id = Some(chunk_id);
    let mut chunk = None;
    for _ in 0..pairs {
        let key = c.skip()?;
        put(out, key);
        let value = c.skip()?;
        match (Cursor::new(key).bytes()?, chunk_id.take()) {
            (Some(b"chunk"), Some(make)) => {
                let original = Cursor::new(value).bytes()?.unwrap_or(value);
                let id = make(original);
                let _ = rmp::encode::write_str(out, &id);
                chunk = Some(id);
            }
            (_, make) => {
                chunk_id = make;
                put(out, value);
            }
        }
    }
    Ok(chunk)
}

/// Copies one `[time, record]` (or `[[time, meta], record]`) entry.
fn entry(c: &mut Cursor<'_>, shift: i64, out: &mut impl Write) -> Result<(), MsgpackError> {
    if shift == 0 || c.peek()? != Head::Array(2) {
        put(out, c.skip()?);
        return Ok(());
    }
    c.head()?;
    put(out, &[0x92]);
    if c.peek()? == Head::Array(2) {
        c.head()?;
        put(out, &[0x92]);
        time(c, shift, out)?;
        put(out, c.skip()?);
    } else {
        time(c, shift, out)?;
    }
    put(out, c.skip()?);
    Ok(())
}

/// Copies one time value, moved by `shift` and written as EventTime.
fn time(c: &mut Cursor<'_>, shift: i64, out: &mut impl Write) -> Result<(), MsgpackError> {
    let start = *c;
    let t = read_time(c, 0)?;
    let raw = &start.remaining()[..c.position() - start.position()];
    match t {
        Some(t) if t != 0 && shift != 0 => {
            let ns = t.saturating_add(shift);
            let (sec, nsec) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
            match u32::try_from(sec) {
                Ok(sec) => {
                    put(out, &[0xd7, 0x00]);
                    put(out, &sec.to_be_bytes());
                    put(out, &(nsec as u32).to_be_bytes());
                }
                Err(_) => put(out, raw),
            }
        }
        _ => put(out, raw),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{decode_request, DecodeLimits, Request};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
    };

    fn events(frame: &[u8]) -> Vec<(String, i64, Vec<u8>)> {
        let Request::Events(d) = decode_request(frame, &LIMITS, 1).unwrap() else {
            panic!("not events");
        };
        let b = d.batch.unwrap();
        let tag = String::from_utf8(b.tag().to_vec()).unwrap();
        b.events()
            .map(|e| (tag.clone(), e.time_ns, e.record.to_vec()))
            .collect()
    }

    fn each_mode() -> Vec<(&'static str, Vec<u8>)> {
        use crate::tools::loadgen::{build_request, LoadMode};
        [
            ("message", LoadMode::Message),
            ("forward", LoadMode::Forward),
            ("packed", LoadMode::Packed),
            ("gzip", LoadMode::Gzip),
            ("zstd", LoadMode::Zstd),
        ]
        .into_iter()
        .map(|(n, m)| (n, build_request(m, "app.web", 5, 0, 40, Some("orig-chunk"))))
        .collect()
    }

    #[test]
    fn shifts_times_retags_and_renews_the_chunk_in_every_mode() {
        let changes = Changes {
            retag: Some("replay.{tag}".into()),
            shift_ns: 3_600_000_000_123,
        };
        for (name, frame) in each_mode() {
            let p = prepare(&frame, &changes, |_| "fresh".into());
            assert_eq!(p.chunk.as_deref(), Some("fresh"), "{name}");
            let want = if name == "message" { 1 } else { 5 };
            assert_eq!(p.events, want, "{name}");
            assert_eq!(inspect(&frame), (want, Some("orig-chunk".into())), "{name}");
            let before = events(&frame);
            let after = events(&p.bytes);
            assert_eq!(before.len(), after.len(), "{name}");
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(a.0, "replay.app.web", "{name}");
                assert_eq!(a.1 - b.1, changes.shift_ns, "{name}");
                assert_eq!(a.2, b.2, "{name}: record unchanged");
            }
            let Request::Events(d) = decode_request(&p.bytes, &LIMITS, 1).unwrap() else {
                panic!()
            };
            assert_eq!(
                d.ack.unwrap()[5..],
                [0xa5, b'f', b'r', b'e', b's', b'h'],
                "{name}"
            );
        }
    }

    #[test]
    fn without_changes_only_the_chunk_differs() {
        for (name, frame) in each_mode() {
            let p = prepare(&frame, &Changes::default(), |orig| {
                String::from_utf8_lossy(orig).into_owned()
            });
            assert_eq!(p.bytes, frame, "{name}");
        }
    }

    #[test]
    fn requests_without_chunk_expect_no_ack_and_non_requests_pass_through() {
        use crate::tools::loadgen::{build_request, LoadMode};
        let frame = build_request(LoadMode::Packed, "t", 3, 0, 20, None);
        let p = prepare(&frame, &Changes::default(), |_| unreachable!());
        assert_eq!((p.chunk, p.events, p.bytes == frame), (None, 3, true));
        for junk in [&[0xc0][..], &[0x81, 0xa1, b'a', 0x01], &[0x93, 0x01]] {
            let p = prepare(junk, &Changes::default(), |_| unreachable!());
            assert_eq!(p.bytes, junk);
            assert_eq!(p.events, 0);
        }
    }
}
