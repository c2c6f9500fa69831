//! How a redelivery is going, and its summary.

use serde::{Deserialize, Serialize};

use super::Selection;
use crate::outbox::manifest::Manifest;

/// How a redelivery is going; the live node writes it as JSON for the
/// command, which prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Progress {
    pub sink: String,
    pub(crate) files: usize,
    pub(crate) sent: usize,
    pub(crate) failed: usize,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) not_applicable: usize,
    /// The first few failures, `key: error`.
    pub(crate) failures: Vec<String>,
    pub(crate) finished: bool,
    /// Why the request could not start at all (then nothing was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Most failures a summary lists one by one.
const MAX_LISTED_FAILURES: usize = 20;

impl Progress {
    pub(crate) fn new(sink: &str, selection: &Selection) -> Self {
        let missing = selection.missing.len();
        Self {
            sink: sink.to_string(),
            files: selection.items.len() + missing,
            failed: missing,
            failures: selection
                .missing
                .iter()
                .take(MAX_LISTED_FAILURES)
                .cloned()
                .collect(),
            not_applicable: selection.not_applicable,
            finished: selection.items.is_empty(),
            ..Self::default()
        }
    }

    pub(crate) fn record(&mut self, m: &Manifest, key: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.sent += 1;
                self.rows += m.rows;
                self.bytes += m.bytes;
            }
            Err(e) => {
                self.failed += 1;
                if self.failures.len() < MAX_LISTED_FAILURES {
                    self.failures.push(format!("{key}: {e}"));
                }
            }
        }
        self.finished = self.sent + self.failed >= self.files;
    }

    /// One line for people.
    pub(crate) fn line(&self) -> String {
        format!(
            "redeliver to {}: {}/{} files sent, {} rows, {} bytes, {} failed",
            self.sink, self.sent, self.files, self.rows, self.bytes, self.failed
        )
    }

    /// The closing summary; `Err` when something was not delivered.
    pub(crate) fn summary(&self) -> anyhow::Result<String> {
        if let Some(e) = &self.error {
            anyhow::bail!("{e}");
        }
        if self.files == 0 && self.not_applicable > 0 {
            anyhow::bail!(
                "nothing sent: the {} retained files in range do not go to sink {} (Parquet files for a Treasure Data sink, or a route that does not send there)",
                self.not_applicable,
                self.sink
            );
        }
        if self.files == 0 {
            anyhow::bail!("nothing sent: no retained file matches --from, --to and --match (retained files are kept by outbox.retain)");
        }
        let mut s = self.line();
        if self.not_applicable > 0 {
            s.push_str(&format!(
                "; {} more retained files in range do not go to this sink",
                self.not_applicable
            ));
        }
        for f in &self.failures {
            s.push_str(&format!("\n  failed: {f}"));
        }
        if self.failed > 0 {
            anyhow::bail!("{s}\n{} files were not delivered; run the command again once the sink is reachable", self.failed);
        }
        Ok(s)
    }
}
