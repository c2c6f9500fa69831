//! `[log]`: how much weir logs per unit of work.

use serde::{Deserialize, Serialize};

/// `[log]` in the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// Lines a minute for each per-unit kind (a finished file, a
    /// delivery); past it they are summed into one line a minute and
    /// counted in `weir_log_suppressed_total{kind}`. 0: summaries only.
    #[serde(default = "default_lines_per_minute")]
    pub(crate) lines_per_minute: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            lines_per_minute: default_lines_per_minute(),
        }
    }
}

fn default_lines_per_minute() -> u32 {
    super::activity::DEFAULT_LINES_PER_MINUTE
}
