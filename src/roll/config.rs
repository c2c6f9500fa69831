//! `[roll]`: periods, the event-time window, memory and open-file bounds,
//! freshness; and the declared column types routes use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::invalid::Invalid;
use crate::config::units::{ByteSize, HumanDuration};

fn default_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

fn default_roll_buffer() -> ByteSize {
    ByteSize(128 << 20)
}

fn default_zstd_level() -> i32 {
    3
}

fn default_row_group_rows() -> usize {
    1 << 20
}

/// Unit of the Parquet `time` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Microseconds: what Athena, BigQuery, DuckDB and Spark all read.
    Us,
    /// Nanoseconds: lossless for EventTime, not read by every engine.
    Ns,
}

fn default_time_unit() -> TimeUnit {
    TimeUnit::Us
}

/// `[roll]`: how events become Parquet files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Length of one file's time window: "1h" (default) down to "1m".
    #[serde(default = "default_period")]
    pub period: HumanDuration,
    /// How long after a period ends its file stays open for stragglers.
    #[serde(default = "default_grace")]
    pub(crate) grace: HumanDuration,
    #[serde(default = "default_time_unit")]
    pub(crate) time_unit: TimeUnit,
    /// Memory for rows not yet written to disk, across all open files. Past
    /// it the largest open file writes a row group.
    #[serde(default = "default_roll_buffer")]
    pub(crate) max_buffer_bytes: ByteSize,
    /// Most rows in one row group.
    #[serde(default = "default_row_group_rows")]
    pub(crate) row_group_rows: usize,
    /// zstd level for Parquet pages (1 fastest … 22 smallest).
    #[serde(default = "default_zstd_level")]
    pub(crate) zstd_level: i32,
    /// An event dated more than this after its arrival (a client clock that
    /// runs fast) does not open its own period's file, which would stay open
    /// until that period ends: it goes to a short-lived `outside` file.
    #[serde(default = "default_max_future")]
    pub(crate) max_future: HumanDuration,
    /// A late event (its period's file already finished) dated less than
    /// this before its arrival goes to a `late` file beside its period's
    /// file; older ones go to the short-lived `outside` file, so a request
    /// spanning years cannot open a file per period.
    #[serde(default = "default_max_past")]
    pub(crate) max_past: HumanDuration,
    /// Files (Parquet and Treasure Data parts) open at once. Past it the
    /// least recently written file is finished early.
    #[serde(default = "default_max_open_files")]
    pub(crate) max_open_files: usize,
    /// Off by default. How often the rows of open files are also written
    /// as small preview files for the sinks with `fresh = true`, so recent
    /// data is queryable before its period's file is finished (README,
    /// "Freshness").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) freshness: Option<HumanDuration>,
}

fn default_max_future() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_max_past() -> HumanDuration {
    HumanDuration(Duration::from_secs(86_400))
}

fn default_max_open_files() -> usize {
    512
}

impl Default for RollConfig {
    fn default() -> Self {
        Self {
            period: default_period(),
            grace: default_grace(),
            time_unit: default_time_unit(),
            max_buffer_bytes: default_roll_buffer(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            max_future: default_max_future(),
            max_past: default_max_past(),
            max_open_files: default_max_open_files(),
            freshness: None,
        }
    }
}

/// Type of a declared column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
}

impl ColumnType {
    /// The name a config gives it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int32 => "int32",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
        }
    }
}

impl RollConfig {
    /// Checks what only `[roll]` decides.
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid::new(key, message);
        let period = self.period.0;
        if period < Duration::from_secs(60) || period > Duration::from_secs(86_400) {
            return Err(invalid("roll.period", "must be from 1m to 24h".into()));
        }
        if !period.as_secs().is_multiple_of(60)
            || period.subsec_nanos() != 0
            || 86_400 % period.as_secs() != 0
        {
            return Err(invalid(
                "roll.period",
                "must be whole minutes that divide a day evenly (1m, 5m, 15m, 1h, …)".into(),
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(invalid("roll.zstd_level", "must be from 1 to 22".into()));
        }
        if self.max_open_files < 2 {
            return Err(invalid("roll.max_open_files", "must be at least 2".into()));
        }
        if self.row_group_rows == 0 {
            return Err(invalid("roll.row_group_rows", "must be at least 1".into()));
        }
        Ok(())
    }
}
