//! Delivery: one worker per sink, each with its own queue, so a failing sink
//! retries on its own and never holds up another (invariant 6).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Manifest, OutboxDir};
use crate::metrics::Metrics;
use crate::sink::Sink;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Channels the outbox reads.
pub struct DeliveryLinks {
    /// Files the roller finished.
    pub finished: mpsc::Receiver<Manifest>,
    /// Lowest WAL sequence still on disk; manifests below it can go.
    pub wal_oldest: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Metrics,
    pub backlog: Arc<super::Backlog>,
}

struct Entry {
    manifest: Arc<Manifest>,
    pending: BTreeSet<String>,
}

/// Starts delivery of `initial` (from [`OutboxDir::load`]) and of every file
/// the roller finishes from now on. Ends when `finished` closes or on shutdown.
pub fn start(
    outbox: OutboxDir,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    initial: Vec<Manifest>,
    mut links: DeliveryLinks,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, String)>();
        let mut queues = BTreeMap::new();
        let mut workers = Vec::new();
        for (name, sink) in &sinks {
            // Every sink's series exist from the start, at zero.
            let m = &links.metrics;
            for result in ["ok", "error", "rejected"] {
                m.sink_uploads.with_label_values(&[name, result]);
            }
            m.sink_retries.with_label_values(&[name]);
            m.sink_dead_lettered.with_label_values(&[name]);
            m.sink_auth_failures.with_label_values(&[name]);
            m.outbox_files.with_label_values(&[name]);
            m.outbox_bytes.with_label_values(&[name]);
            m.outbox_oldest_age_seconds.with_label_values(&[name]);
            let (tx, rx) = mpsc::unbounded_channel::<Arc<Manifest>>();
            queues.insert(name.clone(), tx);
            workers.push(tokio::spawn(worker(
                name.clone(),
                sink.clone(),
                outbox.clone(),
                rx,
                done_tx.clone(),
                links.shutdown.clone(),
                links.metrics.clone(),
            )));
        }
        drop(done_tx);
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let enqueue = |m: Manifest, entries: &mut BTreeMap<String, Entry>| {
            let manifest = Arc::new(m);
            let mut pending = BTreeSet::new();
            for sink in manifest.keys.keys() {
                if outbox.is_delivered(&manifest.id, sink) {
                    continue;
                }
                match queues.get(sink) {
                    Some(q) => {
                        links.metrics.outbox_files.with_label_values(&[sink]).inc();
                        links
                            .metrics
                            .outbox_bytes
                            .with_label_values(&[sink])
                            .add(manifest.bytes as i64);
                        pending.insert(sink.clone());
                        let _ = q.send(manifest.clone());
                    }
                    None => tracing::warn!(id = manifest.id, sink, "file is waiting for a sink that is no longer configured; it stays in the outbox"),
                }
            }
            if !pending.is_empty() {
                links.backlog.add(manifest.bytes);
            }
            entries.insert(manifest.id.clone(), Entry { manifest, pending });
        };
        for m in initial {
            enqueue(m, &mut entries);
        }
        let mut prune_tick = tokio::time::interval(Duration::from_secs(5));
        let mut finished_open = true;
        loop {
            // Shutting down (the roller is gone) and nothing waits: done.
            if !finished_open && entries.values().all(|e| e.pending.is_empty()) {
                break;
            }
            tokio::select! {
                m = links.finished.recv(), if finished_open => match m {
                    Some(m) => enqueue(m, &mut entries),
                    None => {
                        finished_open = false;
                        let waiting = entries.values().filter(|e| !e.pending.is_empty()).count();
                        if waiting > 0 {
                            tracing::info!(waiting, "delivering finished files before exit");
                        }
                    }
                },
                d = done_rx.recv() => match d {
                    Some((id, sink)) => {
                        if let Some(e) = entries.get_mut(&id) {
                            let was_pending = !e.pending.is_empty();
                            e.pending.remove(&sink);
                            if was_pending && e.pending.is_empty() {
                                links.backlog.sub(e.manifest.bytes);
                            }
                            if e.pending.is_empty() && !e.manifest.keys.keys().any(|s| !outbox.is_delivered(&id, s)) {
                                if let Err(err) = outbox.remove_data(&e.manifest) {
                                    tracing::warn!(id, error = %err, "cannot remove delivered outbox file");
                                }
                            }
                        }
                    }
                    None => break,
                },
                _ = prune_tick.tick() => {
                    report_backlog_age(&entries, &sinks, &links.metrics);
                    let oldest = *links.wal_oldest.borrow();
                    entries.retain(|id, e| {
                        let prunable = e.pending.is_empty()
                            && e.manifest.covered_through < oldest
                            && !outbox.has_data(&e.manifest);
                        if prunable {
                            if let Err(err) = outbox.forget(&e.manifest) {
                                tracing::warn!(id, error = %err, "cannot prune outbox manifest");
                                return true;
                            }
                        }
                        !prunable
                    });
                }
                _ = links.shutdown.changed() => {
                    if *links.shutdown.borrow() { break; }
                }
            }
        }
        drop(queues);
        for w in workers {
            let _ = w.await;
        }
    })
}

/// Sets each sink's oldest-waiting-file age.
fn report_backlog_age(
    entries: &BTreeMap<String, Entry>,
    sinks: &BTreeMap<String, Arc<dyn Sink>>,
    metrics: &Metrics,
) {
    let now = crate::wal::now_ms();
    for sink in sinks.keys() {
        let oldest = entries
            .values()
            .filter(|e| e.pending.contains(sink))
            .map(|e| e.manifest.finished_at_ms)
            .min();
        let age = oldest.map_or(0, |t| (now - t).max(0) / 1000);
        metrics
            .outbox_oldest_age_seconds
            .with_label_values(&[sink])
            .set(age);
    }
}

async fn worker(
    sink_name: String,
    sink: Arc<dyn Sink>,
    outbox: OutboxDir,
    mut queue: mpsc::UnboundedReceiver<Arc<Manifest>>,
    done: mpsc::UnboundedSender<(String, String)>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let labels = [sink_name.as_str()];
    loop {
        let m = tokio::select! {
            m = queue.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Some(key) = m.keys.get(&sink_name) else {
            continue;
        };
        let path = outbox.data_path(&m);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                r = sink.put(key, &path) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            metrics
                .sink_upload_seconds
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    metrics
                        .sink_uploads
                        .with_label_values(&[&sink_name, "ok"])
                        .inc();
                    break;
                }
                Err(e) if e.is_permanent() => {
                    metrics
                        .sink_uploads
                        .with_label_values(&[&sink_name, "rejected"])
                        .inc();
                    match outbox.dead_letter(&m, &sink_name, &e.to_string()) {
                        Ok(at) => {
                            metrics.sink_dead_lettered.with_label_values(&labels).inc();
                            tracing::error!(sink = sink_name, key, error = %e, dead_letter = %at.display(),
                                "sink rejected the file for good; kept in the dead-letter folder");
                            break;
                        }
                        Err(io) => {
                            tracing::error!(sink = sink_name, key, error = %io, "cannot dead-letter a rejected file; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(jitter(backoff)) => {}
                                _ = shutdown.wait_for(|s| *s) => return,
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                Err(e) => {
                    metrics
                        .sink_uploads
                        .with_label_values(&[&sink_name, "error"])
                        .inc();
                    if matches!(e, crate::sink::SinkError::Unauthorized { .. }) {
                        metrics.sink_auth_failures.with_label_values(&labels).inc();
                    }
                    metrics.sink_retries.with_label_values(&labels).inc();
                    tracing::warn!(sink = sink_name, key, error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        crate::failpoint::hit("outbox.after_upload");
        // The mark must be durable before the file may be removed.
        let mut mark_backoff = FIRST_BACKOFF;
        while let Err(e) = outbox.mark_delivered(&m.id, &sink_name) {
            tracing::error!(sink = sink_name, id = m.id, error = %e, "cannot record delivery; retrying");
            tokio::time::sleep(mark_backoff).await;
            mark_backoff = (mark_backoff * 2).min(MAX_BACKOFF);
        }
        tracing::info!(
            sink = sink_name,
            key,
            rows = m.rows,
            bytes = m.bytes,
            "delivered"
        );
        metrics.outbox_files.with_label_values(&labels).dec();
        metrics
            .outbox_bytes
            .with_label_values(&labels)
            .sub(m.bytes as i64);
        let _ = done.send((m.id.clone(), sink_name.clone()));
    }
}

/// Spreads retries of many files so they do not hit a recovering sink at once.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let frac = f64::from(nanos % 1000) / 1000.0; // 0..1
    d.mul_f64(0.8 + 0.4 * frac)
}
