//! What every connection is set up with, and why one ends.

use std::time::Duration;

use super::decode::DecodeLimits;

/// Per-connection limits, shared by every connection.
#[derive(Clone)]
pub(crate) struct ConnectionSettings {
    /// Most bytes buffered while a request is incomplete.
    pub(crate) max_buffer_bytes: usize,
    pub(crate) limits: DecodeLimits,
    /// Close a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// The shared-key handshake, when configured.
    pub(crate) security: Option<crate::input::forward::config::SecurityConfig>,
    /// Most time a partly received request may take to complete.
    pub(crate) request_timeout: Duration,
    /// Close after the first request.
    pub(crate) deny_keepalive: bool,
    /// RST instead of FIN on close.
    pub(crate) linger_zero: bool,
    /// Prepended to tags (empty: none).
    pub(crate) tag_prefix: Vec<u8>,
    /// Record key for the peer address (`forward.source_address_key`).
    pub(crate) source_address_key: Option<String>,
    /// Record key for the peer's host name (`forward.source_hostname_key`).
    pub(crate) source_hostname_key: Option<String>,
    /// Warn about requests larger than this (0: never).
    pub(crate) chunk_size_warn_limit: usize,
    /// TLS, when configured.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Most time for a client's TLS handshake.
    pub(crate) tls_handshake_timeout: Duration,
    /// Tee of accepted requests (`forward.capture_dir`).
    pub(crate) capture: Option<crate::capture::Capture>,
    /// Memory shared by every connection's requests in flight.
    pub(crate) budget: super::budget::MemoryBudget,
}

/// Why a connection ended; the metric label. (Connections that end in
/// their TLS or shared-key handshake are counted as `tls` and `handshake`
/// by `ForwardMetrics::tls_failed` and `handshake_failed`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Eof,
    Truncated,
    Malformed,
    FrameTooLarge,
    BadCompression,
    IdleTimeout,
    IoError,
    WalUnavailable,
    RequestTimeout,
    NoKeepalive,
    Shutdown,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Eof => "eof",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::FrameTooLarge => "frame_too_large",
            Self::BadCompression => "bad_compression",
            Self::IdleTimeout => "idle_timeout",
            Self::IoError => "io_error",
            Self::WalUnavailable => "wal_unavailable",
            Self::RequestTimeout => "request_timeout",
            Self::NoKeepalive => "no_keepalive",
            Self::Shutdown => "shutdown",
        }
    }
}
