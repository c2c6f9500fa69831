//! The HTTP input, compatible with Fluentd's `in_http`: `POST /<tag>` with
//! JSON, NDJSON, msgpack or a form, gzip/deflate/zstd bodies, answered 2xx
//! only once the events are durable.
//!
//! - `config`: `[http]`;
//! - `server`: the socket, accept loop and each connection's HTTP/1.1 loop;
//! - `request`: one request, from its checks to its answer;
//! - `parse`: a body → events (no I/O); `form`: query strings and forms;
//! - `cors`: the CORS rules.
//!
//! The bounds are forward's (`input::Limits`): connections, the memory
//! budget, the request timeout and the decompression cap; what HTTP cannot
//! wait for (a spent budget, a full WAL) is answered 503 with `Retry-After`.

pub(crate) mod config;
mod cors;
mod form;
pub(crate) mod parse;
mod request;
pub(crate) mod server;

use crate::input::Limits;
use crate::metrics::Metrics;
use crate::wal::WalHandle;

/// What every request of the input works with.
struct Context {
    cfg: config::HttpConfig,
    cors: cors::Cors,
    wal: WalHandle,
    limits: Limits,
    metrics: Metrics,
}
