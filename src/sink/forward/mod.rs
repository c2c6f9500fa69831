//! Forward output (`type = "forward"`): a route's records to Fluentd,
//! Fluent Bit or another weir, as Fluentd's out_forward sends them.
//!
//! The roller writes each tag's records into chunks through the [record
//! sink](crate::sink::records) interface ([`records`]: tags and chunk ids,
//! [`part`]: the entries); a finished chunk is durable in the outbox before
//! the WAL lets its records go, and leaves the outbox only once a server
//! acked it (`require_ack_response` always), so nothing a client was acked
//! for is lost on the way. A chunk's id comes from its first WAL position:
//! sent again after any crash, it carries the same id, and a weir
//! receiver stores it once ([`chunk`]).
//!
//! This file sends one chunk: a server from [`servers`] (weighted, standby,
//! resting after failures), a kept connection or a new one (TCP, TLS,
//! handshake: [`crate::client`]), the message, the ack. A failed server
//! rests and the chunk goes to the next one at once; when every server
//! failed, the outbox retries it.
//!
//! # Memory
//! One chunk's entries (at most about `max_chunk_bytes`) while it is sent,
//! one connection per server: the outbox sends one chunk at a time per
//! sink.

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
    idle_timeout: Duration,
    ack_timeout: Duration,
    metrics: ForwardOutMetrics,
}

/// A chunk as read from the outbox.
struct Chunk<'a> {
    id: String,
    tag: &'a str,
    events: u64,
    entries: Vec<u8>,
    gzip: bool,
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
            idle_timeout: cfg.idle_timeout.0,
            ack_timeout: cfg.ack_timeout.0,
            metrics,
        })
    }

    async fn send(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let Some((id, events, tag)) = chunk::parse_key(key) else {
            return Err(SinkError::Key {
                key: key.to_string(),
                message: "not a forward chunk key (hex id/events/tag)".into(),
            });
        };
        let gzip = path.extension().is_some_and(|e| e == "gz");
        let entries = tokio::fs::read(path).await?;
        let c = Chunk {
            id,
            tag,
            events,
            entries,
            gzip,
        };
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
                    let bytes = c.entries.len() as u64;
                    self.metrics
                        .acked(&self.name, &server, c.events, bytes, started.elapsed());
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
            "no server acked the chunk (last: {})",
            last.unwrap_or_default()
        )))
    }

    /// Sends `c` to server `i` and waits for its ack. A kept connection the
    /// server closed meanwhile is not the server's failure: the chunk is
    /// sent once more on a new connection.
    async fn send_to(&self, i: usize, server: &str, c: &Chunk<'_>) -> anyhow::Result<()> {
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
        let result = match result {
            Err(_) if reused => self.exchange(slot, server, c).await,
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
        c: &Chunk<'_>,
    ) -> anyhow::Result<()> {
        let k = match slot {
            Some(k) => k,
            None => slot.insert(Connection {
                stream: self.connector.connect(server).await?,
                frames: FrameBuffer::new(),
                last_used: Instant::now(),
            }),
        };
        let result = tokio::time::timeout(self.ack_timeout, async {
            k.stream
                .write_all(&chunk::head(c.tag, c.entries.len()))
                .await?;
            k.stream.write_all(&c.entries).await?;
            k.stream
                .write_all(&chunk::options(&c.id, c.events, c.gzip))
                .await?;
            k.stream.flush().await?;
            let ack = crate::client::read_ack(&mut k.stream, &mut k.frames).await?;
            anyhow::ensure!(
                ack == c.id.as_bytes(),
                "acked another chunk ({:?}, sent {:?})",
                String::from_utf8_lossy(&ack),
                c.id
            );
            Ok(())
        })
        .await;
        k.last_used = Instant::now();
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("no ack in {:?}", self.ack_timeout)),
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
