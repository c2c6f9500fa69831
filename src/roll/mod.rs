//! The roller: WAL records in, one Parquet file per (route, tag, period) out.
//!
//! Events are grouped by route, tag and the period their *event time* falls
//! in. Each group has one open file under `data_dir/roll/open/`, encoded
//! continuously into row groups. When the roller's clock passes period end +
//! grace, the file's footer is written and the file moves to the outbox with
//! its manifest, exactly once per (route, tag, period, node).
//!
//! # Time and lateness
//! The roller's clock is the WAL's: record arrival stamps and ticks, which
//! never go backwards. An event is *late* when its record arrived at or after
//! its period's end + grace; late events go to a separate file
//! `{node}.late-{seq}.parquet` beside the period's file (`seq` = the WAL
//! sequence of its first event), finished `max(grace, 1m)` after it opened.
//! Because every decision depends only on WAL contents, replay after a crash
//! makes the same decisions, and events already in a finished file (per the
//! outbox manifests) are skipped rather than written twice.
//!
//! # Memory
//! Rows in open files' builders, batches queued for the encoder thread and
//! in-progress row groups together stay under `roll.max_buffer_bytes`: past
//! it, the largest open file writes a row group.
//!
//! # Threads
//! The roller thread reads the WAL and builds record batches; the
//! `encoder` thread encodes and compresses them, so rolling a backlog uses
//! two cores. Both run behind the ack path (`priority`).

pub(crate) mod config;
mod encoder;
pub mod json;
mod quarantine;
mod roller;
mod schema;
mod window;
mod write_error;
mod writer;

pub use config::{ColumnType, RollConfig, TimeUnit};
pub use encoder::Encoder;
#[cfg(test)]
pub(crate) use json::write_value;
pub(crate) use roller::{start, RollerError, RollerLinks};
pub use schema::RouteSchema;
pub(crate) use window::Direction;
pub use writer::PartitionWriter;
pub(crate) use writer::FILE_OVERHEAD;

/// Seconds since the epoch at which the period holding `time_ns` starts.
pub(crate) fn period_start(time_ns: i64, period_secs: u64) -> i64 {
    let p = period_secs as i64;
    time_ns.div_euclid(1_000_000_000).div_euclid(p) * p
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod period_tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(period_start(3_599_999_999_999, 3600), 0);
        assert_eq!(period_start(3_600_000_000_000, 3600), 3600);
        assert_eq!(period_start(-1, 3600), -3600);
        assert_eq!(period_start(1_764_090_061_000_000_000, 60), 1_764_090_060);
    }
}
