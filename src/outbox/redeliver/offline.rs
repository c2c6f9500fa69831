//! Redelivery from a stopped node: the command uploads itself.

use std::sync::Arc;
use std::time::Duration;

use super::{Item, Progress, Request, Selection, MAX_TIMEOUT_SECS};
use crate::backoff::Backoff;
use crate::sink::{Sink, SinkError};

/// One upload's retries: from half a second, doubling up to 30 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// Uploads in flight at once on a stopped node.
const PARALLEL_UPLOADS: usize = 8;

/// Sends the selection from a stopped node, `report` called after each file.
pub async fn run_offline(
    sink: Arc<dyn Sink>,
    req: &Request,
    selection: Selection,
    mut report: impl FnMut(&Progress),
) -> Progress {
    let mut progress = Progress::new(&req.sink, &selection);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(req.timeout_secs.min(MAX_TIMEOUT_SECS));
    let mut todo = selection.items.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PARALLEL_UPLOADS {
            let Some(item) = todo.next() else { break };
            let sink = sink.clone();
            running.spawn(async move {
                let result = upload_with_retries(&*sink, &item, deadline).await;
                (item, result)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok((item, result)) => {
                if result.is_ok() {
                    crate::failpoint::hit("redeliver.after_upload");
                }
                progress.record(&item.manifest, &item.key, result.map_err(|e| e.to_string()))
            }
            Err(e) => {
                progress.failed += 1;
                progress.failures.push(format!("upload task: {e}"));
            }
        }
        report(&progress);
    }
    progress.finished = true;
    progress
}

/// Retries one upload until it succeeds, the sink rejects it for good, or
/// `deadline` passes.
async fn upload_with_retries(
    sink: &dyn Sink,
    item: &Item,
    deadline: tokio::time::Instant,
) -> Result<(), SinkError> {
    let mut backoff = RETRY;
    loop {
        match sink.put(&item.key, &item.path).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                // The last attempt is made at the deadline.
                let next = (now + backoff.next_delay()).min(deadline);
                tracing::warn!(key = item.key, error = %e, retry_in_ms = (next - now).as_millis() as u64, "redeliver upload failed; will retry");
                tokio::time::sleep_until(next).await;
            }
        }
    }
}
