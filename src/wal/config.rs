//! `[wal]`: durability, segment size, how far the roller may fall behind.

use serde::{Deserialize, Serialize};

use crate::config::invalid::Invalid;
use crate::config::units::ByteSize;

fn default_segment_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_group_bytes() -> ByteSize {
    ByteSize(8 << 20)
}

/// How hard the WAL works to make an acknowledged request survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fdatasync before every ack (group commit shares one sync across
    /// connections). Survives power loss.
    Fsync,
    /// Write to the OS only: survives a process crash, not a power loss.
    /// For benchmarks.
    None,
}

/// `[wal]`: the write-ahead log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    #[serde(default = "default_durability")]
    pub durability: Durability,
    /// A segment file is closed and a new one started past this size.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: ByteSize,
    /// Most bytes written under one group commit.
    #[serde(default = "default_group_bytes")]
    pub max_group_bytes: ByteSize,
    /// WAL bytes the roller may be behind (a burst, or the roller slower
    /// than ingestion for a while). Past it appends wait and connections
    /// stop reading (backpressure). Acks never wait for the roller before.
    #[serde(default = "default_wal_backlog")]
    pub max_backlog_bytes: ByteSize,
    /// Free bytes the WAL leaves on its file system: below them appends wait
    /// (backpressure), so the roller can still finish its open files and the
    /// outbox take them, which frees the WAL's segments. Default:
    /// `roll.max_buffer_bytes` + 64 MiB (see [`WalConfig::disk_reserve_bytes`]).
    #[serde(default)]
    pub(crate) disk_reserve: Option<ByteSize>,
}

fn default_wal_backlog() -> ByteSize {
    ByteSize(4 << 30)
}

fn default_durability() -> Durability {
    Durability::Fsync
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            durability: default_durability(),
            segment_bytes: default_segment_bytes(),
            max_group_bytes: default_group_bytes(),
            max_backlog_bytes: default_wal_backlog(),
            disk_reserve: None,
        }
    }
}

impl WalConfig {
    /// The free space appends leave on the WAL's file system: `disk_reserve`,
    /// or by default what the roller may hold unwritten (`roll_buffer_bytes`)
    /// plus 64 MiB for footers, manifests, previews and marks.
    pub(crate) fn disk_reserve_bytes(&self, roll_buffer_bytes: u64) -> u64 {
        self.disk_reserve
            .map_or(roll_buffer_bytes.saturating_add(64 << 20), |b| b.0)
    }

    /// Checks `[wal]`.
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid::new(key, message);
        if self.segment_bytes.0 < 4096 {
            return Err(invalid("wal.segment_bytes", "must be at least 4KiB".into()));
        }
        Ok(())
    }
}
