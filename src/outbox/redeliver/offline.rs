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
pub(crate) async fn run_offline(
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
    // A table: files put wait for one commit at the end.
    let mut staged: Vec<Item> = Vec::new();
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
                if result.is_ok() && sink.commits().is_some() {
                    staged.push(item);
                } else {
                    progress.record(&item.manifest, &item.key, result.map_err(|e| e.to_string()))
                }
            }
            Err(e) => {
                progress.failed += 1;
                progress.failures.push(format!("upload task: {e}"));
            }
        }
        report(&progress);
    }
    if let Some(policy) = sink.commits() {
        for chunk in staged.chunks(policy.max_files.max(1)) {
            let results = commit_with_retries(&*sink, chunk, deadline).await;
            for (item, result) in chunk.iter().zip(results) {
                progress.record(&item.manifest, &item.key, result);
            }
            report(&progress);
        }
    }
    progress.finished = true;
    progress
}

/// Commits redelivered files (the sink adds only those its table lacks),
/// retrying until all are in or `deadline` passes; each file's result.
async fn commit_with_retries(
    sink: &dyn Sink,
    items: &[Item],
    deadline: tokio::time::Instant,
) -> Vec<Result<(), String>> {
    let mut backoff = RETRY;
    let mut results: Vec<Option<Result<(), String>>> = vec![None; items.len()];
    loop {
        let pending: Vec<crate::sink::Staged> = items
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| crate::sink::Staged {
                key: i.key.clone(),
                path: i.path.clone(),
                manifest: Arc::new(i.manifest.clone()),
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        let committed = sink.commit(&pending, true).await;
        for (item, r) in items.iter().zip(results.iter_mut()) {
            if r.is_none() && committed.done.contains(&item.key) {
                *r = Some(Ok(()));
            }
        }
        let Some(e) = committed.failed else { continue };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(Err(format!("commit: {e}")));
            }
            break;
        }
        let next = (now + backoff.next_delay()).min(deadline);
        tracing::warn!(error = %e, retry_in_ms = (next - now).as_millis() as u64, "redeliver commit failed; will retry");
        tokio::time::sleep_until(next).await;
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not committed".into())))
        .collect()
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
