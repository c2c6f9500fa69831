//! Sinks checked before traffic: each is probed at start (its bucket there
//! and writable, its key valid, its catalog reachable), the answer logged
//! and exported as `weir_sink_up{sink}`; a sink that fails is probed again
//! every 30 s until it passes or a delivery to it succeeds (then its
//! deliveries keep the gauge current, and no probe object is written while
//! real files flow).
//! A failing sink does not make the node unready: buffering is the point.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Sink;
use crate::metrics::Metrics;
use crate::status::SinkStatus;

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

/// Probes one sink until a probe passes, a delivery to it succeeds, or
/// weir stops.
async fn probe_until_up(
    name: String,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    status: Arc<SinkStatus>,
    mut stop: watch::Receiver<bool>,
    again: Duration,
) {
    loop {
        match probe(sink.as_ref()).await {
            Ok(()) => {
                metrics.outbox.sink_ok(&name, "probe");
                return;
            }
            // A delivery that succeeded while this probe ran is newer
            // news than the probe's failure: the sink stays up.
            Err(_) if status.was_reached(&name) => return,
            Err(why) => metrics.outbox.sink_failing(&name, &why),
        }
        tokio::select! {
            _ = tokio::time::sleep(again) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // A file got through meanwhile: the sink is known up.
        if status.was_reached(&name) {
            return;
        }
    }
}

/// Probes every sink now, and the failing ones again until they pass or
/// weir stops.
pub(crate) fn start(
    sinks: &BTreeMap<String, Arc<dyn Sink>>,
    metrics: Metrics,
    status: Arc<SinkStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let sinks: Vec<(String, Arc<dyn Sink>)> =
        sinks.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
    for (name, _) in &sinks {
        // Unknown until the first probe answers, and to be reached anew
        // (after a reload the sink may be another one).
        metrics.outbox.sink_unknown(name);
        status.unreached(name);
    }
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, sink) in sinks {
            let (metrics, status, stop) = (metrics.clone(), status.clone(), shutdown.clone());
            tasks.spawn(probe_until_up(name, sink, metrics, status, stop, AGAIN));
        }
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::sink::{SinkError, SinkFuture};

    /// A sink whose probe always fails, counting its probes.
    struct Failing(AtomicUsize);

    impl Sink for Failing {
        fn put<'a>(&'a self, _key: &'a str, _path: &'a std::path::Path) -> SinkFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        fn probe(&self) -> SinkFuture<'_> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(SinkError::Http("down".into())) })
        }
    }

    #[tokio::test]
    async fn a_failing_sink_is_probed_again_until_a_delivery_shows_it_up() {
        let sink = Arc::new(Failing(AtomicUsize::new(0)));
        let metrics = Metrics::new();
        let status = SinkStatus::new();
        let (_stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(probe_until_up(
            "lake".into(),
            sink.clone(),
            metrics.clone(),
            status.clone(),
            stop,
            Duration::from_millis(20),
        ));
        while sink.0.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(metrics.value("weir_sink_up", &[("sink", "lake")]), 0.0);
        // An upload succeeds: no probe object is written after it.
        status.reached("lake");
        let probes = sink.0.load(Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the probe loop ends once the sink is up")
            .unwrap();
        assert!(sink.0.load(Ordering::SeqCst) <= probes + 1);
    }

    /// A sink whose probe fails after an upload to it succeeded (a probe
    /// started before it: a refused delete of the probe object, say).
    struct ReachedDuringProbe(Arc<SinkStatus>, Metrics);

    impl Sink for ReachedDuringProbe {
        fn put<'a>(&'a self, _key: &'a str, _path: &'a std::path::Path) -> SinkFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        fn probe(&self) -> SinkFuture<'_> {
            // The upload succeeds while the probe runs, as delivery reports it.
            self.1.outbox.sink_ok("lake", "upload");
            self.0.reached("lake");
            Box::pin(async { Err(SinkError::Http("delete refused".into())) })
        }
    }

    #[tokio::test]
    async fn a_probe_failing_after_a_delivery_succeeded_does_not_mark_the_sink_down() {
        let metrics = Metrics::new();
        let status = SinkStatus::new();
        // Reached before this start: a reload forgets it.
        status.reached("lake");
        let sinks: BTreeMap<String, Arc<dyn Sink>> = [(
            "lake".to_string(),
            Arc::new(ReachedDuringProbe(status.clone(), metrics.clone())) as Arc<dyn Sink>,
        )]
        .into_iter()
        .collect();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::time::timeout(
            Duration::from_secs(5),
            start(&sinks, metrics.clone(), status.clone(), stop),
        )
        .await
        .expect("the probe loop ends once the sink was reached")
        .unwrap();
        assert_eq!(
            metrics.value("weir_sink_up", &[("sink", "lake")]),
            1.0,
            "the upload's word stands"
        );
    }
}
