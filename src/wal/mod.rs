//! The write-ahead log: every accepted request is appended here, and its ack
//! goes out only after the append is durable (invariant 1). The log is also
//! the buffer between ingestion and the roller: the roller reads it behind
//! the writer ([`tail`]), so a burst waits on disk, not in memory, and acks
//! run at disk speed.
//!
//! Layers, bottom up: `record` frames one request with a CRC, `segment`
//! holds numbered files of records, `writer` is the single thread that owns
//! the active segment and does group commit: it takes every request queued
//! while the previous sync ran, writes them in one `write`, syncs once,
//! publishes the new durable mark, then answers them all. `reader` and
//! [`tail`] read records back; `dedupe` remembers chunk ids.
//!
//! # Recovery
//! On start the writer reads every segment oldest first, to continue the
//! sequence and rebuild the dedupe window. A damaged tail of the newest
//! segment (a torn write from a crash) is truncated; damage in an older
//! segment ends that segment, is logged and counted. Writing then continues
//! in a fresh segment named by the next sequence number, so sequence numbers
//! are never reused, even after every segment was released. (The one
//! exception is a torn record's number: it was never synced or acked, and the
//! roller never read it, since it is above the durable mark. With
//! `durability = "none"` and a power loss this does not hold, which is why
//! "none" is for benchmarks.) The roller then reads from the oldest segment,
//! skipping what finished files already hold: recovery and normal running are
//! one path.
//!
//! # Disk space
//! Appends never take the last free bytes of the file system: below
//! `wal.disk_reserve` they wait, like backpressure, while the writer keeps the
//! roller's clock moving, so periods end, files finish and leave through the
//! outbox, and released segments give the space back ([`disk`]). A write
//! that fails anyway (something else filled the disk) is retried with
//! backoff; its records are stamped again at each attempt, so the clock
//! moves meanwhile too.
//!
//! # Retention and backlog
//! The roller publishes the lowest sequence number it still needs (events in
//! files not yet in the outbox). A segment is deleted once every record in it
//! is below that mark and the dedupe window is saved; the active segment is
//! never deleted. Records the roller has not read yet are its backlog: past
//! `wal.max_backlog_bytes` the writer takes no appends until it catches up.
//!
//! # Memory
//! The request queue holds at most `QUEUE_DEPTH` requests; each group
//! writes at most `wal.max_group_bytes` (plus one request). Recovery reads
//! one record at a time.

pub(crate) mod config;
pub(crate) mod dedupe;
mod disk;
mod group;
pub(crate) mod reader;
pub(crate) mod record;
pub(crate) mod segment;
pub mod tail;
mod writer;
pub use config::{Durability, WalConfig};
pub(crate) use dedupe::{Key, KEY_LEN};
pub(crate) use reader::for_each_in;
#[cfg(test)]
pub(crate) use record::encode;
pub(crate) use record::MAX_BATCH_BYTES;
pub(crate) use segment::sync_dir;
#[cfg(test)]
pub(crate) use segment::{segment_path, MAGIC};
pub(crate) use tail::{Durable, Tail};

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot, watch};

use crate::event::EventBatch;
use crate::metrics::Metrics;
pub(crate) use record::WalRecord;
pub use writer::start;

/// Requests queued for the writer before senders wait (backpressure).
pub(crate) const QUEUE_DEPTH: usize = 256;

/// The WAL's condition, as `/healthz` and `/readyz` report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WalState {
    #[default]
    Healthy,
    /// Writes fail (a full disk): appends wait and are retried with
    /// backoff; nothing is acked meanwhile. Clears by itself.
    Stalled(String),
    /// A sync failed: what reached the disk is uncertain, so the WAL takes
    /// no more writes; a restart (which re-reads the segments) is needed.
    Failed(String),
}

/// Answers when a submitted batch is durable (its WAL sequence) or not.
pub(crate) type DurableReply = oneshot::Receiver<Result<u64, WalError>>;

/// Why an append was not made durable; the request must not be acked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log failed earlier and accepts no more writes: {0}")]
    Failed(String),
    #[error("write-ahead log is shut down")]
    Closed,
}

/// Settings the writer needs.
#[derive(Debug, Clone)]
pub struct WalSettings {
    pub dir: PathBuf,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub max_group_bytes: usize,
    /// Chunk keys remembered for de-duplication (0 turns it off).
    pub dedupe_window: usize,
    /// Bytes the roller may be behind before appends wait.
    pub max_backlog_bytes: u64,
    /// Free bytes appends leave on the WAL's file system (`wal.disk_reserve`).
    pub disk_reserve: u64,
}

pub(crate) enum WalRequest {
    Append {
        batch: EventBatch,
        /// The client's chunk identity, for retransmit de-duplication.
        dedupe_key: Option<dedupe::Key>,
        reply: oneshot::Sender<Result<u64, WalError>>,
    },
    Tick,
}

/// Cheap handle for appending; the writer stops when every handle is dropped.
#[derive(Clone)]
pub struct WalHandle {
    tx: mpsc::Sender<WalRequest>,
}

impl WalHandle {
    /// Appends a batch; resolves once it is durable, with its sequence number.
    pub async fn append(&self, batch: EventBatch) -> Result<u64, WalError> {
        self.append_keyed(batch, None).await
    }

    /// Appends a batch that a client named with a chunk id. If a batch with
    /// the same key is already in the log (a resend of a chunk whose ack was
    /// lost), nothing is written and the original's sequence is returned.
    pub(crate) async fn append_keyed(
        &self,
        batch: EventBatch,
        dedupe_key: Option<dedupe::Key>,
    ) -> Result<u64, WalError> {
        self.submit_keyed(batch, dedupe_key)
            .await?
            .await
            .map_err(|_| WalError::Closed)?
    }

    /// Hands a batch to the writer and returns at once; the receiver
    /// answers when the batch is durable (a connection keeps decoding its
    /// next request meanwhile).
    pub(crate) async fn submit_keyed(
        &self,
        batch: EventBatch,
        dedupe_key: Option<dedupe::Key>,
    ) -> Result<DurableReply, WalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WalRequest::Append {
                batch,
                dedupe_key,
                reply,
            })
            .await
            .map_err(|_| WalError::Closed)?;
        Ok(rx)
    }

    /// Asks the writer to pass a clock tick downstream.
    pub(crate) async fn tick(&self) -> Result<(), WalError> {
        self.tx
            .send(WalRequest::Tick)
            .await
            .map_err(|_| WalError::Closed)
    }
}

/// Channels the WAL reads and writes besides appends.
pub struct WalLinks {
    /// Published after every commit and tick: how far the log is durable,
    /// for the roller, which reads it behind the writer.
    pub durable: std::sync::Arc<tail::Durable>,
    /// The sequence the roller reads next (set by the roller).
    pub roller_position: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Lowest sequence number the roller still needs.
    pub release: watch::Receiver<u64>,
    /// Published: lowest sequence number still on disk.
    pub oldest: watch::Sender<u64>,
    /// Published: whether appends are being made durable.
    pub state: watch::Sender<WalState>,
    /// Shutdown, for a writer waiting to retry a write.
    pub stop: watch::Receiver<bool>,
    /// Marked while the roller is `max_backlog_bytes` behind and appends wait.
    pub backpressure: std::sync::Arc<crate::backpressure::Backpressure>,
    pub metrics: Metrics,
}

/// Seconds since the epoch as RFC 3339 (UTC), for log lines.
pub(crate) fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
