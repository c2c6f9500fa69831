//! `type = "forward"`: a route's records to forward servers (Fluentd,
//! Fluent Bit, another weir).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::fields::{default_true, redact_opt};
use crate::config::units::{ByteSize, HumanDuration};

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
