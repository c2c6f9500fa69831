//! One HTTP request: checked (method, origin, token, tag, size, load),
//! read within the memory budget and the request timeout, decompressed
//! within the cap, parsed whole, made durable, and only then answered 2xx.
//! Anything wrong is answered 4xx (or 503 when weir is full) with a reason,
//! and nothing of that request is stored.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::form;
use super::parse::{events, Format, Malformed, Room, Times};
use super::Context;
use crate::event::{BatchBuilder, MAX_TAG_LEN};
use crate::input::forward::budget::{MemoryBudget, Reservation};
use crate::input::forward::decompress::{decompress_within, Compression, DecompressError};

/// The longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// A request refused: its status, the metric's reason and what the client
/// is told.
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    reason: &'static str,
    detail: String,
    /// Seconds for `Retry-After` (503).
    retry_after: Option<u32>,
    /// The body was not read: the connection cannot be reused.
    close: bool,
}

impl Reject {
    fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            detail: detail.into(),
            retry_after: None,
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn busy(detail: impl Into<String>, seconds: u32) -> Self {
        let mut r = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail);
        r.retry_after = Some(seconds);
        r
    }
}

pub(super) type HttpResponse = Response<Full<Bytes>>;

fn text(status: StatusCode, body: String) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Answers one request; never fails (every problem is an answer).
pub(super) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    ctx: &Context,
) -> HttpResponse {
    let started = Instant::now();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, mut body) = req.into_parts();
    let mut response = match answer(parts, &mut body, peer, ctx).await {
        Ok(r) => r,
        Err(reject) => {
            if reject.close && !expects_continue {
                // A client still sending would miss the answer when the
                // socket closes under it (a reset): take what it sends,
                // within bounds, before answering.
                discard(&mut body).await;
            }
            let status = reject.status.as_u16();
            ctx.metrics
                .http
                .rejected(peer, reject.reason, status, &reject.detail);
            let mut r = text(reject.status, format!("{}\n", reject.detail));
            if let Some(s) = reject.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            if reject.status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if reject.status == StatusCode::METHOD_NOT_ALLOWED {
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("POST, GET, OPTIONS"),
                );
            }
            if reject.close {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    ctx.cors
        .add_headers(origin.as_ref(), response.headers_mut());
    ctx.metrics
        .http
        .answered(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Reads and drops what is left of a refused request's body: at most
/// [`DISCARD_BYTES`] for at most [`DISCARD_TIME`].
async fn discard(body: &mut Incoming) {
    let mut left = DISCARD_BYTES;
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// What is read of a refused request's body before the answer.
const DISCARD_BYTES: usize = 4 << 20;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

async fn answer(
    parts: hyper::http::request::Parts,
    body: &mut Incoming,
    peer: SocketAddr,
    ctx: &Context,
) -> Result<HttpResponse, Reject> {
    let req = &parts;
    match req.method {
        Method::POST => {}
        // Load balancers' health checks (Fluentd answers them too).
        Method::GET | Method::HEAD => return Ok(text(StatusCode::OK, String::new())),
        Method::OPTIONS => return Ok(ctx.cors.preflight(&req.headers)),
        _ => {
            return Err(Reject::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                format!("{} is not taken: POST events to /<tag>", req.method),
            )
            .closing())
        }
    }
    if !ctx.cors.allows(req.headers.get(header::ORIGIN)) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "origin",
            "the Origin is not in http.cors_allow_origins",
        )
        .closing());
    }
    if let Some(token) = &ctx.cfg.bearer_token {
        if !bearer_matches(&req.headers, token) {
            return Err(Reject::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong Authorization: Bearer token",
            )
            .closing());
        }
    }
    let tag = tag_of(req.uri.path(), &ctx.cfg.tag_prefix)
        .map_err(|why| Reject::new(StatusCode::BAD_REQUEST, "invalid_tag", why).closing())?;
    if let Some(why) = ctx.limits.overloaded() {
        return Err(Reject::busy(why, 5).closing());
    }
    // A request never waits for memory (503 instead), so a body larger
    // than the whole pool could never be taken: 413, not a retry.
    let max_body = BodyLimit::of(
        ctx.cfg.max_body_bytes.as_usize(),
        ctx.limits.budget.pool_bytes(),
    );
    let declared = content_length(&req.headers);
    if declared.is_some_and(|n| n > max_body.bytes) {
        return Err(max_body.too_large().closing());
    }

    let query = form::pairs(req.uri.query().unwrap_or("").as_bytes());
    let fixed = query_time(&query)?;
    let additions = additions(ctx, &parts.headers, &query, peer);
    let compression = compression_of(&parts.headers)?;
    let idempotency = idempotency_key(&parts.headers)?;

    let budget = &ctx.limits.budget;
    let mut held = budget.reservation();
    let deadline = Instant::now() + ctx.limits.request_timeout;
    let raw = read_body(body, declared, max_body, deadline, ctx, &mut held).await?;
    let encoding = match compression {
        Compression::None => "identity",
        Compression::Gzip => "gzip",
        Compression::Deflate => "deflate",
        Compression::Zstd => "zstd",
    };
    ctx.metrics.http.body(encoding, raw.len());

    let mut expanded = Vec::new();
    let body: &[u8] = match compression {
        Compression::None => &raw,
        kind => {
            // A request never waits for memory (it answers 503 instead), so
            // it never gets the reserve: what could not fit in the whole
            // pool even with no other request in flight is too large, not
            // worth a retry.
            let cap = ctx.limits.max_decompressed_bytes;
            let pool = budget.pool_bytes().saturating_sub(held.bytes());
            let limit = cap.min(pool);
            expanded = decompress_within(kind, &raw, limit, budget, &mut held, false)
                .await
                .map_err(|e| match e {
                    DecompressError::TooLarge { .. } => Reject::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        if limit < cap {
                            format!("the body expands past {limit} bytes, more than the memory for requests in flight can hold (forward.max_inflight_bytes less one largest request)")
                        } else {
                            format!("the body expands past {limit} bytes (forward.max_decompressed_bytes)")
                        },
                    ),
                    DecompressError::WouldWait => {
                        Reject::busy("memory for requests in flight is spent; retry", 1)
                    }
                    e @ DecompressError::Corrupt { .. } => {
                        Reject::new(StatusCode::BAD_REQUEST, "bad_encoding", e.to_string())
                    }
                })?;
            // Decompression took memory a step ahead; keep what it holds.
            expanded.shrink_to_fit();
            budget.shrink_to(&mut held, raw.capacity() + expanded.capacity());
            &expanded
        }
    };

    // An Idempotency-Key names one request: a retry (the same key and the
    // same content) is stored once; another body under a used key is not
    // lost as a "retry" of it.
    let body_digest = match idempotency {
        Some(_) => crate::ids::digest(&[body]),
        None => [0; 32],
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut form_pairs = Vec::new();
    let (format, payload): (Format, &[u8]) = match media_type(content_type) {
        Media::Events(f) => (f, body),
        Media::Form => {
            form_pairs = form::pairs(body);
            from_params(&form_pairs)
                .or_else(|| from_params(&query))
                .ok_or_else(missing_params)?
        }
        Media::Other(t) => match from_params(&query) {
            Some(p) => p,
            None if t.is_empty() && looks_like_json(body) => (Format::Json, body),
            None => {
                return Err(Reject::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_type",
                    format!(
                        "Content-Type {t:?} is not taken: send application/json, application/x-ndjson, application/msgpack, or a form with json=, ndjson= or msgpack="
                    ),
                ))
            }
        },
    };

    let mut builder = BatchBuilder::new(&tag, payload.len() + payload.len() / 4);
    for (k, v) in &additions {
        builder.add_to_every_record(k, v);
    }
    {
        // Its own scope: nothing of it lives across an await.
        let room = BatchRoom {
            budget,
            base: held.bytes(),
            held: std::cell::RefCell::new(&mut held),
            granted: std::cell::Cell::new(0),
        };
        let times = Times {
            fixed,
            key: &ctx.cfg.time_key,
            keep_key: ctx.cfg.keep_time_key,
            now_ns: now_ns(),
            room: &room,
        };
        events(format, payload, &times, &mut builder).map_err(|e| match e.reason {
            "too_large" => Reject::new(StatusCode::PAYLOAD_TOO_LARGE, e.reason, e.detail),
            "busy" => Reject::busy(e.detail, 1),
            _ => Reject::new(StatusCode::BAD_REQUEST, e.reason, e.detail),
        })?;
    }
    let batch = builder.finish();
    // Parsed: from here on the request holds its batch only.
    drop(form_pairs);
    drop(expanded);
    drop(raw);
    let batch_bytes = batch.as_bytes().len();
    if batch_bytes > budget.pool_bytes() {
        return Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request's events take {batch_bytes} bytes, more than the memory for requests in flight can hold (forward.max_inflight_bytes less one largest request)"),
        ));
    }
    if batch_bytes <= held.bytes() {
        budget.shrink_to(&mut held, batch_bytes);
    } else if !budget.try_grow_to(&mut held, batch_bytes) {
        return Err(Reject::busy(
            "memory for requests in flight is spent; retry",
            1,
        ));
    }
    let count = batch.len();
    if count > 0 {
        let key = idempotency.map(|k| {
            crate::input::dedupe_key("http", &tag, &[k.as_bytes(), &body_digest].concat())
        });
        crate::input::durable::store(&ctx.wal, batch, key)
            .await
            .map_err(|e| {
                let mut r = Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "wal_unavailable",
                    format!("not stored: {e}"),
                );
                r.retry_after = Some(5);
                r
            })?;
        ctx.metrics.http.stored(count as u64);
    }
    budget.release(&mut held);
    Ok(if ctx.cfg.use_204_response {
        text(StatusCode::NO_CONTENT, String::new())
    } else {
        text(StatusCode::OK, String::new())
    })
}

/// The batch's memory, taken from the budget in steps as it is built, on
/// top of what the request holds already (its body, expanded).
struct BatchRoom<'a> {
    budget: &'a MemoryBudget,
    held: std::cell::RefCell<&'a mut Reservation>,
    /// Bytes the request held before the batch.
    base: usize,
    /// Batch bytes taken so far.
    granted: std::cell::Cell<usize>,
}

/// Body memory taken at least at a time.
const BODY_STEP: usize = 64 << 10;

/// Batch memory taken at a time.
const BATCH_STEP: usize = 1 << 20;

impl Room for BatchRoom<'_> {
    fn take(&self, bytes: usize) -> Result<(), Malformed> {
        if bytes <= self.granted.get() {
            return Ok(());
        }
        let pool = self.budget.pool_bytes();
        if self.base + bytes > pool {
            return Err(Malformed {
                reason: "too_large",
                detail: format!(
                    "the request's events, with the fields weir adds to each, take more than the memory for requests in flight can hold ({pool} bytes: forward.max_inflight_bytes less one largest request)"
                ),
            });
        }
        let want = (bytes + BATCH_STEP).min(pool - self.base);
        let mut held = self.held.borrow_mut();
        if !self.budget.try_grow_to(&mut held, self.base + want) {
            return Err(Malformed {
                reason: "busy",
                detail: "memory for requests in flight is spent; retry".to_string(),
            });
        }
        self.granted.set(want);
        Ok(())
    }
}

/// The largest body taken, and the setting that makes it so.
#[derive(Clone, Copy)]
struct BodyLimit {
    bytes: usize,
    by_memory: bool,
}

impl BodyLimit {
    fn of(max_body: usize, pool: usize) -> Self {
        Self {
            bytes: max_body.min(pool),
            by_memory: pool < max_body,
        }
    }

    fn too_large(self) -> Reject {
        let why = if self.by_memory {
            "the memory for requests in flight: forward.max_inflight_bytes less one largest request"
        } else {
            "http.max_body_bytes"
        };
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {} bytes ({why})", self.bytes),
        )
    }
}

fn missing_params() -> Reject {
    Reject::new(
        StatusCode::BAD_REQUEST,
        "malformed",
        "a form needs a json=, ndjson= or msgpack= parameter",
    )
}

/// Reads the body into memory taken from the budget as it arrives,
/// within `http.max_body_bytes` and the request timeout.
async fn read_body(
    body: &mut Incoming,
    declared: Option<usize>,
    max_body: BodyLimit,
    deadline: Instant,
    ctx: &Context,
    held: &mut crate::input::forward::budget::Reservation,
) -> Result<Vec<u8>, Reject> {
    let budget = &ctx.limits.budget;
    // Memory is taken as bytes arrive (about doubling, never past the
    // declared length), not for the declared length up front: a client
    // that declares a large body and sends nothing holds next to nothing.
    let mut out: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => {
                return Err(Reject::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the body did not arrive within {} (forward.request_timeout)",
                        humantime::format_duration(ctx.limits.request_timeout)
                    ),
                )
                .closing())
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Reject::new(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("reading the body: {e}"),
                )
                .closing())
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if out.len() + data.len() > max_body.bytes {
            return Err(max_body.too_large().closing());
        }
        let need = out.len() + data.len();
        if need > out.capacity() {
            let cap = need
                .max(out.capacity() * 2)
                .max(BODY_STEP)
                .min(declared.unwrap_or(usize::MAX).max(need))
                .min(max_body.bytes);
            if !budget.try_grow_to(held, cap) {
                return Err(
                    Reject::busy("memory for requests in flight is spent; retry", 1).closing(),
                );
            }
            out.reserve_exact(cap - out.len());
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// `POST /a/b` → tag `a.b` (Fluentd's rule), behind `http.tag_prefix`.
fn tag_of(path: &str, prefix: &str) -> Result<Vec<u8>, String> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut parts: Vec<&str> = path.split('/').collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    if parts.is_empty() {
        return Err("the path names no tag: POST events to /<tag> (slashes become dots)".into());
    }
    let tag = parts.join(".");
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} bytes"));
    }
    Ok(if prefix.is_empty() {
        tag.into_bytes()
    } else {
        format!("{prefix}.{tag}").into_bytes()
    })
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `?time=<seconds>` for every event; 0 means now (Fluentd).
fn query_time(query: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<i64>, Reject> {
    let Some(v) = form::get(query, "time") else {
        return Ok(None);
    };
    let secs: f64 = std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|f: &f64| f.is_finite() && f.abs() < 9.2e9)
        .ok_or_else(|| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                "invalid_time",
                "?time= must be seconds since the epoch",
            )
        })?;
    Ok(if secs == 0.0 {
        None
    } else {
        Some(crate::input::forward::time::float_secs_to_ns(secs))
    })
}

fn compression_of(headers: &HeaderMap) -> Result<Compression, Reject> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Compression::None);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(Compression::None),
        "gzip" | "x-gzip" => Ok(Compression::Gzip),
        "deflate" => Ok(Compression::Deflate),
        "zstd" => Ok(Compression::Zstd),
        other => Err(Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_encoding",
            format!("Content-Encoding {other:?} is not taken: gzip, deflate, zstd or none"),
        )
        .closing()),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Reject> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k)
                if !k.is_empty()
                    && k.len() <= MAX_IDEMPOTENCY_KEY
                    && k.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                Ok(Some(k.to_string()))
            }
            _ => Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )
            .closing()),
        },
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let v = v.as_bytes();
    let Some(given) = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &v[7..])
    else {
        return false;
    };
    given.len() == token.len() && bool::from(given.ct_eq(token.as_bytes()))
}

/// What each record gets from the request (`add_http_headers`,
/// `add_query_params`, `add_remote_addr`).
fn additions(
    ctx: &Context,
    headers: &HeaderMap,
    query: &[(Vec<u8>, Vec<u8>)],
    peer: SocketAddr,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if ctx.cfg.add_http_headers {
        // Credentials never go into the data (unlike Fluentd, which stores
        // every header): a bearer token would end up in the lake.
        let secret = |n: &header::HeaderName| {
            *n == header::AUTHORIZATION || *n == header::PROXY_AUTHORIZATION
        };
        for (name, value) in headers.iter().filter(|(n, _)| !secret(n)) {
            let key = format!(
                "HTTP_{}",
                name.as_str().replace('-', "_").to_ascii_uppercase()
            );
            out.push((key, String::from_utf8_lossy(value.as_bytes()).into_owned()));
        }
    }
    if ctx.cfg.add_query_params {
        for (name, value) in query {
            let name = String::from_utf8_lossy(name)
                .replace('-', "_")
                .to_ascii_uppercase();
            out.push((
                format!("QUERY_{name}"),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }
    if ctx.cfg.add_remote_addr {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let addr = match forwarded {
            Some(a) => a.to_string(),
            None => peer.ip().to_string(),
        };
        out.push(("REMOTE_ADDR".to_string(), addr));
    }
    out
}

enum Media<'a> {
    Events(Format),
    Form,
    Other(&'a str),
}

fn media_type(content_type: &str) -> Media<'_> {
    let t = content_type.split(';').next().unwrap_or("").trim();
    match t.to_ascii_lowercase().as_str() {
        "application/json" | "application/csp-report" => Media::Events(Format::Json),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Media::Events(Format::Ndjson)
        }
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            Media::Events(Format::Msgpack)
        }
        "application/x-www-form-urlencoded" => Media::Form,
        _ => Media::Other(t),
    }
}

/// `msgpack=`, `json=` or `ndjson=`, in Fluentd's order.
fn from_params(pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<(Format, &[u8])> {
    if let Some(v) = form::get(pairs, "msgpack") {
        return Some((Format::Msgpack, v));
    }
    if let Some(v) = form::get(pairs, "json") {
        return Some((Format::Json, v));
    }
    form::get(pairs, "ndjson").map(|v| (Format::Ndjson, v))
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_tags_as_fluentd_makes_them() {
        assert_eq!(tag_of("/app/web", "").unwrap(), b"app.web");
        assert_eq!(tag_of("/app/web/", "").unwrap(), b"app.web");
        assert_eq!(tag_of("/app.log", "edge").unwrap(), b"edge.app.log");
        assert!(tag_of("/", "").is_err());
        assert!(tag_of(&format!("/{}", "a".repeat(MAX_TAG_LEN + 1)), "").is_err());
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(bearer_matches(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cre"),
        );
        assert!(!bearer_matches(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!bearer_matches(&h, "s3cret"));
    }

    #[test]
    fn query_time_zero_is_now_and_garbage_is_refused() {
        let q = form::pairs(b"time=1700000000.25");
        assert_eq!(query_time(&q).unwrap(), Some(1_700_000_000_250_000_000));
        assert_eq!(query_time(&form::pairs(b"time=0")).unwrap(), None);
        assert!(query_time(&form::pairs(b"time=soon")).is_err());
    }
}
