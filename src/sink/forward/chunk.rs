//! A chunk on the wire: `[tag, entries, {"chunk": id, "compressed": "gzip"}]`
//! (PackedForward, or CompressedPackedForward with gzip; `size` is the event
//! count, as Fluentd sends it), and the outbox key that carries the chunk's
//! id, event count and tag.

use base64::Engine;

/// The outbox key of a chunk: its id in hex, its events, the tag it goes
/// out under (`{id}/{events}/{tag}`).
pub(crate) fn key(chunk: &[u8; 16], events: u64, tag: &str) -> String {
    let mut k = String::with_capacity(54 + tag.len());
    for b in chunk {
        k.push_str(&format!("{b:02x}"));
    }
    k.push_str(&format!("/{events}/"));
    k.push_str(tag);
    k
}

/// The chunk id as sent (`weir:` and base64 of the 16 bytes: Fluentd sends
/// base64 of 16 random bytes; the prefix tells a weir receiver the id is
/// unique whatever address it comes from, see
/// [`crate::input::durable::WEIR_CHUNK_PREFIX`]), the events and the tag
/// of a [`key`]; `None` for a key this sink did not make.
pub(crate) fn parse_key(key: &str) -> Option<(String, u64, &str)> {
    let (hex, rest) = key.split_once('/')?;
    let (events, tag) = rest.split_once('/')?;
    let bytes = crate::outbox::manifest::unhex(hex)?;
    if bytes.len() != 16 || tag.is_empty() {
        return None;
    }
    let events = events.parse().ok()?;
    Some((
        format!(
            "{}{}",
            crate::input::durable::WEIR_CHUNK_PREFIX,
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        events,
        tag,
    ))
}

/// What goes before the entries: the array, the tag and the entries' bin
/// header.
pub(crate) fn head(tag: &str, entries_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(tag.len() + 16);
    h.push(0x93);
    let _ = rmp::encode::write_str(&mut h, tag);
    let _ = rmp::encode::write_bin_len(&mut h, entries_len as u32);
    h
}

/// What goes after the entries: the option map.
pub(crate) fn options(chunk: &str, events: u64, gzip: bool) -> Vec<u8> {
    let mut o = Vec::with_capacity(64);
    let _ = rmp::encode::write_map_len(&mut o, if gzip { 3 } else { 2 });
    let _ = rmp::encode::write_str(&mut o, "chunk");
    let _ = rmp::encode::write_str(&mut o, chunk);
    let _ = rmp::encode::write_str(&mut o, "size");
    let _ = rmp::encode::write_uint(&mut o, events);
    if gzip {
        let _ = rmp::encode::write_str(&mut o, "compressed");
        let _ = rmp::encode::write_str(&mut o, "gzip");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_id_and_tag_whatever_the_tag_holds() {
        let id = [7u8; 16];
        let k = key(&id, 12, "a/b c.d");
        let (chunk, events, tag) = parse_key(&k).unwrap();
        assert_eq!((events, tag), (12, "a/b c.d"));
        assert_eq!(chunk, "weir:BwcHBwcHBwcHBwcHBwcHBw==");
        let mut packed = Vec::new();
        rmp::encode::write_str(&mut packed, &chunk).unwrap();
        let from = |ip: &str| crate::input::durable::chunk_source(ip.parse().unwrap(), &packed);
        assert_eq!(from("10.0.0.1"), from("10.0.0.2"), "any address");
        assert!(parse_key("zz/a").is_none());
        assert!(parse_key(&format!("{}/1/", "00".repeat(16))).is_none());
        assert!(parse_key(&format!("{}/x/a", "00".repeat(16))).is_none());
    }

    #[test]
    fn a_message_reads_as_packed_forward() {
        let entries = b"\x92\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x00\x80";
        let mut m = head("app.web", entries.len());
        m.extend_from_slice(entries);
        m.extend_from_slice(&options("abc", 1, true));
        #[derive(serde::Deserialize)]
        struct Options {
            chunk: String,
            size: u64,
            compressed: String,
        }
        let v: (String, serde_bytes::ByteBuf, Options) = rmp_serde::from_slice(&m).unwrap();
        assert_eq!(v.0, "app.web");
        assert_eq!(&v.1[..], entries);
        assert_eq!((v.2.chunk.as_str(), v.2.size), ("abc", 1));
        assert_eq!(v.2.compressed, "gzip");
    }
}
