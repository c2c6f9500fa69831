//! The inputs: where events come in. Every input decodes and checks what a
//! client sends, hands the batch to the WAL and answers the client only once
//! the batch is durable ([`durable`]); their chunk or request ids are
//! turned into one de-duplication key ([`dedupe_key`]).
//!
//! - [`forward`]: the forward protocol over TCP, TLS and a Unix socket,
//!   msgpack or JSON;
//! - [`http`]: Fluentd's `in_http` (JSON, NDJSON, msgpack, forms).

pub mod durable;
pub mod forward;
pub mod http;

pub use durable::dedupe_key;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use forward::budget::MemoryBudget;
use forward::config::ForwardConfig;

/// What every input shares, so the bounds in `[forward]` hold for the node
/// whichever way events arrive.
///
/// # Memory
/// `budget` bounds the bytes of all requests in flight (forward and HTTP)
/// at `forward.max_inflight_bytes`; `connections` bounds open connections
/// (TCP, Unix socket and HTTP) at `forward.max_connections`.
#[derive(Clone)]
pub struct Limits {
    pub budget: MemoryBudget,
    pub connections: Arc<Semaphore>,
}

impl Limits {
    /// The node's limits from `[forward]`.
    pub fn new(cfg: &ForwardConfig, metrics: &Metrics) -> Self {
        Self {
            budget: MemoryBudget::new(
                cfg.max_inflight_bytes.as_usize(),
                cfg.max_buffer_bytes.as_usize() + cfg.max_decompressed_bytes.as_usize(),
                metrics.clone(),
            ),
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
        }
    }
}
