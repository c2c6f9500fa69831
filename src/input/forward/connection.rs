//! One client connection: read, find whole frames, decode, make durable, ack.
//!
//! States: reading → (frame complete) → decoding → appending to the WAL →
//! writing the ack → reading. The handshake (when configured) will run as a
//! state before the first read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::decode::{compressed_entries, decode_request_expanded, Request, Rewrite};
use super::decompress::decompress_within;
use super::handshake;
use super::pipeline::{Pending, Pipeline};
use super::settings::{CloseReason, ConnectionSettings};
use crate::capture::{Capture, Kind};
use crate::metrics::Metrics;
use crate::msgpack::FrameScanner;
use crate::wal::WalHandle;

/// Smallest free space offered to a socket read.
const READ_CHUNK: usize = 64 * 1024;

/// A connection's read buffer starts at the budget's free allowance.
const INITIAL_BUFFER: usize = super::budget::FREE_PER_CONNECTION;

/// Between requests a read buffer larger than this is given back.
const SHRINK_ABOVE: usize = 256 << 10;

/// Longest a connection closed for bad input spends acking the good
/// requests it sent before the bad one.
const ACK_BEFORE_CLOSE: Duration = Duration::from_secs(5);

/// Top-level objects that are not arrays (not forward protocol at all)
/// accepted in a row before the connection is closed.
const MAX_NOT_ARRAY_IN_A_ROW: u32 = 16;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Serves one connection until it closes; never panics on input.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut stream: S,
    peer: SocketAddr,
    wal: WalHandle,
    settings: Arc<ConnectionSettings>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    if let Some(sec) = &settings.security {
        if let Err(f) = handshake(&mut stream, peer, sec, &mut buf, &settings).await {
            if f.send_pong() {
                let _ = stream.write_all(&handshake::pong_fail(&f)).await;
            }
            // Fluentd's connect-only heartbeats end here every second
            // (not told: logged at debug).
            metrics
                .forward
                .handshake_failed(peer, f.label(), &f.reason(), f.send_pong());
            return;
        }
    }
    let tee = settings.capture.as_ref().map(|c| {
        let conn = c.conn_id();
        c.try_record(Kind::Open, conn, Bytes::from(peer.to_string()));
        Tee { capture: c, conn }
    });
    let conn = Conn {
        peer,
        wal: &wal,
        settings: &settings,
        metrics: &metrics,
        tee: tee.as_ref(),
    };
    let (reason, detail) = match read_loop(&mut stream, &conn, buf, &mut shutdown).await {
        Ok(r) => (r, String::new()),
        Err((r, detail)) => (r, detail),
    };
    if let Some(t) = &tee {
        t.capture.try_record(Kind::Close, t.conn, Bytes::new());
    }
    let expected = matches!(
        reason,
        CloseReason::Eof
            | CloseReason::Shutdown
            | CloseReason::IdleTimeout
            | CloseReason::NoKeepalive
    );
    metrics
        .forward
        .closed(peer, reason.as_str(), expected, &detail);
}

/// One request as read: its msgpack bytes (a JSON request already turned
/// into msgpack), what the connection adds to its records, and whether the
/// client speaks JSON (its ack is then JSON).
struct Incoming<'a> {
    frame: &'a Bytes,
    additions: &'a [(String, String)],
    json: bool,
}

/// How a connection's requests are framed: msgpack, or JSON values.
enum Framing {
    Undecided,
    Msgpack(FrameScanner),
    Json(super::json::JsonScanner),
}

impl Framing {
    /// The length of the next complete request in `buf`, if there is one.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        match self {
            Framing::Undecided => Ok(None),
            Framing::Msgpack(s) => s.scan(buf).map_err(|e| format!("malformed msgpack: {e}")),
            Framing::Json(s) => s.scan(buf).map_err(|e| e.to_string()),
        }
    }

    fn reset(&mut self) {
        match self {
            Framing::Undecided => {}
            Framing::Msgpack(s) => s.reset(),
            Framing::Json(s) => s.reset(),
        }
    }
}

/// A connection closed for a fault, with what to log about it.
type Fault = (CloseReason, String);

/// What one connection's request handling works with, for its lifetime.
#[derive(Clone, Copy)]
struct Conn<'a> {
    peer: SocketAddr,
    wal: &'a WalHandle,
    settings: &'a ConnectionSettings,
    metrics: &'a Metrics,
    tee: Option<&'a Tee<'a>>,
}

/// Where this connection's accepted requests are copied.
struct Tee<'a> {
    capture: &'a Capture,
    conn: u64,
}

/// Key/value pairs added to this connection's records: its address and,
/// resolved once per connection, its host name (the address if the reverse
/// lookup fails or takes over two seconds).
async fn record_additions(
    peer: SocketAddr,
    settings: &ConnectionSettings,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(k) = &settings.source_address_key {
        out.push((k.clone(), peer.ip().to_string()));
    }
    if let Some(k) = &settings.source_hostname_key {
        let ip = peer.ip();
        let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip));
        let name = match tokio::time::timeout(Duration::from_secs(2), lookup).await {
            Ok(Ok(Ok(name))) => name,
            _ => ip.to_string(),
        };
        out.push((k.clone(), name));
    }
    out
}

/// Runs HELO → PING → PONG. Bytes the client sent after its PING stay in
/// `buf` for the read loop.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    peer: SocketAddr,
    sec: &crate::input::forward::config::SecurityConfig,
    buf: &mut BytesMut,
    settings: &ConnectionSettings,
) -> Result<(), handshake::Failure> {
    use handshake::Failure;
    let challenge = handshake::Challenge::new();
    stream
        .write_all(&challenge.helo(!settings.deny_keepalive))
        .await
        .map_err(|_| Failure::Closed)?;
    let mut scanner = FrameScanner::new();
    let deadline = tokio::time::Instant::now() + handshake::timeout(sec);
    let frame = loop {
        match scanner.scan(buf) {
            Ok(Some(len)) => break buf.split_to(len).freeze(),
            Ok(None) => {}
            Err(_) => return Err(Failure::InvalidPing),
        }
        if buf.len() >= settings.max_buffer_bytes.min(64 * 1024) {
            return Err(Failure::InvalidPing);
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Failure::Closed),
            Ok(Ok(_)) => {}
        }
    };
    let accepted = handshake::check_ping(&frame, peer.ip(), &challenge, sec)?;
    stream
        .write_all(&handshake::pong_ok(
            &accepted,
            &challenge,
            &sec.self_hostname,
        ))
        .await
        .map_err(|_| Failure::Closed)?;
    tracing::debug!(%peer, client = accepted.client_hostname, "handshake done");
    Ok(())
}

/// Serves requests until the connection ends. When it ends on bad input,
/// the requests before the bad one are durable already: they are acked
/// (briefly) before the close, as they would have been one at a time.
async fn read_loop<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    conn: &Conn<'_>,
    buf: BytesMut,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<CloseReason, Fault> {
    let Conn {
        settings, metrics, ..
    } = *conn;
    // This connection's share of the budget: its read buffer beyond the
    // free allowance, pending batches, and while a request is handled its
    // decompressed entries and batch.
    let mut held = settings.budget.reservation();
    // Requests in the WAL's hands whose acks are still to be written.
    let mut pipeline = Pipeline::default();
    let result = read_requests(stream, conn, buf, shutdown, &mut held, &mut pipeline).await;
    if let Err((reason, _)) = &result {
        let bad_input = matches!(
            reason,
            CloseReason::Malformed
                | CloseReason::FrameTooLarge
                | CloseReason::BadCompression
                | CloseReason::Truncated
                | CloseReason::RequestTimeout
        );
        if bad_input && !pipeline.is_empty() {
            let acking = pipeline.finish_all(stream, &mut held, settings, metrics, shutdown);
            let _ = tokio::time::timeout(ACK_BEFORE_CLOSE, acking).await;
        }
    }
    result
}

async fn read_requests<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    conn: &Conn<'_>,
    mut buf: BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    held: &mut super::budget::Reservation,
    pipeline: &mut Pipeline,
) -> Result<CloseReason, Fault> {
    let Conn {
        peer,
        settings,
        metrics,
        ..
    } = *conn;
    let additions = record_additions(peer, settings).await;
    // msgpack, or JSON when the first request starts with `[` or `{`
    // (decided once, as Fluentd's in_forward does).
    let mut framing = Framing::Undecided;
    let mut request_started: Option<tokio::time::Instant> = None;
    let budget = &settings.budget;
    let beyond_free = |cap: usize| cap.saturating_sub(super::budget::FREE_PER_CONNECTION);
    let mut not_arrays = 0u32;
    loop {
        // Handle every complete request already buffered.
        loop {
            if matches!(framing, Framing::Undecided) {
                framing = match super::json::starts_json(&buf) {
                    None => break,
                    Some(true) => Framing::Json(super::json::JsonScanner::new()),
                    Some(false) => Framing::Msgpack(FrameScanner::new()),
                };
            }
            let len = match framing.scan(&buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return Err((CloseReason::Malformed, e)),
            };
            let frame = buf.split_to(len).freeze();
            let frame = match &framing {
                Framing::Json(_) => super::json::to_msgpack(&frame)
                    .map_err(|e| (CloseReason::Malformed, e.to_string()))?,
                _ => frame,
            };
            framing.reset();
            let large = len > super::pipeline::MAX_PIPELINED_FRAME;
            if large {
                pipeline
                    .finish_all(stream, held, settings, metrics, shutdown)
                    .await?;
            } else if pipeline.is_full() {
                pipeline
                    .finish_front(stream, held, settings, metrics, shutdown)
                    .await?;
            }
            let request = Incoming {
                frame: &frame,
                additions: &additions,
                json: matches!(framing, Framing::Json(_)),
            };
            let handled = handle_request(stream, conn, request, shutdown, held, pipeline).await?;
            if large {
                pipeline
                    .finish_all(stream, held, settings, metrics, shutdown)
                    .await?;
            }
            not_arrays = match handled {
                Handled::NotArray => not_arrays + 1,
                Handled::Request => 0,
            };
            if not_arrays >= MAX_NOT_ARRAY_IN_A_ROW {
                return Err((
                    CloseReason::Malformed,
                    format!("{not_arrays} objects in a row that are not forward-protocol arrays"),
                ));
            }
            if settings.deny_keepalive {
                pipeline
                    .finish_all(stream, held, settings, metrics, shutdown)
                    .await?;
                return Ok(CloseReason::NoKeepalive);
            }
            request_started = None;
        }
        // Between requests, a large buffer goes back to the budget (any
        // buffer, if it grew into the reserve: the reserve is for one
        // request at a time).
        if buf.is_empty() && (buf.capacity() > SHRINK_ABOVE || held.holds_reserve()) {
            buf = BytesMut::with_capacity(INITIAL_BUFFER);
        }
        budget.shrink_to(held, beyond_free(buf.capacity()) + pipeline.bytes);
        // Whitespace between JSON values (a newline after each, as
        // line-oriented senders write) begins no request.
        if matches!(framing, Framing::Json(_)) {
            let blank = buf
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            if blank > 0 {
                bytes::Buf::advance(&mut buf, blank);
                framing.reset();
            }
        }
        // A request has begun: it must complete in time.
        if buf.is_empty() {
            request_started = None;
        } else if request_started.is_none() {
            request_started = Some(tokio::time::Instant::now());
        }
        if buf.len() >= settings.max_buffer_bytes {
            return Err((
                CloseReason::FrameTooLarge,
                format!(
                    "request larger than forward.max_buffer_bytes ({} bytes)",
                    settings.max_buffer_bytes
                ),
            ));
        }
        if buf.capacity() - buf.len() < (READ_CHUNK / 4).min(buf.capacity() / 2) {
            // Grow (about doubling), taking the memory from the budget
            // first: when it is spent this connection waits, unread.
            let room = (settings.max_buffer_bytes - buf.len())
                .min(READ_CHUNK.max(buf.len()))
                .max(1024);
            let target = buf.len() + room;
            // Never wait for budget while holding pending batches.
            if !pipeline.is_empty()
                && !budget.try_grow_to(held, beyond_free(target) + pipeline.bytes)
            {
                pipeline
                    .finish_all(stream, held, settings, metrics, shutdown)
                    .await?;
            }
            tokio::select! {
                _ = budget.grow_to(held, beyond_free(target) + pipeline.bytes) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(CloseReason::Shutdown),
            }
            let mut grown = BytesMut::with_capacity(target);
            grown.extend_from_slice(&buf);
            buf = grown;
        }
        let idle_deadline = tokio::time::Instant::now() + settings.idle_timeout;
        let deadline = match request_started {
            Some(t) => idle_deadline.min(t + settings.request_timeout),
            None => idle_deadline,
        };
        // Read more, or ack the oldest pending request as soon as the WAL
        // has it (reading is cancel-safe: nothing read is lost).
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => Some(r),
            () = pipeline.wait_front(), if !pipeline.is_empty() => None,
            _ = shutdown.wait_for(|s| *s) => return Ok(CloseReason::Shutdown),
        };
        let Some(read) = read else {
            pipeline
                .finish_front(stream, held, settings, metrics, shutdown)
                .await?;
            continue;
        };
        match read {
            Err(_) if request_started.is_some() && deadline < idle_deadline => {
                return Err((
                    CloseReason::RequestTimeout,
                    format!(
                        "request not complete after forward.request_timeout ({} bytes so far)",
                        buf.len()
                    ),
                ))
            }
            Err(_) => return Ok(CloseReason::IdleTimeout),
            Ok(Err(e)) => return Err((CloseReason::IoError, format!("read failed: {e}"))),
            Ok(Ok(0)) => {
                return if buf.is_empty() {
                    // A client may close its side and still read its acks.
                    pipeline
                        .finish_all(stream, held, settings, metrics, shutdown)
                        .await?;
                    Ok(CloseReason::Eof)
                } else {
                    Err((
                        CloseReason::Truncated,
                        format!(
                            "connection ended inside a request ({} bytes pending)",
                            buf.len()
                        ),
                    ))
                };
            }
            Ok(Ok(n)) => metrics.forward.read(n),
        }
    }
}

/// What a complete object turned out to be.
enum Handled {
    Request,
    /// Not an array: ignored, but a run of them means no forward client.
    NotArray,
}

async fn handle_request<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    conn: &Conn<'_>,
    request: Incoming<'_>,
    shutdown: &mut watch::Receiver<bool>,
    held: &mut super::budget::Reservation,
    pipeline: &mut Pipeline,
) -> Result<Handled, Fault> {
    let Conn {
        peer,
        wal,
        settings,
        metrics,
        tee,
    } = *conn;
    let Incoming {
        frame,
        additions: record_additions,
        json,
    } = request;
    let started = Instant::now();
    if settings.chunk_size_warn_limit > 0 && frame.len() > settings.chunk_size_warn_limit {
        metrics
            .forward
            .large_request(peer, frame.len(), settings.chunk_size_warn_limit);
    }
    let rewrite = Rewrite {
        tag_prefix: &settings.tag_prefix,
        add: record_additions,
    };
    let budget = &settings.budget;
    // Decompressed entries and the decoded batch take from the budget on
    // top of the read buffer (which holds the frame) and pending batches.
    let mut base = held.bytes();
    let expanded = match compressed_entries(frame) {
        Ok(None) => None,
        Ok(Some((kind, blob))) => {
            let limit = settings.limits.max_decompressed_bytes;
            // With batches pending, decompress only with budget free now;
            // else ack them first, then decompress, waiting if need be.
            let mut quick = None;
            if !pipeline.is_empty() {
                match decompress_within(kind, blob, limit, budget, held, false).await {
                    Err(super::decompress::DecompressError::WouldWait) => {
                        budget.shrink_to(held, base);
                        pipeline
                            .finish_all(stream, held, settings, metrics, shutdown)
                            .await?;
                        base = held.bytes();
                    }
                    done => quick = Some(done),
                }
            }
            let r = match quick {
                Some(r) => r,
                None => {
                    let expanding = decompress_within(kind, blob, limit, budget, held, true);
                    tokio::select! {
                        r = expanding => r,
                        _ = shutdown.wait_for(|s| *s) => {
                            return Err((CloseReason::Shutdown, "shutting down".into()))
                        }
                    }
                }
            };
            match r {
                Ok(e) => Some(e),
                Err(e) => return Err((CloseReason::BadCompression, e.to_string())),
            }
        }
        Err(e) => return Err((CloseReason::Malformed, e.to_string())),
    };
    let decoded = decode_request_expanded(
        frame,
        &settings.limits,
        now_ns(),
        &rewrite,
        expanded.as_deref(),
    );
    drop(expanded);
    let decoded = match decoded {
        Ok(Request::Events(d)) => d,
        Ok(Request::Nil) => return Ok(Handled::Request),
        Ok(Request::NotArray) => {
            metrics.forward.not_array(peer);
            return Ok(Handled::NotArray);
        }
        Err(e) => {
            let reason = match e {
                super::decode::DecodeError::UnknownCompression(_)
                | super::decode::DecodeError::Decompress(_) => CloseReason::BadCompression,
                _ => CloseReason::Malformed,
            };
            return Err((reason, e.to_string()));
        }
    };
    // The batch waits for the WAL holding its share of the budget.
    budget.shrink_to(held, base);
    let mut batch_bytes = 0;
    if let Some(b) = &decoded.batch {
        // Decoded events may take what decompressed entries may: the
        // budget's reserve is sized for that (and a WAL record holds it).
        let limit = settings
            .limits
            .max_decompressed_bytes
            .min(crate::wal::MAX_BATCH_BYTES);
        if b.as_bytes().len() > limit {
            return Err((
                CloseReason::FrameTooLarge,
                format!(
                    "request decodes to {} bytes of events, more than forward.max_decompressed_bytes ({limit})",
                    b.as_bytes().len(),
                ),
            ));
        }
        let len = b.as_bytes().len();
        let before = held.bytes();
        if pipeline.is_empty() || !budget.try_grow_to(held, before + len) {
            // Never wait for budget while holding pending batches.
            pipeline
                .finish_all(stream, held, settings, metrics, shutdown)
                .await?;
            let before = held.bytes();
            tokio::select! {
                _ = budget.grow_to(held, before + len) => {}
                _ = shutdown.wait_for(|s| *s) => {
                    return Err((CloseReason::Shutdown, "shutting down".into()))
                }
            }
            batch_bytes = held.bytes() - before;
        } else {
            batch_bytes = held.bytes() - before;
        }
    }
    if let Some(t) = tee {
        t.capture.try_record(Kind::Request, t.conn, frame.clone());
    }
    let mode = decoded.mode.as_str();
    let s = decoded.skipped;
    metrics.forward.request(
        peer,
        mode,
        decoded.entries_bytes,
        &[
            ("invalid_time", s.invalid_time),
            ("invalid_record", s.invalid_record),
            ("invalid_entry", s.invalid_entry),
            ("invalid_tag", s.invalid_tag),
            ("non_log_signal", s.non_log_signal),
        ],
    );
    // A chunk id (with the peer address and tag, since Fluent Bit derives
    // ids from content; a weir sender's ids are unique without them) lets
    // the WAL recognise a resend: the chunk's own msgpack bytes, whatever
    // its type, before a JSON connection's ack is turned into JSON.
    let key = match (&decoded.ack, &decoded.batch) {
        (Some(ack), Some(batch)) => Some(crate::input::dedupe_key(
            &crate::input::durable::chunk_source(peer.ip(), &ack[5..]),
            batch.tag(),
            &ack[5..],
        )),
        _ => None,
    };
    let mut pending = Pending {
        durable: None,
        result: None,
        // A JSON connection gets its acks as JSON.
        ack: decoded.ack.map(|a| {
            if json {
                super::json::ack_as_json(&a)
            } else {
                a
            }
        }),
        events: 0,
        mode,
        started,
        held_bytes: batch_bytes,
    };
    if let Some(batch) = decoded.batch {
        pending.events = batch.len() as u64;
        match crate::input::durable::submit(wal, batch, key).await {
            Ok(rx) => pending.durable = Some(rx),
            Err(e) => return Err((CloseReason::WalUnavailable, e.to_string())),
        }
    }
    // (Without a batch or an ack there is nothing to wait for or answer.)
    if pending.durable.is_some() || pending.ack.is_some() {
        pipeline.push(pending);
    }
    Ok(Handled::Request)
}
