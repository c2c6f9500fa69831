//! Sinks checked before traffic: each is probed at start (its bucket there
//! and writable, its key valid, its catalog reachable), the answer logged
//! and exported as `weir_sink_up{sink}`; a sink that fails is probed again
//! every 30 s until it passes (then its deliveries keep the gauge current).
//! A failing sink does not make the node unready: buffering is the point.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Sink;
use crate::metrics::Metrics;

/// Longest one probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a failing sink is probed again.
const AGAIN: Duration = Duration::from_secs(30);

/// One probe, with a timeout; `Err` says why the sink cannot take files.
pub(crate) async fn probe(sink: &dyn Sink) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, sink.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Probes every sink now, and the failing ones again until they pass or
/// weir stops.
pub(crate) fn start(
    sinks: &BTreeMap<String, Arc<dyn Sink>>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let sinks: Vec<(String, Arc<dyn Sink>)> =
        sinks.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, sink) in sinks {
            let (metrics, mut stop) = (metrics.clone(), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    match probe(sink.as_ref()).await {
                        Ok(()) => {
                            metrics.outbox.sink_ok(&name, "probe");
                            return;
                        }
                        Err(why) => metrics.outbox.sink_failing(&name, &why),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(AGAIN) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            });
        }
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    })
}
