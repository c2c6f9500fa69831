//! Why a delivery attempt failed, and how that reads on one log line.

/// Why one delivery attempt failed; the outbox retries it. Every message is
/// one line (a store's XML or JSON body may hold newlines), so line-based
/// log shippers keep it whole.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{}", one_line(.0))]
    Io(#[from] std::io::Error),
    #[error("object store: {}", one_line(.0))]
    Store(#[from] object_store::Error),
    /// The sink's bucket is not there (it may be created later: retried).
    #[error("bucket {bucket} does not exist (create it, or fix the sink's `bucket`)")]
    NoBucket { bucket: String },
    #[error("invalid object key {key:?}: {message}")]
    Key { key: String, message: String },
    #[error("http: {0}")]
    Http(String),
    /// No forward server took a chunk (refused, closed, no ack in time).
    #[error("forward: {0}")]
    Forward(String),
    /// An Iceberg catalog failed (unreachable, locked, a conflict); retried.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The destination refused the data for good (e.g. HTTP 400); retrying
    /// cannot help, so the outbox moves it to the dead-letter folder.
    #[error("rejected with HTTP {status}: {what}")]
    Rejected { status: u16, what: String },
    /// The destination refused our credentials (HTTP 401/403): a rotated or
    /// revoked key. Retried with backoff, never dead-lettered: the data is
    /// fine, the key is not. Counted in `weir_sink_auth_failures_total`.
    #[error("credentials refused with HTTP {status}; check the sink's key (retrying): {}", one_line(.detail))]
    Unauthorized { status: u16, detail: String },
    /// A catalog refused our credentials (its own words); retried, counted
    /// in `weir_sink_auth_failures_total` like [`SinkError::Unauthorized`].
    #[error("credentials refused: {0}; check the sink's catalog_uri (retrying)")]
    CatalogCredentials(String),
    /// A table will not take the files as it is (altered or dropped by
    /// someone else); retried, never dead-lettered.
    #[error("table: {0}")]
    Table(String),
    /// The route's config asks for a change its table refuses (a column's
    /// type changed, a declared column removed): fix the config. Retried.
    #[error("{0}")]
    Refused(String),
}

impl SinkError {
    /// Whether retrying can succeed.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Rejected { .. } | SinkError::Key { .. })
    }

    /// Whether the destination refused our credentials (counted apart).
    pub(crate) fn is_auth(&self) -> bool {
        matches!(
            self,
            SinkError::Unauthorized { .. } | SinkError::CatalogCredentials(_)
        )
    }
}

/// `e` on one line, cut at 500 bytes: response bodies can be long.
pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    let mut s: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 500 {
        let mut cut = 500;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
