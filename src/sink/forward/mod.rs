//! Forward output (`type = "forward"`): a route's records to Fluentd,
//! Fluent Bit or another weir, as Fluentd's out_forward sends them.
//!
//! The roller writes every record routed to the sink into one open part at
//! a time through the [record sink](crate::sink::records) interface
//! ([`records`]: out tags and part ids, [`part`]: the events); a finished
//! part is durable in the outbox before the WAL lets its records go, and
//! leaves the outbox only once a server acked every message of it
//! (`require_ack_response` always), so nothing a client was acked for is
//! lost on the way. A part's id comes from its first WAL position and the
//! WAL's identity, and each tag's chunk id from the part's id: sent again
//! after any crash, a part carries the same ids, and a weir receiver stores
//! it once ([`chunk`]).
//!
//! This file sends one part: a server from [`servers`] (weighted, standby,
//! resting after failures), a kept connection or a new one (TCP, TLS,
//! handshake: [`crate::client`]), one PackedForward message per tag back
//! to back, then their acks. A failed server rests and the part goes to
//! the next one at once; when every server failed, the outbox retries it.
//!
//! # Memory
//! One part's events and its messages (each at most about
//! `max_chunk_bytes`) while it is sent, one connection per server: the
//! outbox sends one part at a time per sink.

pub(crate) mod chunk;
pub(crate) mod config;
mod part;
mod records;
mod servers;

pub(crate) use records::ForwardRecords;

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::client::{Connector, Stream};
use crate::metrics::ForwardOutMetrics;
use crate::msgpack::FrameBuffer;
use crate::sink::{Sink, SinkError, SinkFuture};
use config::ForwardSinkConfig;
use servers::Servers;

/// A server took a chunk and did not ack it within `ack_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no ack in {0:?}")]
struct NoAck(Duration);

struct Connection {
    stream: Stream,
    frames: FrameBuffer,
    last_used: Instant,
}

pub(crate) struct ForwardSink {
    name: String,
    connector: Connector,
    servers: Servers,
    /// A kept connection per server.
    connections: tokio::sync::Mutex<Vec<Option<Connection>>>,
    keepalive: bool,
    /// Messages are CompressedPackedForward (`compress = "gzip"`).
    gzip: bool,
    idle_timeout: Duration,
    ack_timeout: Duration,
    metrics: ForwardOutMetrics,
}

/// A part as it goes out: one message per tag, their chunk ids, and what
/// they hold.
struct Part {
    messages: Vec<u8>,
    chunks: Vec<String>,
    events: u64,
    bytes: u64,
}

impl ForwardSink {
    /// # Errors
    /// A TLS certificate or key cannot be read (the message names the key).
    pub(crate) fn build(
        name: &str,
        cfg: &ForwardSinkConfig,
        metrics: ForwardOutMetrics,
    ) -> Result<Self, String> {
        let connector = Connector::new(cfg.client()).map_err(|e| format!("tls: {e}"))?;
        for s in &cfg.servers {
            metrics.server(name, &s.address);
        }
        Ok(Self {
            name: name.to_string(),
            connector,
            servers: Servers::new(cfg.servers.clone()),
            connections: tokio::sync::Mutex::new(cfg.servers.iter().map(|_| None).collect()),
            keepalive: cfg.keepalive,
            gzip: cfg.compress == config::Compress::Gzip,
            idle_timeout: cfg.idle_timeout.0,
            ack_timeout: cfg.ack_timeout.0,
            metrics,
        })
    }

    /// Reads a part and builds its messages.
    async fn part(&self, key: &str, path: &Path) -> Result<Part, SinkError> {
        let bad_key = |message: &str| SinkError::Key {
            key: key.to_string(),
            message: message.to_string(),
        };
        let Some((id, _events)) = chunk::parse_key(key) else {
            return Err(bad_key("not a forward part key (hex id/events/group)"));
        };
        let raw = tokio::fs::read(path).await?;
        let tags = chunk::split(&raw).map_err(|e| bad_key(&format!("damaged part: {e}")))?;
        let mut part = Part {
            messages: Vec::with_capacity(raw.len() + 128 * tags.len()),
            chunks: Vec::with_capacity(tags.len()),
            events: 0,
            bytes: 0,
        };
        for t in &tags {
            let chunk_id = chunk::chunk_id(&id, &t.tag);
            let m = chunk::message(t, &chunk_id, self.gzip)?;
            part.bytes += m.len() as u64;
            part.events += t.events;
            part.messages.extend_from_slice(&m);
            part.chunks.push(chunk_id);
        }
        Ok(part)
    }

    async fn send(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let c = self.part(key, path).await?;
        if c.chunks.is_empty() {
            return Ok(());
        }
        let mut tried = Vec::new();
        let mut last = None;
        loop {
            let now = Instant::now();
            let i = self.servers.pick(now, rand::random::<f64>());
            if tried.contains(&i) {
                break;
            }
            tried.push(i);
            let server = self.servers.list()[i].address.clone();
            let started = Instant::now();
            match self.send_to(i, &server, &c).await {
                Ok(()) => {
                    self.servers.succeeded(i);
                    self.metrics
                        .acked(&self.name, &server, c.events, c.bytes, started.elapsed());
                    return Ok(());
                }
                Err(e) => {
                    let rested = self.servers.failed(i, Instant::now());
                    let e = format!("{e:#}");
                    self.metrics.failed(&self.name, &server, &e, rested.rest);
                    last = Some(format!("{server}: {e}"));
                }
            }
        }
        Err(SinkError::Forward(format!(
            "no server acked the part (last: {})",
            last.unwrap_or_default()
        )))
    }

    /// Sends `c` to server `i` and waits for its ack. A kept connection the
    /// server closed meanwhile is not the server's failure: the chunk is
    /// sent once more on a new connection.
    async fn send_to(&self, i: usize, server: &str, c: &Part) -> anyhow::Result<()> {
        let mut connections = self.connections.lock().await;
        let slot = &mut connections[i];
        if slot
            .as_ref()
            .is_some_and(|k| !self.keepalive || k.last_used.elapsed() >= self.idle_timeout)
        {
            *slot = None;
        }
        let reused = slot.is_some();
        let result = self.exchange(slot, server, c).await;
        // A kept connection the server closed fails at once; one that took
        // the chunk and did not ack is the server's doing (no second wait).
        let result = match result {
            Err(e) if reused && e.downcast_ref::<NoAck>().is_none() => {
                self.exchange(slot, server, c).await
            }
            r => r,
        };
        if result.is_err() || !self.keepalive {
            *slot = None;
        }
        result
    }

    async fn exchange(
        &self,
        slot: &mut Option<Connection>,
        server: &str,
        c: &Part,
    ) -> anyhow::Result<()> {
        let k = match slot {
            Some(k) => k,
            None => slot.insert(Connection {
                stream: self.connector.connect(server).await?,
                frames: FrameBuffer::new(),
                last_used: Instant::now(),
            }),
        };
        // Every message goes out back to back, then their acks are read
        // (in any order); one that is not one of ours fails the part.
        let result = tokio::time::timeout(self.ack_timeout, async {
            k.stream.write_all(&c.messages).await?;
            k.stream.flush().await?;
            let mut waiting: std::collections::HashSet<&[u8]> =
                c.chunks.iter().map(|c| c.as_bytes()).collect();
            while !waiting.is_empty() {
                let ack = crate::client::read_ack(&mut k.stream, &mut k.frames).await?;
                anyhow::ensure!(
                    waiting.remove(ack.as_slice()),
                    "acked a chunk it was not sent: {:?}",
                    String::from_utf8_lossy(&ack)
                );
            }
            Ok(())
        })
        .await;
        k.last_used = Instant::now();
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(NoAck(self.ack_timeout).into()),
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

impl Sink for ForwardSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        Box::pin(self.send(key, path))
    }

    /// Up when a server (not a standby) takes a connection and, with a
    /// shared key, the handshake.
    fn probe(&self) -> SinkFuture<'_> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for s in self.servers.list().iter().filter(|s| !s.standby) {
                match self.connector.connect(&s.address).await {
                    Ok(mut stream) => {
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                    Err(e) => errors.push(format!("{}: {e:#}", s.address)),
                }
            }
            Err(SinkError::Forward(format!(
                "no server reachable: {}",
                errors.join("; ")
            )))
        })
    }
}

impl crate::sink::kind::SinkKind for ForwardSinkConfig {
    fn capabilities(&self) -> crate::sink::config::Capabilities {
        crate::sink::config::RECORD_SINK
    }

    fn validate(&self, name: &str) -> Result<(), crate::config::invalid::Invalid> {
        ForwardSinkConfig::validate(self, name)
    }

    fn record_sink(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<dyn crate::sink::records::RecordSink>> {
        Some(std::sync::Arc::new(ForwardRecords::new(name, self)))
    }

    fn build(
        &self,
        name: &str,
        ctx: &crate::sink::iceberg::Context<'_>,
    ) -> Result<crate::sink::kind::BuiltSink, String> {
        ForwardSink::build(name, self, ctx.metrics.forward_out.clone())
            .map(crate::sink::kind::BuiltSink::plain)
    }
}
