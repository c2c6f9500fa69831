//! The inputs: where events come in. Every input decodes and checks what a
//! client sends, hands the batch to the WAL and answers the client only once
//! the batch is durable ([`durable`]); their chunk or request ids are
//! turned into one de-duplication key ([`dedupe_key`]).
//!
//! - [`forward`]: the forward protocol over TCP, TLS and a Unix socket,
//!   msgpack or JSON;
//! - [`http`]: Fluentd's `in_http` (JSON, NDJSON, msgpack, forms).

pub(crate) mod accept;
pub(crate) mod durable;
pub mod forward;
pub(crate) mod http;
pub(crate) mod tls;

pub(crate) use durable::dedupe_key;

use crate::status::Listeners;
use crate::wal::WalHandle;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::backpressure::Backpressure;
use crate::metrics::Metrics;
use crate::wal::WalState;
#[cfg(test)]
pub(crate) use durable::chunk_source;
pub(crate) use durable::WEIR_CHUNK_PREFIX;
use forward::budget::MemoryBudget;
pub use forward::config::{ClientRule, ForwardConfig, SecurityConfig, UserConfig};
pub(crate) use forward::decode::read_options;
#[cfg(test)]
pub(crate) use forward::decode::{decode_request, DecodeLimits, Request};
pub(crate) use forward::decompress::{compress, decompress, detect, Compression};
pub(crate) use forward::time::read_time;
pub(crate) use http::config::HttpConfig;

/// What every input shares, so the bounds in `[forward]` hold for the node
/// whichever way events arrive.
///
/// # Memory
/// `budget` bounds the bytes of all requests in flight (forward and HTTP)
/// at `forward.max_inflight_bytes`; `connections` bounds open connections
/// (TCP, Unix socket and HTTP) at `forward.max_connections`.
#[derive(Clone)]
pub(crate) struct Limits {
    pub(crate) budget: MemoryBudget,
    pub(crate) connections: Arc<Semaphore>,
    /// `forward.max_connections`, for messages.
    pub(crate) max_connections: usize,
    /// A request must arrive whole within this (`forward.request_timeout`).
    pub(crate) request_timeout: Duration,
    /// Largest decompressed request (`forward.max_decompressed_bytes`).
    pub(crate) max_decompressed_bytes: usize,
    /// Whether the WAL is waiting for the roller (its backlog is spent).
    backpressure: Arc<Backpressure>,
    /// Whether the WAL takes writes.
    wal: watch::Receiver<WalState>,
}

impl Limits {
    /// The node's limits from `[forward]`, and the WAL's state.
    pub(crate) fn new(
        cfg: &ForwardConfig,
        metrics: &Metrics,
        backpressure: Arc<Backpressure>,
        wal: watch::Receiver<WalState>,
    ) -> Self {
        Self {
            budget: MemoryBudget::new(
                cfg.max_inflight_bytes.as_usize(),
                cfg.max_buffer_bytes.as_usize() + cfg.max_decompressed_bytes.as_usize(),
                metrics.clone(),
            ),
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            max_connections: cfg.max_connections,
            request_timeout: cfg.request_timeout.0,
            max_decompressed_bytes: cfg.max_decompressed_bytes.as_usize(),
            backpressure,
            wal,
        }
    }

    /// Why new requests should be turned away now (an input that cannot
    /// make its client wait, such as HTTP, answers 503): the WAL is waiting
    /// for the roller, or cannot write.
    pub(crate) fn overloaded(&self) -> Option<String> {
        match &*self.wal.borrow() {
            WalState::Healthy => {}
            WalState::Stalled(why) => return Some(format!("not taking events now: {why}")),
            WalState::Failed(why) => return Some(format!("not taking events: {why}")),
        }
        self.backpressure.duration().map(|_| {
            "not taking events now: the write-ahead log is full until files are finished"
                .to_string()
        })
    }
}

/// The inputs' settings, each from its own section.
pub(crate) struct Settings<'a> {
    pub(crate) forward: &'a ForwardConfig,
    /// `[forward.tls]`, loaded at validation.
    pub(crate) forward_tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) http: Option<&'a HttpConfig>,
}

/// Every input's sockets, bound before data_dir is touched so a port in use
/// fails the start with data_dir as it was.
pub(crate) struct Sockets {
    forward: forward::server::Sockets,
    http: Option<http::server::Socket>,
}

impl Sockets {
    /// Binds every configured input's sockets.
    ///
    /// # Errors
    /// A port or socket path in use, or TLS files that cannot be used.
    pub(crate) async fn bind(settings: &Settings<'_>) -> anyhow::Result<Self> {
        let forward = forward::server::Sockets::bind(settings.forward).await?;
        let http = match settings.http {
            Some(h) => Some(http::server::Socket::bind(h).await?),
            None => None,
        };
        Ok(Self { forward, http })
    }

    /// The listeners `/readyz` waits for.
    pub(crate) fn expect(&self, listeners: &Listeners) {
        for name in self.names() {
            listeners.expect(name);
        }
    }

    fn names(&self) -> Vec<&'static str> {
        let mut n = vec!["forward"];
        if self.forward.has_unix() {
            n.push("forward unix");
        }
        if self.http.is_some() {
            n.push("http");
        }
        n
    }
}

/// The running inputs.
pub(crate) struct Running {
    forward: forward::server::Running,
    http: Option<http::server::Running>,
}

/// Starts every input on its bound sockets.
///
/// # Errors
/// An input cannot start (`forward.capture_dir` not writable).
pub(crate) fn start(
    settings: &Settings<'_>,
    sockets: Sockets,
    wal: WalHandle,
    limits: &Limits,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
    listeners: &Listeners,
) -> anyhow::Result<Running> {
    let names = sockets.names();
    let forward = forward::server::start(
        settings.forward,
        settings.forward_tls.clone(),
        sockets.forward,
        wal.clone(),
        limits,
        metrics,
        shutdown,
    )?;
    let http = match (settings.http, sockets.http) {
        (Some(cfg), Some(socket)) => Some(http::server::start(
            cfg, socket, wal, limits, metrics, shutdown,
        )),
        _ => None,
    };
    for name in names {
        listeners.accepting(name);
    }
    Ok(Running { forward, http })
}

impl Running {
    /// Waits until every input has stopped accepting (the shutdown signal)
    /// and answered its requests in flight.
    pub(crate) async fn stopped(self) {
        let http = async {
            if let Some(h) = self.http {
                h.stopped().await;
            }
        };
        tokio::join!(self.forward.stopped(), http);
    }
}
