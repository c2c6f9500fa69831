//! `[http]`: the HTTP input, Fluentd `in_http`'s settings under the same
//! names where it has them. The section's presence turns the input on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::fields::redact_opt;
use crate::config::invalid::Invalid;
use crate::config::units::{ByteSize, HumanDuration};
use crate::input::tls::TlsConfig;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9880))
}

fn default_max_body() -> ByteSize {
    // Fluentd's body_size_limit.
    ByteSize(32 << 20)
}

fn default_keepalive() -> HumanDuration {
    // Fluentd's keepalive_timeout.
    HumanDuration(Duration::from_secs(10))
}

fn default_time_key() -> String {
    "time".to_string()
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// Where to listen; `POST /<tag>` (slashes in the path become dots).
    #[serde(
        default = "default_listen",
        deserialize_with = "crate::config::units::listen_addr"
    )]
    pub(crate) listen: SocketAddr,
    /// Largest request body, as sent (compressed); larger ones get 413.
    #[serde(default = "default_max_body")]
    pub(crate) max_body_bytes: ByteSize,
    /// An idle keep-alive connection is closed after this long.
    #[serde(default = "default_keepalive")]
    pub(crate) keepalive_timeout: HumanDuration,
    /// Adds every request header but `Authorization` and
    /// `Proxy-Authorization` to each record as `HTTP_<NAME>`.
    #[serde(default)]
    pub(crate) add_http_headers: bool,
    /// Adds `REMOTE_ADDR` (the first `X-Forwarded-For` address when there
    /// is one, else the peer's) to each record.
    #[serde(default)]
    pub(crate) add_remote_addr: bool,
    /// Adds every query parameter to each record as `QUERY_<NAME>`.
    #[serde(default)]
    pub(crate) add_query_params: bool,
    /// Answers 204 No Content instead of 200 OK.
    #[serde(default)]
    pub(crate) use_204_response: bool,
    /// Origins allowed to post from a browser (`*` for any, `https://*.example.com`
    /// with one wildcard); empty turns CORS off.
    #[serde(default)]
    pub(crate) cors_allow_origins: Vec<String>,
    /// Lets browsers send credentials (needs named origins, not `*`).
    #[serde(default)]
    pub(crate) cors_allow_credentials: bool,
    /// The record key the event time is taken from (removed from the
    /// record unless `keep_time_key`); `""`: never from the record.
    #[serde(default = "default_time_key")]
    pub(crate) time_key: String,
    #[serde(default)]
    pub(crate) keep_time_key: bool,
    /// Prepended to every tag with a dot (Fluentd's `add_tag_prefix`).
    #[serde(default)]
    pub(crate) tag_prefix: String,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) bearer_token: Option<String>,
    pub(crate) tls: Option<TlsConfig>,
}

impl HttpConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// The key that is wrong and why.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.max_body_bytes.0 < 1024 {
            return Err(Invalid::new(
                "http.max_body_bytes",
                format!("{}: expected at least 1KiB", self.max_body_bytes),
            ));
        }
        if self.keepalive_timeout.0.is_zero() {
            return Err(Invalid::new(
                "http.keepalive_timeout",
                "expected a duration above zero, such as \"10s\"".into(),
            ));
        }
        if self.cors_allow_credentials
            && (self.cors_allow_origins.is_empty()
                || self.cors_allow_origins.iter().any(|o| o == "*"))
        {
            return Err(Invalid::new(
                "http.cors_allow_credentials",
                "needs http.cors_allow_origins to name origins (not \"*\")".into(),
            ));
        }
        for (i, o) in self.cors_allow_origins.iter().enumerate() {
            if o.matches('*').count() > 1 {
                return Err(Invalid::new(
                    format!("http.cors_allow_origins[{i}]"),
                    format!("{o:?}: expected at most one '*'"),
                ));
            }
        }
        if self.tag_prefix.len() > 256 || self.tag_prefix.ends_with('.') {
            return Err(Invalid::new(
                "http.tag_prefix",
                "expected at most 256 bytes, not ending with a dot (weir adds it)".into(),
            ));
        }
        if let Some(t) = &self.bearer_token {
            if t.trim().is_empty() || t.chars().any(|c| c.is_ascii_control() || c == ' ') {
                return Err(Invalid::new(
                    "http.bearer_token",
                    "expected a non-empty token without spaces or control characters".into(),
                ));
            }
        }
        Ok(())
    }
}
