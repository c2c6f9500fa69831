//! Event time as clients send it (forward-protocol.md §3), to nanoseconds.

use crate::msgpack::{Cursor, Head, MsgpackError};

/// Largest |seconds| whose nanoseconds still fit an i64 (year 2262).
const MAX_ABS_SECS: i64 = i64::MAX / 1_000_000_000;

/// Reads one time value and returns nanoseconds since the epoch, or `None`
/// when the value is not a time (the event is then skipped as invalid).
///
/// Accepted: EventTime (ext 0, 8 bytes: u32 sec, u32 nsec) as fixext8 or ext8;
/// msgpack Timestamp (ext −1, 4/8/12 bytes); any integer (seconds); a finite
/// float (seconds, as Fluent Bit's decoder accepts). A time of zero means
/// "now", as Fluentd treats it; `now_ns` supplies that.
pub(crate) fn read_time(c: &mut Cursor<'_>, now_ns: i64) -> Result<Option<i64>, MsgpackError> {
    let ns = match c.peek()? {
        Head::Int(secs) => {
            c.head()?;
            if secs.unsigned_abs() > MAX_ABS_SECS as u64 {
                return Ok(None);
            }
            secs * 1_000_000_000
        }
        Head::Float(f) => {
            c.head()?;
            if !f.is_finite() || f.abs() >= MAX_ABS_SECS as f64 {
                return Ok(None);
            }
            float_secs_to_ns(f)
        }
        Head::Ext(0, 8) => {
            c.head()?;
            let b = c.take(8)?;
            let sec = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let nsec = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            if nsec >= 1_000_000_000 {
                return Ok(None);
            }
            i64::from(sec) * 1_000_000_000 + i64::from(nsec)
        }
        Head::Ext(-1, n @ (4 | 8 | 12)) => {
            c.head()?;
            let b = c.take(n as usize)?;
            let (sec, nsec): (i64, u32) = match n {
                4 => (i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])), 0),
                8 => {
                    let v = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
                }
                _ => {
                    let nsec = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let sec =
                        i64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
                    (sec, nsec)
                }
            };
            if nsec >= 1_000_000_000 || sec.unsigned_abs() > (MAX_ABS_SECS - 1) as u64 {
                return Ok(None);
            }
            sec * 1_000_000_000 + i64::from(nsec)
        }
        _ => {
            c.skip()?;
            return Ok(None);
        }
    };
    Ok(Some(if ns == 0 { now_ns } else { ns }))
}

/// Seconds as a float → nanoseconds, exact to the nanosecond a float
/// holds (whole seconds and the fraction apart: `f * 1e9` would round
/// today's times to 256 ns).
pub(crate) fn float_secs_to_ns(f: f64) -> i64 {
    let whole = f.trunc();
    whole as i64 * 1_000_000_000 + ((f - whole) * 1e9).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(bytes: &[u8]) -> Option<i64> {
        let mut c = Cursor::new(bytes);
        let r = read_time(&mut c, 42).unwrap();
        assert!(c.is_empty(), "value fully consumed");
        r
    }

    #[test]
    fn every_time_form_from_the_notes() {
        let want = 1_441_588_984_500_000_000;
        assert_eq!(
            t(&[0xd7, 0, 0x55, 0xec, 0xe6, 0xf8, 0x1d, 0xcd, 0x65, 0]),
            Some(want)
        );
        assert_eq!(
            t(&[0xc7, 8, 0, 0x55, 0xec, 0xe6, 0xf8, 0x1d, 0xcd, 0x65, 0]),
            Some(want)
        );
        assert_eq!(
            t(&[0xce, 0x55, 0xec, 0xe6, 0xf8]),
            Some(1_441_588_984_000_000_000)
        );
        assert_eq!(
            t(&[0xcb, 0x41, 0xd5, 0x7b, 0x39, 0xbe, 0x20, 0, 0]),
            Some(want)
        );
        // msgpack Timestamp 32: seconds only
        assert_eq!(
            t(&[0xd6, 0xff, 0x55, 0xec, 0xe6, 0xf8]),
            Some(1_441_588_984_000_000_000)
        );
        // signed int32 as fluent-logger-golang sends
        assert_eq!(
            t(&[0xd2, 0x55, 0xec, 0xe6, 0xf8]),
            Some(1_441_588_984_000_000_000)
        );
    }

    #[test]
    fn zero_means_now_and_bad_values_are_invalid() {
        assert_eq!(t(&[0x00]), Some(42));
        assert_eq!(t(&[0xa1, b'x']), None);
        assert_eq!(t(&[0xc0]), None);
        // nanoseconds out of range
        assert_eq!(t(&[0xd7, 0, 0, 0, 0, 1, 0x3b, 0x9a, 0xca, 0x00]), None);
        // NaN
        assert_eq!(t(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn the_most_negative_times_are_invalid_not_a_panic() {
        // int64 i64::MIN seconds
        assert_eq!(t(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]), None);
        // timestamp 96 with i64::MIN seconds
        let mut ts = vec![0xc7, 12, 0xff, 0, 0, 0, 0];
        ts.extend_from_slice(&i64::MIN.to_be_bytes());
        assert_eq!(t(&ts), None);
        // uint64 max
        assert_eq!(
            t(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        // float -1e300
        let mut f = vec![0xcb];
        f.extend_from_slice(&(-1e300f64).to_be_bytes());
        assert_eq!(t(&f), None);
    }
}
