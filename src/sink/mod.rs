//! Destinations for finished files. Each sink type is one file (Treasure
//! Data and Iceberg a folder); the outbox drives them through the [`Sink`]
//! trait and owns retries. Sinks that take records rather than Parquet files
//! also implement `records::RecordSink`, through which the roller writes
//! their parts. Sinks whose files become visible only when committed (an
//! Iceberg table) say so with [`Sink::commits`]; the outbox then marks a
//! file delivered only after [`Sink::commit`] took it.

pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod forward;
mod gcs;
pub(crate) mod iceberg;
pub(crate) mod key;
pub(crate) mod kind;
mod local;
mod object;
pub(crate) mod probe;
pub(crate) mod records;
mod s3;
pub(crate) mod stores;
pub(crate) mod td;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use config::SinkConfig;
pub(crate) use error::one_line;
pub use error::SinkError;
pub(crate) use key::{join_prefix, FileName, FileParts, PreviewOf, FRESH_DIR};
pub use kind::BuildContext;
pub(crate) use kind::TableSink;
pub use object::PART_BYTES;
pub(crate) use probe::probe;
pub(crate) use records::{record_sinks, ClosedPart, PartError, RecordPart, RecordSink};
pub use stores::{GcsSinkConfig, LocalSinkConfig, S3Encryption, S3SinkConfig};

/// Content-Type of uploaded files.
pub(crate) const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

pub(crate) type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;
pub(crate) type CommitFuture<'a> = Pin<Box<dyn Future<Output = Committed> + Send + 'a>>;

/// A file a committing sink has (put) but does not show yet.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The key it was put under.
    pub(crate) key: String,
    /// The local copy (outbox or retained), for what the commit records.
    pub path: std::path::PathBuf,
    pub(crate) manifest: Arc<crate::outbox::Manifest>,
}

/// When a committing sink's staged files are committed: every `interval`
/// after the first one waits, or as soon as `max_files` wait.
#[derive(Debug, Clone, Copy)]
pub struct CommitPolicy {
    pub(crate) interval: std::time::Duration,
    pub(crate) max_files: usize,
}

/// What one commit did: the keys now visible (committed now, or found
/// committed already), and why the others are not.
#[derive(Debug)]
pub struct Committed {
    pub(crate) done: Vec<String>,
    pub(crate) failed: Option<SinkError>,
}
pub(crate) type ListFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, SinkError>> + Send + 'a>>;

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

    /// Checks the sink can take files now (a bucket there and writable with
    /// these credentials, an API key valid, a catalog reachable), without
    /// leaving anything behind: at start, for `weir_sink_up`, and for
    /// `weir check --probe`.
    fn probe(&self) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// `Some` for a sink whose files become visible only when committed:
    /// the outbox stages what it put and calls [`Sink::commit`] this often.
    fn commits(&self) -> Option<CommitPolicy> {
        None
    }

    /// Makes `files` (all put) visible together. Idempotent: a file already
    /// committed (an earlier commit landed, then weir crashed) is not added
    /// again. `redelivered`: the files are old ones sent again, so the sink
    /// looks for them everywhere, not only among recent commits.
    fn commit<'a>(&'a self, files: &'a [Staged], redelivered: bool) -> CommitFuture<'a> {
        let _ = redelivered;
        Box::pin(async move {
            Committed {
                done: files.iter().map(|f| f.key.clone()).collect(),
                failed: None,
            }
        })
    }
}

/// Why a sink could not be built from its (valid) config.
#[derive(Debug, thiserror::Error)]
#[error("sinks.{sink}: {message}")]
pub struct BuildError {
    pub sink: String,
    /// What failed, starting with the config key when one is to blame
    /// (`warehouse: …`, `tls_ca_path: …`).
    pub(crate) message: String,
}

/// The sinks of a config, and what they need to start.
pub struct Built {
    pub sinks: BTreeMap<String, Arc<dyn Sink>>,
    /// The Iceberg sinks, to prepare their tables at start.
    pub(crate) tables: BTreeMap<String, Arc<dyn kind::TableSink>>,
}

/// Builds every configured sink.
///
/// # Errors
/// A sink cannot be constructed (for example its folder cannot be created).
pub fn build_all(
    configs: &BTreeMap<String, SinkConfig>,
    ctx: &BuildContext<'_>,
) -> Result<Built, BuildError> {
    let mut out: BTreeMap<String, Arc<dyn Sink>> = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for (name, cfg) in configs {
        let sink = cfg.kind().build(name, ctx);
        let built = sink.map_err(|message| BuildError {
            sink: name.clone(),
            message,
        })?;
        if let Some(table) = built.table {
            tables.insert(name.clone(), table);
        }
        out.insert(name.clone(), built.sink);
    }
    Ok(Built { sinks: out, tables })
}
