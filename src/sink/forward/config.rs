//! `type = "forward"`: a route's records to forward servers (Fluentd,
//! Fluent Bit, another weir).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::config::{default_true, redact_opt};
use crate::config::{ByteSize, HumanDuration};

fn default_flush() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_part() -> ByteSize {
    ByteSize(4 << 20)
}

fn default_ack_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_weight() -> u32 {
    60
}

fn default_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// How a chunk's entries travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compress {
    /// PackedForward: what every forward server reads.
    #[default]
    None,
    /// CompressedPackedForward (`compressed: "gzip"`): Fluentd ≥ 0.14.7,
    /// Fluent Bit, weir.
    Gzip,
}

/// One server of a forward sink.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForwardServer {
    /// `host:port`.
    pub(crate) address: String,
    /// Share of chunks among the servers in use (Fluentd's `weight`).
    #[serde(default = "default_weight")]
    pub(crate) weight: u32,
    /// Used only while no other server takes chunks (Fluentd's `standby`).
    #[serde(default)]
    pub(crate) standby: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSinkConfig {
    /// The servers; chunks are balanced by weight over those that are up,
    /// standby servers take them while no other server is up.
    pub(crate) servers: Vec<ForwardServer>,
    /// Shared key of the servers' `<security>` (`[forward.security]` of a
    /// weir): the handshake runs when it is set.
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) shared_key: Option<String>,
    /// For servers with `user_auth`.
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) password: Option<String>,
    /// Host name sent in the handshake; must differ from the server's own
    /// `self_hostname`. Default: this machine's host name.
    #[serde(default = "default_hostname")]
    pub(crate) self_hostname: String,
    /// Connect with TLS, trusting these CA certificates (PEM).
    pub(crate) tls_ca_path: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require mTLS.
    pub(crate) tls_cert_path: Option<PathBuf>,
    pub(crate) tls_key_path: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the server's host).
    pub(crate) tls_server_name: Option<String>,
    /// `"none"` (PackedForward) or `"gzip"` (CompressedPackedForward).
    #[serde(default)]
    pub(crate) compress: Compress,
    /// A chunk is sent at most this long after its first event arrived.
    #[serde(default = "default_flush")]
    pub(crate) flush_interval: HumanDuration,
    /// Largest chunk (entry bytes before compression). Fluent Bit's
    /// in_forward takes 6 MiB by default.
    #[serde(default = "default_part")]
    pub(crate) max_chunk_bytes: ByteSize,
    /// A chunk not acked within this is sent again (to a server that is up).
    #[serde(default = "default_ack_timeout")]
    pub(crate) ack_timeout: HumanDuration,
    /// Longest wait for TCP, TLS and the handshake.
    #[serde(default = "default_connect_timeout")]
    pub(crate) connect_timeout: HumanDuration,
    /// Keep connections open between chunks.
    #[serde(default = "default_true")]
    pub(crate) keepalive: bool,
    /// A kept connection unused this long is closed (servers close idle
    /// connections too).
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout: HumanDuration,
    /// Prepended to every tag on the way out (`"dc1."`).
    #[serde(default)]
    pub(crate) tag_prefix: String,
    /// Every event goes out under this tag instead of its own.
    pub(crate) tag: Option<String>,
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
