//! Forward output (`type = "forward"`): a route's records to Fluentd,
//! Fluent Bit or another weir, as Fluentd's out_forward sends them.
//!
//! The roller writes every record routed to the sink into one open part at
//! a time through the [record sink](crate::sink::records) interface
//! ([`records`]: out tags and part ids, [`part`]: the events); a finished
//! part is durable in the outbox before the WAL lets its records go, and
//! leaves the outbox only once a server acked every message of it
//! (`require_ack_response` always), so nothing a client was acked for is
//! lost on the way. A part's id comes from its first WAL position and a
//! random id of the roller's start, and each tag's chunk id from the part's
//! id; a finished part's key is in its manifest, so sent again after any
//! crash it carries the same ids and a weir receiver stores it once
//! ([`chunk`]), while a later start never reuses one.
//!
//! This file sends one part: to the servers in the part's own order from
//! [`servers`] (weighted rendezvous, standby last, resting ones after), on
//! a kept connection or a new one (TCP, TLS, handshake: [`crate::client`]),
//! one PackedForward message per tag written while their acks are read.
//! A server that fails gets one more connection for what it left unacked,
//! then rests, and the next server gets only the messages none acked; when
//! every server failed, the outbox retries the part.
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
use crate::config::invalid::Invalid;
use crate::metrics::ForwardOutMetrics;
use crate::msgpack::FrameBuffer;
use crate::sink::{Sink, SinkError, SinkFuture};
use config::ForwardSinkConfig;
use servers::Servers;

/// A server took a chunk and did not ack it within `ack_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no ack in {0:?}")]
struct NoAck(Duration);

/// The server could not be reached (TCP, TLS or the handshake).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectFailed(String);

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

/// A part as it goes out: one message per tag, with its chunk id and
/// events.
struct Part {
    /// The part's id, which orders the servers it goes to.
    id: [u8; 16],
    messages: Vec<Vec<u8>>,
    chunks: Vec<String>,
    events: Vec<u64>,
}

/// The messages of a part that a server acked so far (in this attempt and
/// the ones before on other servers): never sent again.
struct Acked(Vec<bool>);

impl Acked {
    fn pending(&self) -> Vec<usize> {
        (0..self.0.len()).filter(|i| !self.0[*i]).collect()
    }
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
            id,
            messages: Vec::with_capacity(tags.len()),
            chunks: Vec::with_capacity(tags.len()),
            events: Vec::with_capacity(tags.len()),
        };
        for t in &tags {
            let chunk_id = chunk::chunk_id(&id, &t.tag);
            part.messages.push(chunk::message(t, &chunk_id, self.gzip)?);
            part.chunks.push(chunk_id);
            part.events.push(t.events);
        }
        Ok(part)
    }

    /// Sends a part: to the servers in the part's own order (the same after
    /// a crash, so a resent part meets the server that may have it), each
    /// tried twice (a second connection for what the first left unacked),
    /// and to the next server only the messages no server acked yet.
    async fn send(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let part = self.part(key, path).await?;
        let mut acked = Acked(vec![false; part.chunks.len()]);
        let mut last = None;
        for i in self.servers.order(Instant::now(), &part.id) {
            if acked.pending().is_empty() {
                break;
            }
            let server = self.servers.list()[i].address.clone();
            let started = Instant::now();
            let before = acked.0.clone();
            let result = self.send_to(i, &server, &part, &mut acked).await;
            self.count_acked(&server, &part, &before, &acked);
            match result {
                Ok(()) => {
                    self.servers.succeeded(i);
                    self.metrics.acked(&self.name, &server, started.elapsed());
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
        if acked.pending().is_empty() {
            return Ok(());
        }
        Err(SinkError::Forward(format!(
            "no server acked the part (last: {})",
            last.unwrap_or_default()
        )))
    }

    /// Counts the events and bytes `server` acked in one attempt (those
    /// acked now and not `before`).
    fn count_acked(&self, server: &str, part: &Part, before: &[bool], acked: &Acked) {
        let newly = (0..part.chunks.len()).filter(|i| acked.0[*i] && !before[*i]);
        let (events, bytes) = newly.fold((0, 0), |(e, b), i| {
            (e + part.events[i], b + part.messages[i].len() as u64)
        });
        if events > 0 || bytes > 0 {
            self.metrics.events_acked(&self.name, server, events, bytes);
        }
    }

    /// Sends the pending messages of `part` to server `i`, twice at most:
    /// a kept connection the server closed, or a connection it dropped in
    /// the middle, gets one more try with a new connection for what is
    /// still unacked. No answer within `ack_timeout` is the server's doing
    /// (no second wait).
    async fn send_to(
        &self,
        i: usize,
        server: &str,
        part: &Part,
        acked: &mut Acked,
    ) -> anyhow::Result<()> {
        let mut connections = self.connections.lock().await;
        let slot = &mut connections[i];
        if slot
            .as_ref()
            .is_some_and(|k| !self.keepalive || k.last_used.elapsed() >= self.idle_timeout)
        {
            *slot = None;
        }
        let had_connection = slot.is_some();
        let result = self.exchange(slot, server, part, acked).await;
        let result = match result {
            Err(e)
                if e.downcast_ref::<NoAck>().is_none()
                    && e.downcast_ref::<ConnectFailed>().is_none()
                    && (had_connection || acked.0.iter().any(|a| *a)) =>
            {
                self.exchange(slot, server, part, acked).await
            }
            r => r,
        };
        if result.is_err() || !self.keepalive {
            *slot = None;
        }
        result
    }

    /// One connection's worth: the pending messages written while their
    /// acks are read (a server that answers as it reads never waits on a
    /// full socket), each ack within `ack_timeout` of the one before.
    async fn exchange(
        &self,
        slot: &mut Option<Connection>,
        server: &str,
        part: &Part,
        acked: &mut Acked,
    ) -> anyhow::Result<()> {
        let k = match slot {
            Some(k) => k,
            None => {
                let stream = self
                    .connector
                    .connect(server)
                    .await
                    .map_err(|e| anyhow::Error::new(ConnectFailed(format!("{e:#}"))))?;
                slot.insert(Connection {
                    stream,
                    frames: FrameBuffer::new(),
                    last_used: Instant::now(),
                })
            }
        };
        let pending = acked.pending();
        let ack_timeout = self.ack_timeout;
        let (mut rd, mut wr) = tokio::io::split(&mut k.stream);
        let frames = &mut k.frames;
        let write = async {
            for i in &pending {
                wr.write_all(&part.messages[*i]).await?;
            }
            wr.flush().await?;
            Ok::<(), anyhow::Error>(())
        };
        let read = async {
            let mut waiting = pending.len();
            while waiting > 0 {
                let ack =
                    tokio::time::timeout(ack_timeout, crate::client::read_ack(&mut rd, frames))
                        .await
                        .map_err(|_| anyhow::Error::new(NoAck(ack_timeout)))??;
                let Some(j) = part
                    .chunks
                    .iter()
                    .position(|c| c.as_bytes() == ack.as_slice())
                else {
                    anyhow::bail!(
                        "acked a chunk it was not sent: {:?}",
                        String::from_utf8_lossy(&ack)
                    );
                };
                // A repeated ack of a chunk already acked changes nothing.
                if !acked.0[j] {
                    acked.0[j] = true;
                    if pending.contains(&j) {
                        waiting -= 1;
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        };
        let result = tokio::try_join!(write, read).map(|_| ());
        k.last_used = Instant::now();
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
        // Every primary server is tried, so each one's gauge is known.
        Box::pin(async move {
            let (mut reached, mut errors) = (false, Vec::new());
            for s in self.servers.list().iter().filter(|s| !s.standby) {
                match self.connector.connect(&s.address).await {
                    Ok(mut stream) => {
                        let _ = stream.shutdown().await;
                        self.metrics.probed(&self.name, &s.address, Ok(()));
                        reached = true;
                    }
                    Err(e) => {
                        let why = format!("{e:#}");
                        self.metrics.probed(&self.name, &s.address, Err(&why));
                        errors.push(format!("{}: {why}", s.address));
                    }
                }
            }
            if reached {
                return Ok(());
            }
            Err(SinkError::Forward(format!(
                "no server reachable: {}",
                errors.join("; ")
            )))
        })
    }
}

impl ForwardSinkConfig {
    /// Checks the settings of `[sinks.NAME]`.
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self, name: &str) -> Result<(), Invalid> {
        let key = |k: &str| format!("sinks.{name}.{k}");
        if self.servers.is_empty() {
            return Err(Invalid::new(
                key("servers"),
                "must list at least one server: servers = [{ address = \"host:24224\" }]".into(),
            ));
        }
        if self.servers.iter().all(|s| s.standby) {
            return Err(Invalid::new(
                key("servers"),
                "every server is a standby; at least one must not be".into(),
            ));
        }
        for (i, s) in self.servers.iter().enumerate() {
            // host:port, [v6]:port; a bare v6 address has colons in its host.
            let ok = s.address.rsplit_once(':').is_some_and(|(h, p)| {
                let bracketed = h.starts_with('[') && h.ends_with(']');
                !h.is_empty()
                    && (bracketed || !h.contains(':'))
                    && p.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(Invalid::new(
                    key(&format!("servers[{i}].address")),
                    format!(
                        "{:?} is not host:port ([v6]:port for an IPv6 address)",
                        s.address
                    ),
                ));
            }
            if s.address.trim() != s.address || s.address.contains(char::is_whitespace) {
                return Err(Invalid::new(
                    key(&format!("servers[{i}].address")),
                    format!("{:?} has spaces", s.address),
                ));
            }
            if self.servers[..i].iter().any(|o| o.address == s.address) {
                return Err(Invalid::new(
                    key(&format!("servers[{i}].address")),
                    format!("{:?} is listed twice", s.address),
                ));
            }
            if s.weight == 0 {
                return Err(Invalid::new(
                    key(&format!("servers[{i}].weight")),
                    "must be at least 1 (use standby for a server that takes nothing while others are up)".into(),
                ));
            }
        }
        if self.password.is_some() != self.username.is_some() {
            return Err(Invalid::new(
                key(if self.username.is_some() {
                    "password"
                } else {
                    "username"
                }),
                "username and password go together".into(),
            ));
        }
        if self.tag.is_some() && !self.tag_prefix.is_empty() {
            return Err(Invalid::new(
                key("tag_prefix"),
                "give tag (one fixed tag) or tag_prefix (prepended to each tag), not both".into(),
            ));
        }
        if self.username.is_some() && self.shared_key.is_none() {
            return Err(Invalid::new(
                key("shared_key"),
                "user authentication runs inside the shared-key handshake: set shared_key".into(),
            ));
        }
        if self.self_hostname.trim().is_empty() {
            return Err(Invalid::new(
                key("self_hostname"),
                "must not be empty".into(),
            ));
        }
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err(Invalid::new(
                key("tls_key_path"),
                "tls_cert_path and tls_key_path go together".into(),
            ));
        }
        if self.tls_cert_path.is_some() && self.tls_ca_path.is_none() {
            return Err(Invalid::new(
                key("tls_ca_path"),
                "a client certificate is sent over TLS: set tls_ca_path".into(),
            ));
        }
        let chunk = self.max_chunk_bytes.0;
        if !(1024..=(64 << 20)).contains(&chunk) {
            return Err(Invalid::new(
                key("max_chunk_bytes"),
                "must be from 1KiB to 64MiB".into(),
            ));
        }
        if self.shared_key.as_deref().is_some_and(str::is_empty) {
            return Err(Invalid::new(
                key("shared_key"),
                "must not be empty (leave it out for servers without <security>)".into(),
            ));
        }
        for (k, d) in [
            ("flush_interval", self.flush_interval.0),
            ("ack_timeout", self.ack_timeout.0),
            ("connect_timeout", self.connect_timeout.0),
            ("idle_timeout", self.idle_timeout.0),
        ] {
            if d.is_zero() {
                return Err(Invalid::new(key(k), "must be more than 0s".into()));
            }
        }
        if self.tls_ca_path.is_some() {
            // Certificates are read now, so `weir check` and a reload find
            // a bad path, not the first connection.
            crate::client::Connector::new(self.client())
                .map_err(|e| Invalid::new(key("tls_ca_path"), e))?;
        }
        if let Some(tag) = &self.tag {
            if tag.is_empty() || tag.len() > crate::event::MAX_TAG_LEN {
                return Err(Invalid::new(
                    key("tag"),
                    format!("must be 1 to {} bytes", crate::event::MAX_TAG_LEN),
                ));
            }
        }
        if self.tag_prefix.len() > 256 {
            return Err(Invalid::new(
                key("tag_prefix"),
                "must be at most 256 bytes (tags longer than 1024 bytes with it are cut)".into(),
            ));
        }
        Ok(())
    }

    /// The connection settings for [`crate::client::Connector`].
    pub(crate) fn client(&self) -> crate::client::ClientSettings {
        crate::client::ClientSettings {
            shared_key: self.shared_key.clone(),
            username: self.username.clone().unwrap_or_default(),
            password: self.password.clone().unwrap_or_default(),
            hostname: self.self_hostname.clone(),
            tls: self
                .tls_ca_path
                .as_ref()
                .map(|ca| crate::client::TlsSettings {
                    ca: ca.clone(),
                    cert: self.tls_cert_path.clone(),
                    key: self.tls_key_path.clone(),
                    server_name: self.tls_server_name.clone(),
                }),
            connect_timeout: self.connect_timeout.0,
        }
    }
}

impl crate::sink::kind::SinkKind for ForwardSinkConfig {
    fn capabilities(&self) -> crate::sink::config::Capabilities {
        crate::sink::config::RECORD_SINK
    }

    fn validate(&self, name: &str) -> Result<(), Invalid> {
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
        ctx: &crate::sink::BuildContext<'_>,
    ) -> Result<crate::sink::kind::BuiltSink, String> {
        ForwardSink::build(name, self, ctx.metrics.forward_out.clone())
            .map(crate::sink::kind::BuiltSink::plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn the_start_probe_tells_each_server_up_or_down() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = open.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let cfg: ForwardSinkConfig = toml::from_str(&format!(
            "servers = [{{ address = \"{up}\" }}, {{ address = \"{closed}\" }}]"
        ))
        .unwrap();
        let metrics = Metrics::new();
        let sink = ForwardSink::build("fwd", &cfg, metrics.forward_out.clone()).unwrap();
        let state = |server: &str| {
            metrics.value(
                "weir_forward_out_server_up",
                &[("sink", "fwd"), ("server", server)],
            )
        };
        assert_eq!(
            (state(&up), state(&closed)),
            (-1.0, -1.0),
            "unknown at first"
        );
        sink.probe().await.expect("one server answers");
        assert_eq!((state(&up), state(&closed)), (1.0, 0.0));
    }
}
