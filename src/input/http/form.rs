//! Query strings and `application/x-www-form-urlencoded` bodies, as bytes:
//! a `msgpack=` parameter is binary, so it is never read as UTF-8.

use std::borrow::Cow;

/// The `name=value` pairs, percent- and `+`-decoded, in order.
pub(super) fn pairs(text: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    text.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(part: &[u8]) -> Vec<u8> {
    let plus: Cow<'_, [u8]> = if part.contains(&b'+') {
        Cow::Owned(
            part.iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect(),
        )
    } else {
        Cow::Borrowed(part)
    };
    percent_encoding::percent_decode(&plus).collect()
}

/// The first value of `name`.
pub(super) fn get<'a>(pairs: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_to_bytes() {
        let p = pairs(b"json=%7B%22a%22%3A+1%7D&msgpack=%81%A1a%01&flag&=x");
        assert_eq!(get(&p, "json"), Some(&br#"{"a": 1}"#[..]));
        assert_eq!(get(&p, "msgpack"), Some(&[0x81, 0xa1, b'a', 0x01][..]));
        assert_eq!(get(&p, "flag"), Some(&b""[..]));
        assert_eq!(get(&p, "none"), None);
    }
}
