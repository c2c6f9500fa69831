//! `type = "td"`: Treasure Data's import API, as fluent-plugin-td uses it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::fields::{default_true, redact};
use crate::config::units::{ByteSize, HumanDuration};

fn default_td_endpoint() -> String {
    "https://api.treasuredata.com".to_string()
}

fn default_td_flush() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_td_part() -> ByteSize {
    ByteSize(32 << 20)
}

/// `type = "td"`: uploads records to Treasure Data as fluent-plugin-td does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TdSinkConfig {
    #[serde(serialize_with = "redact")]
    pub(crate) apikey: String,
    #[serde(default = "default_td_endpoint")]
    pub(crate) endpoint: String,
    /// Default: the tag's second-to-last part (normalised as TD does).
    pub(crate) database: Option<String>,
    /// Default: the tag's last part.
    pub(crate) table: Option<String>,
    /// A part is uploaded this long after its first event.
    #[serde(default = "default_td_flush")]
    pub(crate) flush_interval: HumanDuration,
    /// Largest part (msgpack bytes before gzip).
    #[serde(default = "default_td_part")]
    pub(crate) max_part_bytes: ByteSize,
    /// Create a missing database/table on 404 instead of dead-lettering.
    #[serde(default = "default_true")]
    pub(crate) auto_create_table: bool,
}
