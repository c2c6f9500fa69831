//! msgpack values to JSON text, for the `record` column.
//!
//! Lossless where JSON allows: str and bin are both strings (Fluentd packs
//! text it read as bytes, in_tail lines by default, as bin); one that is not
//! valid UTF-8 keeps its valid parts and writes each invalid byte 0xXY as the
//! escape `\udcXY` (the "surrogateescape" convention: a lone low surrogate
//! U+DC80..U+DCFF stands for one raw byte, so the original bytes can be
//! recovered); ext values become `{"$ext": type, "$data": base64}`; map keys
//! that are not strings become their JSON text as a string; NaN and ±inf
//! become null.

use base64::Engine;

use crate::msgpack::{Cursor, Head, MsgpackError};

/// Where JSON text goes: a `String`, or a [`Length`] that only counts it
/// (to learn how large a huge record's JSON would be before building it).
pub trait JsonOut {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
    /// Appends `data` base64-encoded.
    fn push_base64(&mut self, data: &[u8]);
}

impl JsonOut for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s)
    }
    fn push(&mut self, c: char) {
        String::push(self, c)
    }
    fn push_base64(&mut self, data: &[u8]) {
        base64::engine::general_purpose::STANDARD.encode_string(data, self);
    }
}

/// Counts the bytes of JSON text without keeping them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Length(pub usize);

impl JsonOut for Length {
    fn push_str(&mut self, s: &str) {
        self.0 += s.len();
    }
    fn push(&mut self, c: char) {
        self.0 += c.len_utf8();
    }
    fn push_base64(&mut self, data: &[u8]) {
        self.0 += data.len().div_ceil(3) * 4;
    }
}

/// The length of the JSON text of the value at `c`.
pub(crate) fn json_len(c: &mut Cursor<'_>) -> Result<usize, MsgpackError> {
    let mut n = Length(0);
    write_value(&mut n, c)?;
    Ok(n.0)
}

/// Appends `s` as a JSON string literal (with quotes).
pub(crate) fn write_str(out: &mut impl JsonOut, bytes: &[u8]) {
    out.push('"');
    // Nearly all strings are valid UTF-8: check that fast, first.
    if let Ok(s) = simdutf8::basic::from_utf8(bytes) {
        escape_into(out, s);
        out.push('"');
        return;
    }
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                escape_into(out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction of `valid_up_to`.
                escape_into(out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for &b in &bad[..n] {
                    out.push_str("\\udc");
                    push_hex(out, b);
                }
                rest = &bad[n..];
            }
        }
    }
    out.push('"');
}

fn push_hex(out: &mut impl JsonOut, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

fn escape_into(out: &mut impl JsonOut, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most text needs no escape: skip it eight bytes at a time.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if may_need_escape(word) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else { break };
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            push_hex(out, b);
        } else {
            out.push_str(esc);
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
}

/// Whether any of the eight bytes in `w` may be `"`, `\` or a control
/// character (never false when one is; a rare true is checked bytewise).
#[inline]
fn may_need_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    (below_space | quote | backslash) != 0
}

fn write_base64(out: &mut impl JsonOut, data: &[u8]) {
    out.push('"');
    out.push_base64(data);
    out.push('"');
}

/// Appends the JSON form of the next value in `c`.
pub fn write_value(out: &mut impl JsonOut, c: &mut Cursor<'_>) -> Result<(), MsgpackError> {
    match c.head()? {
        Head::Nil => out.push_str("null"),
        Head::Bool(true) => out.push_str("true"),
        Head::Bool(false) => out.push_str("false"),
        Head::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        Head::BigUint(u) => out.push_str(itoa::Buffer::new().format(u)),
        Head::Float(f) => {
            if f.is_finite() {
                out.push_str(ryu::Buffer::new().format_finite(f));
            } else {
                out.push_str("null");
            }
        }
        Head::Str(n) => write_str(out, c.take(n as usize)?),
        Head::Bin(n) => write_str(out, c.take(n as usize)?),
        Head::Ext(t, n) => {
            out.push_str("{\"$ext\":");
            out.push_str(itoa::Buffer::new().format(t));
            out.push_str(",\"$data\":");
            write_base64(out, c.take(n as usize)?);
            out.push('}');
        }
        Head::Array(n) => {
            out.push('[');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, c)?;
            }
            out.push(']');
        }
        Head::Map(n) => {
            out.push('{');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                write_key(out, c)?;
                out.push(':');
                write_value(out, c)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Appends a map key as a JSON string: strings as they are, anything else as
/// its JSON text.
pub(crate) fn write_key(out: &mut impl JsonOut, c: &mut Cursor<'_>) -> Result<(), MsgpackError> {
    if let Some(k) = c.bytes()? {
        write_str(out, k);
    } else {
        let mut tmp = String::new();
        write_value(&mut tmp, c)?;
        write_str(out, tmp.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> String {
        let mut s = String::new();
        write_value(&mut s, &mut Cursor::new(bytes)).unwrap();
        s
    }

    #[test]
    fn scalars_and_containers() {
        assert_eq!(json(&[0x93, 0xc0, 0xc3, 0xff]), "[null,true,-1]");
        assert_eq!(
            json(&[0x81, 0xa1, b'a', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
            r#"{"a":1.5}"#
        );
        assert_eq!(json(&[0x81, 0x01, 0xa1, b'x']), r#"{"1":"x"}"#);
        assert_eq!(json(&[0xc4, 0x02, b'h', b'i']), r#""hi""#);
        assert_eq!(json(&[0xc4, 0x02, 0xff, 0x00]), r#""\udcff\u0000""#);
        assert_eq!(json(&[0xd4, 0x05, 0x07]), r#"{"$ext":5,"$data":"Bw=="}"#);
        assert_eq!(json(&[0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0]), "null");
    }

    #[test]
    fn strings_are_escaped_and_invalid_utf8_is_kept() {
        assert_eq!(json(b"\xa6a\"b\\\n\x01"), r#""a\"b\\\n\u0001""#);
        assert_eq!(json(&[0xa2, 0xc3, 0xa9]), "\"é\"");
        let s = json(&[0xa3, b'a', 0xff, b'b']);
        assert_eq!(s, r#""a\udcffb""#);
        assert_eq!(json(&[0xa2, 0xc3, 0x28]), r#""\udcc3(""#);
    }

    #[test]
    fn the_fast_escape_matches_a_bytewise_one_at_every_position() {
        fn slow(s: &str) -> String {
            let mut o = String::from("\"");
            for ch in s.chars() {
                match ch {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\r' => o.push_str("\\r"),
                    '\t' => o.push_str("\\t"),
                    c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        let specials = [
            '"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '~', '\u{7f}', 'é', '€', '😀',
        ];
        for len in 0..20 {
            for pos in 0..len.max(1) {
                for &sp in &specials {
                    let s: String = (0..len).map(|k| if k == pos { sp } else { 'a' }).collect();
                    let mut out = String::new();
                    write_str(&mut out, s.as_bytes());
                    assert_eq!(out, slow(&s), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn the_counted_length_is_the_written_length() {
        for bytes in [
            &[0x93, 0xc0, 0xc3, 0xff][..],
            &[0xa6, b'a', b'"', b'b', b'\\', b'\n', 0x01],
            &[0xa3, b'a', 0xff, b'b'],
            &[0xc4, 0x02, 0xff, 0x00],
            &[0xd4, 0x05, 0x07],
            &[0x81, 0x01, 0xa1, b'x'],
        ] {
            assert_eq!(
                json_len(&mut Cursor::new(bytes)).unwrap(),
                json(bytes).len(),
                "{bytes:02x?}"
            );
        }
    }
}
