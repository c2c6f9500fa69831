//! `[outbox]`: the backlog limit, the shutdown wait, local retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, HumanDuration};

fn default_backlog() -> ByteSize {
    ByteSize(10 << 30)
}

/// `[outbox]`: finished files waiting for their sinks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutboxConfig {
    /// Disk the outbox may use for files some sink has not taken yet. Past
    /// it weir stops finishing files (and so, soon, reading sockets) until a
    /// sink catches up: backpressure instead of a full disk.
    #[serde(default = "default_backlog")]
    pub max_backlog_bytes: ByteSize,
    /// On SIGTERM, keep delivering finished files for up to this long
    /// before exiting (keep it under Kubernetes'
    /// terminationGracePeriodSeconds). What is left goes at the next start.
    #[serde(default = "default_shutdown_timeout")]
    pub(crate) shutdown_timeout: HumanDuration,
    /// Keep delivered files in `data_dir/retained/` this long after their
    /// period ends, for restore ("0s", the default: delete on delivery).
    #[serde(default = "default_retain")]
    pub(crate) retain: HumanDuration,
    /// Most disk retained files may use; the oldest periods go first.
    #[serde(default = "default_retain_bytes")]
    pub(crate) retain_bytes: ByteSize,
}

fn default_retain() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

fn default_retain_bytes() -> ByteSize {
    ByteSize(10 << 30)
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(20))
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_backlog_bytes: default_backlog(),
            shutdown_timeout: default_shutdown_timeout(),
            retain: default_retain(),
            retain_bytes: default_retain_bytes(),
        }
    }
}
