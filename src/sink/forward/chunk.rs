//! A part on the wire: per tag, `[tag, entries, {"chunk": id, "size": n,
//! "compressed": "gzip"}]` (PackedForward, or CompressedPackedForward with
//! gzip), all sent back to back on one connection and then their acks read.
//! The outbox key carries the part's id and its events; each tag's chunk id
//! is derived from the part's id and the tag, so a part sent again carries
//! the same chunk ids.

use std::collections::HashMap;
use std::io::Write;

use base64::Engine;

use crate::msgpack::{Cursor, Head, MsgpackError};

/// The outbox key of a part: its id in hex, its events, its group
/// (`{id}/{events}/{group}`).
pub(crate) fn key(part: &[u8; 16], events: u64, group: &str) -> String {
    let mut k = String::with_capacity(54 + group.len());
    for b in part {
        k.push_str(&format!("{b:02x}"));
    }
    k.push_str(&format!("/{events}/"));
    k.push_str(group);
    k
}

/// The part's id and events of a [`key`]; `None` for a key this sink did
/// not make.
pub(crate) fn parse_key(key: &str) -> Option<([u8; 16], u64)> {
    let (hex, rest) = key.split_once('/')?;
    let (events, group) = rest.split_once('/')?;
    let bytes = crate::outbox::unhex(hex)?;
    if group.is_empty() {
        return None;
    }
    let part: [u8; 16] = bytes.try_into().ok()?;
    Some((part, events.parse().ok()?))
}

/// The chunk id of `tag`'s message in `part`: `weir:` and base64 of 16
/// bytes (Fluentd sends base64 of 16 random bytes; the prefix tells a weir
/// receiver the id is unique whatever address it comes from, see
/// [`crate::input::WEIR_CHUNK_PREFIX`]).
pub(crate) fn chunk_id(part: &[u8; 16], tag: &str) -> String {
    let d = crate::ids::digest(&[b"chunk", part, tag.as_bytes()]);
    format!(
        "{}{}",
        crate::input::WEIR_CHUNK_PREFIX,
        base64::engine::general_purpose::STANDARD.encode(&d[..16])
    )
}

/// One tag's events of a part: the PackedForward entries
/// (`[EventTime, record]` after each other) and how many.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    pub(crate) tag: String,
    pub(crate) entries: Vec<u8>,
    pub(crate) events: u64,
}

/// Regroups a part's `[tag, EventTime, record]` events per tag, tags in the
/// order they first appear, events in the order they were written.
///
/// # Errors
/// The part is not a sequence of such arrays (a damaged file).
pub(crate) fn split(part: &[u8]) -> Result<Vec<Entries>, MsgpackError> {
    let mut out: Vec<Entries> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut c = Cursor::new(part);
    while c.position() < part.len() {
        let start = c.position();
        if !matches!(c.head()?, Head::Array(3)) {
            return Err(MsgpackError::Truncated);
        }
        let tag_bytes = c.bytes()?.ok_or(MsgpackError::Truncated)?;
        let entry_start = c.position();
        c.skip()?;
        c.skip()?;
        let tag = String::from_utf8_lossy(tag_bytes).into_owned();
        let i = match index.get(&tag) {
            Some(i) => *i,
            None => {
                index.insert(tag.clone(), out.len());
                out.push(Entries {
                    tag,
                    ..Entries::default()
                });
                out.len() - 1
            }
        };
        let e = &mut out[i];
        e.entries.push(0x92);
        e.entries
            .extend_from_slice(&part[entry_start..c.position()]);
        e.events += 1;
        debug_assert!(c.position() > start);
    }
    Ok(out)
}

/// One message: `[tag, bin(entries), options]`, the entries gzip'd for
/// CompressedPackedForward.
pub(crate) fn message(e: &Entries, chunk: &str, gzip: bool) -> std::io::Result<Vec<u8>> {
    let compressed;
    let entries: &[u8] = if gzip {
        let mut z = flate2::write::GzEncoder::new(
            Vec::with_capacity(e.entries.len() / 4),
            flate2::Compression::fast(),
        );
        z.write_all(&e.entries)?;
        compressed = z.finish()?;
        &compressed
    } else {
        &e.entries
    };
    let mut m = Vec::with_capacity(entries.len() + e.tag.len() + 96);
    m.push(0x93);
    let _ = rmp::encode::write_str(&mut m, &e.tag);
    let _ = rmp::encode::write_bin_len(&mut m, entries.len() as u32);
    m.extend_from_slice(entries);
    let _ = rmp::encode::write_map_len(&mut m, if gzip { 3 } else { 2 });
    let _ = rmp::encode::write_str(&mut m, "chunk");
    let _ = rmp::encode::write_str(&mut m, chunk);
    let _ = rmp::encode::write_str(&mut m, "size");
    let _ = rmp::encode::write_uint(&mut m, e.events);
    if gzip {
        let _ = rmp::encode::write_str(&mut m, "compressed");
        let _ = rmp::encode::write_str(&mut m, "gzip");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_id_and_events() {
        let id = [7u8; 16];
        let k = key(&id, 12, "*");
        assert_eq!(parse_key(&k), Some((id, 12)));
        assert!(parse_key("zz/1/*").is_none());
        assert!(parse_key(&format!("{}/1/", "00".repeat(16))).is_none());
        assert!(parse_key(&format!("{}/x/*", "00".repeat(16))).is_none());
    }

    #[test]
    fn chunk_ids_are_per_part_and_tag_and_recognised_from_any_address() {
        let a = chunk_id(&[1; 16], "app.web");
        assert_eq!(a, chunk_id(&[1; 16], "app.web"));
        assert_ne!(a, chunk_id(&[1; 16], "app.api"));
        assert_ne!(a, chunk_id(&[2; 16], "app.web"));
        assert!(a.starts_with("weir:") && a.len() == 29, "{a}");
        let mut packed = Vec::new();
        rmp::encode::write_str(&mut packed, &a).unwrap();
        let from = |ip: &str| crate::input::chunk_source(ip.parse().unwrap(), &packed);
        assert_eq!(from("10.0.0.1"), from("10.0.0.2"), "any address");
    }

    fn event(out: &mut Vec<u8>, tag: &str, n: u8) {
        out.push(0x93);
        rmp::encode::write_str(out, tag).unwrap();
        out.extend_from_slice(&super::super::part::event_time(1_000_000_000));
        out.extend_from_slice(&[0x81, 0xa1, b'n', n]);
    }

    #[test]
    fn a_part_splits_per_tag_in_order_and_reads_as_packed_forward() {
        let mut part = Vec::new();
        event(&mut part, "a", 1);
        event(&mut part, "b", 2);
        event(&mut part, "a", 3);
        let tags = split(&part).unwrap();
        assert_eq!(
            tags.iter()
                .map(|e| (e.tag.as_str(), e.events))
                .collect::<Vec<_>>(),
            vec![("a", 2), ("b", 1)]
        );
        for gzip in [false, true] {
            let m = message(&tags[0], "abc", gzip).unwrap();
            #[derive(serde::Deserialize)]
            struct Options {
                chunk: String,
                size: u64,
                #[serde(default)]
                compressed: Option<String>,
            }
            let v: (String, serde_bytes::ByteBuf, Options) = rmp_serde::from_slice(&m).unwrap();
            assert_eq!(
                (v.0.as_str(), v.2.chunk.as_str(), v.2.size),
                ("a", "abc", 2)
            );
            assert_eq!(v.2.compressed.is_some(), gzip);
            let entries = if gzip {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&v.1[..]), &mut out)
                    .unwrap();
                out
            } else {
                v.1.to_vec()
            };
            assert_eq!(entries, tags[0].entries);
            // Two entries: [EventTime, {"n": 1}], [EventTime, {"n": 3}].
            let mut c = Cursor::new(&entries);
            for n in [1u8, 3] {
                assert!(matches!(c.head().unwrap(), Head::Array(2)));
                c.skip().unwrap();
                let start = c.position();
                c.skip().unwrap();
                assert_eq!(&entries[start..c.position()], &[0x81, 0xa1, b'n', n]);
            }
        }
        assert!(split(&[0x92, 0x01, 0x02]).is_err(), "not a part");
    }
}
