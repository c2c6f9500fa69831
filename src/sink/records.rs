//! Sinks that take records rather than finished Parquet files (Treasure
//! Data's import API).
//!
//! The roller hands every event routed to such a sink to the sink's open
//! *part* for the event's group. The sink decides how records are grouped,
//! the part's format, when a part is full and the key a finished part is
//! uploaded under; the roller gives parts the lifecycle Parquet files have:
//! a part is finished at the latest [`RecordSink::flush_interval`] after it
//! opened, goes through the outbox like a file, and an open part is rebuilt
//! from the WAL after a crash. A new record sink implements [`RecordSink`]
//! and [`SinkConfig::record_sink`] returns it; the roller, outbox and
//! redeliver do not change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::msgpack::MsgpackError;
use crate::sink::config::SinkConfig;

/// A sink that takes records as they are rolled.
pub(crate) trait RecordSink: Send + Sync {
    /// The sink's name in the config (`[sinks.NAME]`).
    fn name(&self) -> &str;
    /// The group a tag's records go to; each group has its own open part
    /// (Treasure Data: `db.table`).
    fn group(&self, tag: &[u8]) -> Arc<str>;
    /// Longest a part stays open.
    fn flush_interval(&self) -> Duration;
    /// Record bytes (before compression) past which a new part starts.
    fn max_part_bytes(&self) -> usize;
    /// Memory one open part holds, counted in `roll.max_buffer_bytes`.
    fn part_memory(&self) -> usize;
    /// File name extension of a part (`msgpack.gz`): `[a-z0-9.]` only.
    fn extension(&self) -> &'static str;
    /// The `kind` label of its parts in `weir_roll_files_finished_total`.
    fn part_label(&self) -> &'static str;
    /// Starts a part file at `path` (truncating a leftover one).
    fn create_part(&self, path: &Path) -> Result<Box<dyn RecordPart>, PartError>;
    /// The key the finished part of `group` that starts at WAL sequence
    /// `first_seq` and holds `rows` records is uploaded under; kept in the
    /// part's manifest, so a retried upload after a crash is recognised as
    /// the same part. `run` is random at every start of the roller: the
    /// WAL's sequences can repeat (a lost or restored data_dir), a part's
    /// key once finished is in its manifest.
    fn part_key(&self, node: &str, run: &str, group: &str, first_seq: u64, rows: u64) -> String;
}

/// One part being written.
pub(crate) trait RecordPart: Send {
    /// Adds one event of `tag` (`record` is a msgpack map).
    ///
    /// # Errors
    /// `PartError::BadRecord`: the record is not a valid map; nothing is
    /// added. `PartError::Io`: the part cannot be written.
    fn append(&mut self, tag: &[u8], time_ns: i64, record: &[u8]) -> Result<(), PartError>;
    /// Record bytes written so far, before compression.
    fn raw_bytes(&self) -> usize;
    /// Completes the part and syncs it to disk.
    fn finish(self: Box<Self>) -> Result<ClosedPart, PartError>;
}

/// A finished part, closed and synced.
#[derive(Debug)]
pub(crate) struct ClosedPart {
    pub path: PathBuf,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

impl ClosedPart {
    /// Syncs a finished part's file (its writer flushed) and says what it
    /// holds.
    ///
    /// # Errors
    /// The file cannot be synced or measured.
    pub(crate) fn sync(file: std::fs::File, path: PathBuf, rows: u64) -> Result<Self, PartError> {
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        Ok(Self { path, rows, bytes })
    }
}

/// Why a part could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PartError {
    /// One record is not a valid msgpack map (the event is skipped).
    #[error("record is not a valid msgpack map: {0}")]
    BadRecord(MsgpackError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The record sinks among the configured sinks.
pub(crate) fn record_sinks(configs: &BTreeMap<String, SinkConfig>) -> Vec<Arc<dyn RecordSink>> {
    configs
        .iter()
        .filter_map(|(name, cfg)| cfg.record_sink(name))
        .collect()
}
