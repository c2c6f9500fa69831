//! Destinations for finished files. Each sink type is one file (Treasure
//! Data a folder); the outbox drives them through the [`Sink`] trait and
//! owns retries. Sinks that take records rather than Parquet files also
//! implement `records::RecordSink`, through which the roller writes their
//! parts.

pub mod config;
mod gcs;
pub(crate) mod key;
mod local;
mod object;
pub(crate) mod records;
mod s3;
pub(crate) mod td;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::SinkConfig;
pub use object::{ObjectStoreSink, PART_BYTES};

/// Content-Type of uploaded files.
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// Why one delivery attempt failed; the outbox retries it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid object key {key:?}: {message}")]
    Key { key: String, message: String },
    #[error("http: {0}")]
    Http(String),
    /// The destination refused the data for good (e.g. HTTP 400); retrying
    /// cannot help, so the outbox moves it to the dead-letter folder.
    #[error("rejected with HTTP {status}: {what}")]
    Rejected { status: u16, what: String },
    /// The destination refused our credentials (HTTP 401/403): a rotated or
    /// revoked key. Retried with backoff, never dead-lettered: the data is
    /// fine, the key is not. Counted in `weir_sink_auth_failures_total`.
    #[error("credentials refused with HTTP {status}; check the sink's key (retrying)")]
    Unauthorized { status: u16 },
}

impl SinkError {
    /// Whether retrying can succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Rejected { .. } | SinkError::Key { .. })
    }
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;
pub type ListFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, SinkError>> + Send + 'a>>;

/// A place finished files go. Delivery must be idempotent: putting the same
/// key with the same bytes twice leaves one object.
pub trait Sink: Send + Sync {
    /// Uploads the file at `path` under `key`.
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a>;

    /// Every key under `prefix` (a folder: ends without `/`), for removing
    /// previews their finished file replaced. Only object sinks list.
    fn list<'a>(&'a self, prefix: &'a str) -> ListFuture<'a> {
        Box::pin(async move {
            Err(SinkError::Http(format!(
                "this sink cannot list keys (under {prefix})"
            )))
        })
    }

    /// Deletes `key`; a key that is not there is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> SinkFuture<'a> {
        Box::pin(async move { Err(SinkError::Http(format!("this sink cannot delete {key}"))) })
    }
}

/// Why a sink could not be built from its (valid) config.
#[derive(Debug, thiserror::Error)]
#[error("sinks.{sink}: {message}")]
pub struct BuildError {
    pub sink: String,
    /// What failed, starting with the config key when one is to blame
    /// (`path: cannot create …`).
    pub message: String,
}

/// Builds every configured sink.
///
/// # Errors
/// A sink cannot be constructed (for example its folder cannot be created).
pub fn build_all(
    configs: &BTreeMap<String, SinkConfig>,
) -> Result<BTreeMap<String, Arc<dyn Sink>>, BuildError> {
    let mut out: BTreeMap<String, Arc<dyn Sink>> = BTreeMap::new();
    for (name, cfg) in configs {
        let sink: Result<Arc<dyn Sink>, String> = match cfg {
            SinkConfig::Local(c) => local::build(c).map(|s| Arc::new(s) as Arc<dyn Sink>),
            SinkConfig::S3(c) => s3::build(c).map(|s| Arc::new(s) as Arc<dyn Sink>),
            SinkConfig::Gcs(c) => gcs::build(c).map(|s| Arc::new(s) as Arc<dyn Sink>),
            SinkConfig::Td(c) => td::TdSink::build(c).map(|s| Arc::new(s) as Arc<dyn Sink>),
        };
        let sink = sink.map_err(|message| BuildError {
            sink: name.clone(),
            message,
        })?;
        out.insert(name.clone(), sink);
    }
    Ok(out)
}

/// Joins a sink's prefix and a route's prefix into one key prefix.
pub fn join_prefix(sink: &str, route: &str) -> String {
    match (sink.is_empty(), route.is_empty()) {
        (true, _) => route.to_string(),
        (_, true) => sink.to_string(),
        _ => format!("{sink}/{route}"),
    }
}
