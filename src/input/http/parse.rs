//! A request body (already decompressed) → events, as Fluentd's `in_http`
//! reads it: JSON (an object, or an array of objects as one batch),
//! NDJSON (one object per line), msgpack (a stream of maps, arrays of maps
//! or `[time, map]` events as Fluent Bit's `out_http` sends them). No I/O;
//! the whole body is checked before anything is kept, so a bad request
//! stores nothing.

use crate::event::BatchBuilder;
use crate::input::forward::json::JsonScanner;
use crate::input::forward::time::read_time;
use crate::msgpack::{Cursor, Head, MsgpackError};

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Ndjson,
    Msgpack,
}

/// Where each event's time comes from.
#[derive(Clone, Copy)]
pub(crate) struct Times<'a> {
    /// `?time=` in the query string: every event's time.
    pub(crate) fixed: Option<i64>,
    /// The record key holding the time (`http.time_key`); empty: none.
    pub(crate) key: &'a str,
    /// Leave the key in the record.
    pub(crate) keep_key: bool,
    /// Now, for events without a time (and a time of zero).
    pub(crate) now_ns: i64,
    /// Memory for the batch as it grows.
    pub(crate) room: &'a dyn Room,
}

/// Memory for a batch as it is built, asked for as it grows: what weir adds
/// to every record (headers, query parameters, the address) can make a
/// batch many times its body, so it cannot wait for the end to be counted.
pub(crate) trait Room {
    /// The batch is about to hold `bytes`.
    ///
    /// # Errors
    /// `too_large` (it could never fit) or `busy` (not now).
    fn take(&self, bytes: usize) -> Result<(), Malformed>;
}

/// No bound (tests).
#[cfg(test)]
pub(crate) struct Unbounded;

#[cfg(test)]
impl Room for Unbounded {
    fn take(&self, _: usize) -> Result<(), Malformed> {
        Ok(())
    }
}

/// Why a body cannot be taken (the answer is 400 with this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub(crate) struct Malformed {
    /// The metric's reason: `malformed` or `invalid_time`; `too_large` and
    /// `busy` from [`Room`].
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

fn malformed(detail: String) -> Malformed {
    Malformed {
        reason: "malformed",
        detail,
    }
}

/// Adds the events of `body` to `out`.
///
/// # Errors
/// The body is not valid in `format`, holds something that is not a
/// record, or a record's time cannot be read; `out` must then be dropped.
pub(crate) fn events(
    format: Format,
    body: &[u8],
    times: &Times<'_>,
    out: &mut BatchBuilder,
) -> Result<(), Malformed> {
    match format {
        Format::Json => {
            // One value, or several back to back (Fluent Bit's in_http takes
            // concatenated objects as application/json too).
            let mut rest = body;
            let mut n = 0;
            loop {
                if rest.iter().all(u8::is_ascii_whitespace) {
                    if n == 0 {
                        return Err(malformed("the body is empty".to_string()));
                    }
                    return Ok(());
                }
                let mut scanner = JsonScanner::new();
                let end = match scanner.scan(rest) {
                    Ok(Some(end)) => end,
                    // Incomplete or not an object/array: the parser says why.
                    _ => rest.len(),
                };
                n += 1;
                json_value(&rest[..end], times, out, (n > 1).then_some(n))?;
                rest = &rest[end..];
            }
        }
        Format::Ndjson => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                json_value(line, times, out, Some(i + 1))
                    .map_err(|e| with_context(e, &|w| w.replacen("value", "line", 1)))?;
            }
            Ok(())
        }
        Format::Msgpack => {
            let mut c = Cursor::new(body);
            let mut n = 0;
            while !c.is_empty() {
                n += 1;
                msgpack_object(&mut c, times, out)
                    .map_err(|e| malformed(format!("msgpack object {n}: {e}")))?;
            }
            Ok(())
        }
    }
}

/// One JSON value: an object, or an array of objects.
fn json_value(
    text: &[u8],
    times: &Times<'_>,
    out: &mut BatchBuilder,
    line: Option<usize>,
) -> Result<(), Malformed> {
    let at = |what: String| match line {
        Some(l) => format!("value {l}: {what}"),
        None => what,
    };
    let packed = crate::input::forward::json::to_msgpack(text).map_err(|e| match e {
        crate::input::forward::json::JsonError::Parse(why) => {
            malformed(at(format!("invalid JSON: {why}")))
        }
        e => malformed(at(e.to_string())),
    })?;
    let mut c = Cursor::new(&packed);
    let bad = |e: MsgpackError| malformed(at(e.to_string()));
    match c.peek().map_err(bad)? {
        Head::Map(_) => record(&mut c, times, out).map_err(|e| with_context(e, &at)),
        Head::Array(n) => {
            c.head().map_err(bad)?;
            for i in 0..n {
                if !matches!(c.peek().map_err(bad)?, Head::Map(_)) {
                    return Err(malformed(at(format!("array element {i} is not an object"))));
                }
                record(&mut c, times, out)
                    .map_err(|e| with_context(e, &|w| at(format!("array element {i}: {w}"))))?;
            }
            Ok(())
        }
        _ => Err(malformed(at(
            "expected an object or an array of objects".to_string()
        ))),
    }
}

fn with_context(e: Malformed, at: &dyn Fn(String) -> String) -> Malformed {
    Malformed {
        reason: e.reason,
        detail: at(e.detail),
    }
}

/// One msgpack object: a map, an array of maps, or a `[time, map]` event
/// (`[[time, metadata], map]` from Fluent Bit 2.1 and later).
fn msgpack_object(
    c: &mut Cursor<'_>,
    times: &Times<'_>,
    out: &mut BatchBuilder,
) -> Result<(), Malformed> {
    let bad = |e: MsgpackError| malformed(e.to_string());
    match c.peek().map_err(bad)? {
        Head::Map(_) => record(c, times, out),
        Head::Array(n) => {
            let start = *c;
            c.head().map_err(bad)?;
            if n == 2 {
                if let Some(t) = event_time(c, times.now_ns).map_err(bad)? {
                    if matches!(c.peek().map_err(bad)?, Head::Map(_)) {
                        let r = c.skip().map_err(bad)?;
                        let t = times.fixed.unwrap_or(t);
                        out.push(t, r);
                        return times.room.take(out.bytes());
                    }
                }
                *c = start;
                c.head().map_err(bad)?;
            }
            for i in 0..n {
                if !matches!(c.peek().map_err(bad)?, Head::Map(_)) {
                    return Err(malformed(format!(
                        "array element {i} is neither a map nor a [time, map] event"
                    )));
                }
                record(c, times, out)?;
            }
            Ok(())
        }
        _ => Err(malformed(
            "expected a map, an array of maps or a [time, map] event".to_string(),
        )),
    }
}

/// An event's time, `[time, metadata]` included; `None` (cursor moved
/// anyway) when the value is not a time.
fn event_time(c: &mut Cursor<'_>, now_ns: i64) -> Result<Option<i64>, MsgpackError> {
    if let Head::Array(n) = c.peek()? {
        c.head()?;
        if n == 0 {
            return Ok(None);
        }
        let t = read_time(c, now_ns)?;
        for _ in 1..n {
            c.skip()?;
        }
        return Ok(t);
    }
    read_time(c, now_ns)
}

/// One record (the cursor at a map): its time taken from `times`, the
/// record pushed with the time key removed unless kept.
fn record(c: &mut Cursor<'_>, times: &Times<'_>, out: &mut BatchBuilder) -> Result<(), Malformed> {
    let bad = |e: MsgpackError| malformed(e.to_string());
    let raw = c.skip().map_err(bad)?;
    if times.key.is_empty() {
        out.push(times.fixed.unwrap_or(times.now_ns), raw);
        return times.room.take(out.bytes());
    }
    let Some((value, without)) = find_key(raw, times.key.as_bytes()).map_err(bad)? else {
        out.push(times.fixed.unwrap_or(times.now_ns), raw);
        return times.room.take(out.bytes());
    };
    let t = match times.fixed {
        Some(t) => t,
        None => time_value(value, times.now_ns).ok_or_else(|| Malformed {
            reason: "invalid_time",
            detail: format!(
                "{:?} is not a time (expected seconds since the epoch or an RFC 3339 string)",
                times.key
            ),
        })?,
    };
    if times.keep_key {
        out.push(t, raw);
    } else {
        out.push(t, &without);
    }
    times.room.take(out.bytes())
}

/// The value stored under `key` in the map `raw`, and the map without it.
#[allow(clippy::type_complexity)]
fn find_key<'a>(raw: &'a [u8], key: &[u8]) -> Result<Option<(&'a [u8], Vec<u8>)>, MsgpackError> {
    let mut c = Cursor::new(raw);
    let Head::Map(n) = c.head()? else {
        return Ok(None);
    };
    let pairs_at = c.position();
    for _ in 0..n {
        let pair_start = c.position();
        let k = c.skip()?;
        let is_key = Cursor::new(k).bytes().ok().flatten() == Some(key);
        let value = c.skip()?;
        if is_key {
            let pair_end = c.position();
            let mut without = Vec::with_capacity(raw.len());
            without.push(0xdf);
            without.extend_from_slice(&(n - 1).to_be_bytes());
            without.extend_from_slice(&raw[pairs_at..pair_start]);
            without.extend_from_slice(&raw[pair_end..]);
            return Ok(Some((value, without)));
        }
    }
    Ok(None)
}

/// A record's time value: a number (seconds), an EventTime, or an RFC 3339
/// string. Zero means now, as Fluentd reads it.
fn time_value(value: &[u8], now_ns: i64) -> Option<i64> {
    let mut c = Cursor::new(value);
    if let Ok(Some(s)) = c.bytes() {
        let s = std::str::from_utf8(s).ok()?;
        let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
        return t.timestamp_nanos_opt();
    }
    let mut c = Cursor::new(value);
    read_time(&mut c, now_ns).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn times(key: &str) -> Times<'_> {
        Times {
            fixed: None,
            key,
            keep_key: false,
            now_ns: NOW,
            room: &Unbounded,
        }
    }

    fn decode(
        format: Format,
        body: &[u8],
        t: &Times<'_>,
    ) -> Result<Vec<(i64, serde_json::Value)>, Malformed> {
        let mut b = BatchBuilder::new(b"t", 0);
        events(format, body, t, &mut b)?;
        Ok(b.finish()
            .events()
            .map(|e| (e.time_ns, rmp_serde::from_slice(e.record).unwrap()))
            .collect())
    }

    #[test]
    fn a_json_object_or_array_is_one_batch_with_the_time_key_taken_out() {
        let got = decode(
            Format::Json,
            br#"{"a":1,"time":1700000001.5}"#,
            &times("time"),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![(1_700_000_001_500_000_000, serde_json::json!({"a":1}))]
        );
        let got = decode(
            Format::Json,
            br#"[{"a":1},{"b":"x","time":"2023-11-14T22:13:21+01:00"}]"#,
            &times("time"),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (NOW, serde_json::json!({"a":1})));
        assert_eq!(
            got[1],
            (1_699_996_401_000_000_000, serde_json::json!({"b":"x"}))
        );
    }

    #[test]
    fn a_bad_element_half_way_rejects_the_whole_body() {
        for body in [
            &br#"[{"a":1},{"b":2"#[..],
            br#"[{"a":1},3]"#,
            br#"[{"a":1},{"time":"yesterday"}]"#,
            br#""just a string""#,
            b"",
        ] {
            assert!(
                decode(Format::Json, body, &times("time")).is_err(),
                "{body:?}"
            );
        }
        let e = decode(Format::Json, br#"[{"time":"yesterday"}]"#, &times("time")).unwrap_err();
        assert_eq!(e.reason, "invalid_time");
    }

    #[test]
    fn concatenated_json_objects_are_one_batch() {
        let got = decode(
            Format::Json,
            b"{\"a\":1}\n{\"a\":2} [{\"a\":3}]",
            &times("time"),
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert!(decode(Format::Json, b"{\"a\":1} 7", &times("time")).is_err());
        assert!(decode(Format::Json, b"  ", &times("time")).is_err());
    }

    #[test]
    fn ndjson_skips_blank_lines_and_names_the_bad_one() {
        let got = decode(
            Format::Ndjson,
            b"{\"a\":1}\r\n\n{\"a\":2}\n",
            &times("time"),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        let e = decode(Format::Ndjson, b"{\"a\":1}\n{oops}\n", &times("time")).unwrap_err();
        assert!(e.detail.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn msgpack_takes_maps_arrays_and_fluent_bit_events() {
        let mut body = Vec::new();
        body.extend(rmp_serde::to_vec_named(&serde_json::json!({"a":1})).unwrap());
        body.extend(rmp_serde::to_vec(&(1_700_000_002u32, serde_json::json!({"b":2}))).unwrap());
        body.extend(
            rmp_serde::to_vec(&(
                (1_700_000_003u32, serde_json::json!({})),
                serde_json::json!({"c":3}),
            ))
            .unwrap(),
        );
        body.extend(
            rmp_serde::to_vec(&[serde_json::json!({"d":4}), serde_json::json!({"e":5})]).unwrap(),
        );
        let got = decode(Format::Msgpack, &body, &times("time")).unwrap();
        let times_got: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times_got,
            vec![
                NOW,
                1_700_000_002_000_000_000,
                1_700_000_003_000_000_000,
                NOW,
                NOW
            ]
        );
        assert!(decode(Format::Msgpack, &[0x92, 0x01], &times("time")).is_err());
    }

    /// A room that refuses past `limit` batch bytes.
    struct Limit(usize);

    impl Room for Limit {
        fn take(&self, bytes: usize) -> Result<(), Malformed> {
            if bytes > self.0 {
                return Err(Malformed {
                    reason: "too_large",
                    detail: String::new(),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn every_record_asks_the_room_before_the_batch_grows_on() {
        let body = "{}\n".repeat(1000);
        let t = Times {
            room: &Limit(2000),
            ..times("")
        };
        let mut out = BatchBuilder::new(b"t", 0);
        let e = events(Format::Ndjson, body.as_bytes(), &t, &mut out).unwrap_err();
        assert_eq!(e.reason, "too_large");
        assert!(out.bytes() < 2100, "{}", out.bytes());
        let t = Times {
            room: &Limit(2000),
            ..times("time")
        };
        let mut out = BatchBuilder::new(b"t", 0);
        let json = format!("[{}{{}}]", "{\"time\":1},".repeat(1000));
        assert!(events(Format::Json, json.as_bytes(), &t, &mut out).is_err());
        let mut out = BatchBuilder::new(b"t", 0);
        let mp = rmp_serde::to_vec(&vec![
            (1u32, std::collections::BTreeMap::from([("a", 1)]));
            1000
        ])
        .unwrap();
        assert!(events(Format::Msgpack, &mp, &t, &mut out).is_err());
    }

    #[test]
    fn a_fixed_time_wins_and_a_kept_key_stays() {
        let t = Times {
            fixed: Some(5),
            key: "time",
            keep_key: true,
            now_ns: NOW,
            room: &Unbounded,
        };
        let got = decode(Format::Json, br#"{"time":"not a time","a":1}"#, &t).unwrap();
        assert_eq!(
            got,
            vec![(5, serde_json::json!({"time":"not a time","a":1}))]
        );
    }
}
