//! Destinations for finished files. Each sink type is one file; the outbox
//! drives them through the [`Sink`] trait and owns retries.

pub mod key;
mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::SinkConfig;
pub use local::ObjectStoreSink;

/// Why one delivery attempt failed; the outbox retries it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("reading the outbox file: {0}")]
    Read(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid object key {key:?}: {message}")]
    Key { key: String, message: String },
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A place finished files go. Delivery must be idempotent: putting the same
/// key with the same bytes twice leaves one object.
pub trait Sink: Send + Sync {
    /// Uploads the file at `path` under `key`.
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a>;
}

/// Builds every configured sink.
///
/// # Errors
/// A sink cannot be constructed (for example its folder cannot be created).
pub fn build_all(
    configs: &BTreeMap<String, SinkConfig>,
) -> Result<BTreeMap<String, Arc<dyn Sink>>, String> {
    let mut out: BTreeMap<String, Arc<dyn Sink>> = BTreeMap::new();
    for (name, cfg) in configs {
        let sink: Arc<dyn Sink> = match cfg {
            SinkConfig::Local { path, .. } => Arc::new(
                ObjectStoreSink::local(path).map_err(|e| format!("sinks.{name}.path: {e}"))?,
            ),
        };
        out.insert(name.clone(), sink);
    }
    Ok(out)
}

/// The key prefix of a sink.
pub fn prefix_of(cfg: &SinkConfig) -> &str {
    match cfg {
        SinkConfig::Local { prefix, .. } => prefix,
    }
}
