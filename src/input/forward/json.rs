//! Forward messages as JSON (Fluentd's `in_forward` reads a connection
//! whose first byte is `[` or `{` as a stream of JSON values, and answers
//! its acks as JSON): finding where one value ends, without parsing it, and
//! turning it into the msgpack request the decoder reads (one decoder for
//! both encodings), and the JSON form of an ack.
//!
//! Times are JSON numbers (seconds, integer or fraction); a PackedForward
//! request's entries are a string holding msgpack.

use bytes::Bytes;

/// Deepest nesting accepted (serde_json refuses deeper anyway).
const MAX_DEPTH: u32 = 128;

/// Finds the end of the first complete top-level JSON array or object in a
/// buffer that grows, resuming where the last call stopped.
#[derive(Debug, Default)]
pub(crate) struct JsonScanner {
    /// Bytes of the buffer already looked at.
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    started: bool,
}

/// Why the bytes cannot be a JSON forward message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JsonError {
    #[error("a JSON forward message is an array or an object; found byte {0:#04x}")]
    NotContainer(u8),
    #[error("JSON nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("JSON: {0}")]
    Parse(String),
}

impl JsonScanner {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Forgets the last value (after it was taken from the buffer).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The length of the first complete value in `buf`, leading whitespace
    /// included; `None` while it is incomplete.
    ///
    /// # Errors
    /// The first value is not an array or object, or is malformed in a way
    /// its structure shows (nesting, a stray closing bracket).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, JsonError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'[' | b'{' => {
                        self.started = true;
                        self.depth = 1;
                        continue;
                    }
                    other => return Err(JsonError::NotContainer(other)),
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                }
                b']' | b'}' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.pos));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// Whether a connection whose first byte (after whitespace) is `b` speaks
/// JSON.
pub(crate) fn starts_json(buf: &[u8]) -> Option<bool> {
    let b = buf.iter().find(|b| !b.is_ascii_whitespace())?;
    Some(matches!(b, b'[' | b'{'))
}

/// One JSON value as the msgpack the forward decoder reads.
///
/// # Errors
/// The value is not valid JSON.
pub(crate) fn to_msgpack(value: &[u8]) -> Result<Bytes, JsonError> {
    let mut out = Vec::with_capacity(value.len());
    let mut de = serde_json::Deserializer::from_slice(value);
    let mut ser = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| JsonError::Parse(e.to_string()))?;
    de.end().map_err(|e| JsonError::Parse(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// An ack (`{"ack": chunk}` as msgpack) as JSON, for a JSON connection:
/// the chunk echoed as the client sent it, whatever its JSON type.
pub(crate) fn ack_as_json(ack: &[u8]) -> Bytes {
    let chunk = rmp_serde::from_slice::<serde_json::Value>(ack)
        .ok()
        .and_then(|mut v| v.get_mut("ack").map(serde_json::Value::take))
        .unwrap_or_default();
    Bytes::from(serde_json::json!({ "ack": chunk }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_where_their_brackets_close_whatever_strings_hold() {
        let mut s = JsonScanner::new();
        let stream = br#"  ["t",[[1,{"a":"x]\"}"}]],{"chunk":"c1"}]
["t2",1,{"b":[]}]"#;
        let n = s.scan(stream).unwrap().unwrap();
        assert!(stream[..n].ends_with(b"}]"));
        s.reset();
        let rest = &stream[n..];
        let m = s.scan(rest).unwrap().unwrap();
        assert_eq!(&rest[..m], b"\n[\"t2\",1,{\"b\":[]}]");
        // Incomplete, then completed by more bytes (resumable).
        let mut s = JsonScanner::new();
        assert_eq!(s.scan(br#"["t",1,{"a":"b"#).unwrap(), None);
        assert_eq!(s.scan(br#"["t",1,{"a":"b"}]"#).unwrap(), Some(17));
        assert_eq!(
            JsonScanner::new().scan(b"42"),
            Err(JsonError::NotContainer(b'4'))
        );
        let deep = "[".repeat(200);
        assert_eq!(
            JsonScanner::new().scan(deep.as_bytes()),
            Err(JsonError::TooDeep)
        );
    }

    #[test]
    fn json_requests_become_the_msgpack_the_decoder_reads() {
        use crate::input::forward::decode::{decode_request, DecodeLimits, Request};
        let json =
            br#"["app.web",[[1764090000,{"k":"v"}],[1764090001.5,{"n":2}]],{"chunk":"abc"}]"#;
        let mp = to_msgpack(json).unwrap();
        let limits = DecodeLimits {
            max_decompressed_bytes: 1 << 20,
        };
        let Ok(Request::Events(d)) = decode_request(&mp, &limits, 0) else {
            panic!("not decoded");
        };
        let batch = d.batch.unwrap();
        assert_eq!((batch.tag(), batch.len()), (&b"app.web"[..], 2));
        assert_eq!(&ack_as_json(&d.ack.unwrap())[..], br#"{"ack":"abc"}"#);
        assert!(to_msgpack(b"[1,").is_err());
        assert!(to_msgpack(b"[1] x").is_err());
    }
}
