//! The load generator's other wire formats: HTTP/1.1 POSTs of NDJSON (for
//! an `in_http`-style input: weir's, Fluent Bit's, Fluentd's) and forward
//! messages as JSON with JSON acks.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// `n` NDJSON records of about `bytes` bytes, numbered from `first`.
pub(crate) fn ndjson(n: usize, first: u64, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (bytes + 8));
    for i in first..first + n as u64 {
        out.extend_from_slice(&record_json(i, bytes));
        out.push(b'\n');
    }
    out
}

/// One record as JSON: the same fields as the msgpack load records.
fn record_json(i: u64, bytes: usize) -> Vec<u8> {
    let filler = bytes.saturating_sub(30).max(1);
    let text: String = (0..filler)
        .map(|k| (b'a' + ((i as usize * 7 + k * 13) % 26) as u8) as char)
        .collect();
    let level = if i.is_multiple_of(10) { "warn" } else { "info" };
    format!(r#"{{"seq":{i},"level":"{level}","message":"{text}"}}"#).into_bytes()
}

/// A POST of `body` to `/tag` on a kept-alive connection.
pub(crate) fn http_post(tag: &str, body: &[u8], gzip: bool, content_type: &str) -> Vec<u8> {
    let mut out = format!(
        "POST /{tag} HTTP/1.1\r\nHost: weir\r\nContent-Type: {content_type}\r\n{}Content-Length: {}\r\n\r\n",
        if gzip { "Content-Encoding: gzip\r\n" } else { "" },
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A Forward-mode message of `n` events as JSON, asking for an ack.
pub(crate) fn json_forward(
    tag: &str,
    n: usize,
    first: u64,
    bytes: usize,
    chunk: Option<&str>,
) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = format!("[\"{tag}\",[").into_bytes();
    for i in 0..n as u64 {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("[{now:.6},").as_bytes());
        out.extend_from_slice(&record_json(first + i, bytes));
        out.push(b']');
    }
    out.extend_from_slice(b"]");
    if let Some(c) = chunk {
        out.extend_from_slice(format!(",{{\"chunk\":\"{c}\"}}").as_bytes());
    }
    out.push(b']');
    out
}

/// Reads one HTTP response; its status.
///
/// # Errors
/// The connection closed or the response is not HTTP/1.1.
pub(crate) async fn read_http_status<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    buf: &mut BytesMut,
) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {head:?}"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                if s.read_buf(buf).await? == 0 {
                    anyhow::bail!("connection closed mid-response");
                }
            }
            buf.advance(end + 4 + len);
            return Ok(status);
        }
        if s.read_buf(buf).await? == 0 {
            anyhow::bail!("connection closed before a response");
        }
    }
}

/// Reads one JSON ack; its chunk id.
///
/// # Errors
/// The connection closed or the reply is not a JSON ack.
pub(crate) async fn read_json_ack<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    buf: &mut BytesMut,
) -> anyhow::Result<String> {
    loop {
        if let Some(end) = buf.iter().position(|b| *b == b'}') {
            let v: serde_json::Value = serde_json::from_slice(&buf[..=end])?;
            buf.advance(end + 1);
            return v
                .get("ack")
                .and_then(|a| a.as_str())
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("not an ack: {v}"));
        }
        if s.read_buf(buf).await? == 0 {
            anyhow::bail!("connection closed before an ack");
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
