//! `[forward]` and `[forward.security]`: the listener, its limits and the
//! shared-key handshake (`[forward.tls]` is in `tls.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::fields::{default_true, redact, redact_opt};
use crate::config::invalid::Invalid;
use crate::config::units::{ByteSize, HumanDuration};
use crate::input::tls::TlsConfig;

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A user for the handshake's user authentication.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub(crate) username: String,
    #[serde(serialize_with = "redact")]
    pub(crate) password: String,
}

/// A rule for clients from one address or network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRule {
    /// One address, e.g. "10.1.2.3".
    pub(crate) host: Option<std::net::IpAddr>,
    /// A CIDR network, e.g. "10.0.0.0/8" (parsed once, with the file).
    pub(crate) network: Option<ipnet::IpNet>,
    /// This client's shared key instead of the global one.
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) shared_key: Option<String>,
    /// Users allowed from here (default: all).
    pub(crate) users: Option<Vec<String>>,
}

/// `[forward.security]`: the shared-key handshake (HELO/PING/PONG).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Sent in PONG; must differ from every client's own host name.
    pub(crate) self_hostname: String,
    #[serde(serialize_with = "redact")]
    pub(crate) shared_key: String,
    /// Also check a username/password digest.
    #[serde(default)]
    pub(crate) user_auth: bool,
    /// Accept clients that match no `clients` rule.
    #[serde(default = "default_true")]
    pub(crate) allow_anonymous_source: bool,
    #[serde(default)]
    pub(crate) users: Vec<UserConfig>,
    #[serde(default)]
    pub(crate) clients: Vec<ClientRule>,
    /// A client must complete the handshake within this time.
    #[serde(default = "default_handshake_timeout")]
    pub(crate) handshake_timeout: HumanDuration,
}

fn default_unix_mode() -> String {
    "0660".to_string()
}

/// `forward.unix_mode` as permission bits.
pub(crate) fn unix_mode_bits(mode: &str) -> Option<u32> {
    u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 24224))
}

fn default_max_buffer() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_max_decompressed() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_max_inflight() -> ByteSize {
    ByteSize(512 << 20)
}

fn default_max_connections() -> usize {
    10_000
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// `[forward]`: the forward-protocol listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// TCP address to listen on.
    #[serde(
        default = "default_listen",
        deserialize_with = "crate::config::units::listen_addr"
    )]
    pub(crate) listen: SocketAddr,
    /// Also serve forward on this Unix socket (agents on the same host:
    /// Fluent Bit's `unix_path`, Fluentd's `in_unix`), with the same
    /// protocol, security and limits as TCP. A socket left by a stopped weir
    /// is replaced; a live one, or any other file, is an error.
    #[serde(default)]
    pub(crate) unix_path: Option<std::path::PathBuf>,
    /// The socket file's permissions, octal (who may connect).
    #[serde(default = "default_unix_mode")]
    pub(crate) unix_mode: String,
    /// Per-connection cap on buffered, not yet decoded bytes (one request
    /// can be at most this large). Enforced as bytes arrive.
    #[serde(default = "default_max_buffer")]
    pub(crate) max_buffer_bytes: ByteSize,
    /// Cap on a compressed request's entries once expanded (gzip/zstd bombs).
    #[serde(default = "default_max_decompressed")]
    pub(crate) max_decompressed_bytes: ByteSize,
    /// Memory all connections' requests in flight share: read buffers
    /// (beyond 16 KiB each), decompressed entries and decoded batches
    /// waiting for the WAL. When it is spent connections wait, unread.
    #[serde(default = "default_max_inflight")]
    pub(crate) max_inflight_bytes: ByteSize,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout: HumanDuration,
    /// Connections served at once; more are accepted and closed at once
    /// (counted in `weir_forward_connections_refused_total`).
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// Shared-key handshake; without it clients connect without one.
    pub(crate) security: Option<SecurityConfig>,
    /// TLS; without it the port speaks plain TCP.
    pub(crate) tls: Option<TlsConfig>,
    /// A request that has begun arriving must be complete within this time
    /// (a client trickling bytes forever is closed: slowloris).
    #[serde(default = "default_request_timeout")]
    pub(crate) request_timeout: HumanDuration,
    /// Close each connection after its first request (Fluentd's
    /// `deny_keepalive`); HELO then advertises `keepalive: false`.
    #[serde(default)]
    pub(crate) deny_keepalive: bool,
    /// Close connections with RST instead of FIN (SO_LINGER 0), so clients
    /// that reconnect often leave no TIME_WAIT sockets behind.
    #[serde(default)]
    pub(crate) linger_zero: bool,
    /// Prepended to every tag as `"{tag_prefix}.{tag}"`.
    #[serde(default)]
    pub(crate) tag_prefix: String,
    /// How many recent chunk ids to remember, so a client that resends a
    /// chunk whose ack it missed gets an ack without a second copy being
    /// written (kept in the WAL, so this survives a restart). 0 turns it off.
    #[serde(default = "default_dedupe_window")]
    pub dedupe_window: usize,
    /// Adds the client's IP address to every record under this key.
    pub(crate) source_address_key: Option<String>,
    /// Adds the client's host name (reverse DNS, once per connection) to
    /// every record under this key.
    pub(crate) source_hostname_key: Option<String>,
    /// Logs (rate-limited) and counts requests larger than this.
    pub(crate) chunk_size_warn_limit: Option<ByteSize>,
    /// Copies every request weir decodes into capture files here (replay them
    /// with `weir replay`). Off without it. Capture never slows ingestion:
    /// when the disk cannot keep up, records are dropped and counted in
    /// `weir_capture_dropped_total`.
    pub(crate) capture_dir: Option<PathBuf>,
    /// Start a new capture file once the current one reaches this size.
    #[serde(default = "default_capture_file_bytes")]
    pub(crate) capture_max_file_bytes: ByteSize,
    /// Keep only this many capture files; the oldest are deleted.
    #[serde(default = "default_capture_files")]
    pub(crate) capture_max_files: usize,
}

fn default_capture_file_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_capture_files() -> usize {
    8
}

fn default_dedupe_window() -> usize {
    100_000
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            unix_path: None,
            unix_mode: default_unix_mode(),
            max_buffer_bytes: default_max_buffer(),
            max_decompressed_bytes: default_max_decompressed(),
            max_inflight_bytes: default_max_inflight(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            security: None,
            tls: None,
            request_timeout: default_request_timeout(),
            deny_keepalive: false,
            linger_zero: false,
            tag_prefix: String::new(),
            dedupe_window: default_dedupe_window(),
            source_address_key: None,
            source_hostname_key: None,
            chunk_size_warn_limit: None,
            capture_dir: None,
            capture_max_file_bytes: default_capture_file_bytes(),
            capture_max_files: default_capture_files(),
        }
    }
}

impl ForwardConfig {
    /// Checks `[forward]` and its security (TLS is loaded by the caller).
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid::new(key, message);
        if unix_mode_bits(&self.unix_mode).is_none() {
            return Err(invalid(
                "forward.unix_mode",
                format!(
                    "{:?}: expected octal permissions such as \"0660\"",
                    self.unix_mode
                ),
            ));
        }
        if let Some(p) = &self.unix_path {
            // sun_path holds 108 bytes, its NUL included.
            if p.as_os_str().len() > 107 || p.as_os_str().is_empty() {
                return Err(invalid(
                    "forward.unix_path",
                    "must be 1 to 107 bytes long (the kernel's limit for a socket path)".into(),
                ));
            }
        }
        if let Some(sec) = &self.security {
            if sec.self_hostname.trim().is_empty() {
                return Err(invalid(
                    "forward.security.self_hostname",
                    "must not be empty".into(),
                ));
            }
            if sec.user_auth && sec.users.is_empty() {
                return Err(invalid(
                    "forward.security.users",
                    "user_auth = true needs at least one user".into(),
                ));
            }
            for (i, c) in sec.clients.iter().enumerate() {
                let key = format!("forward.security.clients[{i}]");
                if c.host.is_some() == c.network.is_some() {
                    return Err(invalid(&key, "give exactly one of host or network".into()));
                }
                for u in c.users.iter().flatten() {
                    if !sec.users.iter().any(|x| &x.username == u) {
                        return Err(invalid(
                            &format!("{key}.users"),
                            format!("unknown user {u:?}"),
                        ));
                    }
                }
            }
        }
        if self.tag_prefix.len() > 256 || self.tag_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "forward.tag_prefix",
                "must be at most 256 characters without spaces".into(),
            ));
        }
        if self.source_address_key.as_deref() == Some("") {
            return Err(invalid(
                "forward.source_address_key",
                "must not be empty".into(),
            ));
        }
        if self.capture_max_files == 0 {
            return Err(invalid(
                "forward.capture_max_files",
                "must be at least 1".into(),
            ));
        }
        if self.capture_max_file_bytes.0 < 4096 {
            return Err(invalid(
                "forward.capture_max_file_bytes",
                "must be at least 4KiB".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid(
                "forward.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.max_buffer_bytes.0 < 1024 {
            return Err(invalid(
                "forward.max_buffer_bytes",
                "must be at least 1KiB".into(),
            ));
        }
        // The budget keeps one largest request's worth in reserve (so partly
        // read requests cannot deadlock), so one must fit in it.
        let (buffer, expanded, inflight) = (
            self.max_buffer_bytes,
            self.max_decompressed_bytes,
            self.max_inflight_bytes,
        );
        if expanded.0 < buffer.0 {
            return Err(invalid(
            "forward.max_decompressed_bytes",
            format!("{expanded} is less than forward.max_buffer_bytes ({buffer}); it also caps a request's decoded events, which are about as large as the request"),
        ));
        }
        if buffer.0 + expanded.0 > inflight.0 {
            return Err(invalid(
            "forward.max_inflight_bytes",
            format!("{inflight} is less than forward.max_buffer_bytes ({buffer}) + forward.max_decompressed_bytes ({expanded}): one largest request must fit the budget all connections share"),
        ));
        }
        if self.max_decompressed_bytes.0 > 512 << 20 {
            return Err(invalid(
                "forward.max_decompressed_bytes",
                "must be at most 512MiB (a request must fit one WAL record)".into(),
            ));
        }
        Ok(())
    }
}
