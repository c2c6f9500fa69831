//! What the stages report of themselves for `/readyz`: a stage that cannot
//! work, sinks whose commits fail, listeners not yet accepting. The stages
//! set these; [`crate::health`] reads them.

use std::sync::Arc;
use std::time::Duration;

/// Why a stage cannot do its work right now (a full disk, a failing
/// file), for `/readyz`; empty while it works. Set and cleared by the stage.
#[derive(Default)]
pub(crate) struct StageStatus {
    failing: std::sync::Mutex<Option<String>>,
}

impl StageStatus {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn set(&self, why: String) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    pub(crate) fn clear(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Sinks whose commits fail, since when and why: `/readyz` reports them
/// after a grace but stays ready (the outbox buffers; a whole tier turning
/// unready because a shared catalog is down would only move the outage to
/// the clients). Also the sinks a delivery has reached since start: their
/// start probe stops retrying (real files prove them up, and no probe
/// object is written while they flow).
///
/// # Memory
/// Two entries at most per configured sink.
#[derive(Default)]
pub(crate) struct SinkStatus {
    failing: std::sync::Mutex<std::collections::BTreeMap<String, (std::time::Instant, String)>>,
    reached: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl SinkStatus {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (std::time::Instant, String)>>
    {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `sink`'s commits fail (keeps the first failure's time).
    pub(crate) fn failing(&self, sink: &str, why: String) {
        let mut m = self.lock();
        let since = m
            .get(sink)
            .map_or_else(std::time::Instant::now, |(t, _)| *t);
        m.insert(sink.to_string(), (since, why));
    }

    /// `sink`'s commits work again.
    pub(crate) fn ok(&self, sink: &str) {
        self.lock().remove(sink);
    }

    /// A delivery to `sink` (an upload or a commit) succeeded.
    pub(crate) fn reached(&self, sink: &str) {
        let mut r = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if !r.contains(sink) {
            r.insert(sink.to_string());
        }
    }

    /// `sink` starts anew (a start or a reload): a delivery must reach it
    /// again before its probe stops.
    pub(crate) fn unreached(&self, sink: &str) {
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sink);
    }

    /// Whether a delivery to `sink` has succeeded since start.
    pub(crate) fn was_reached(&self, sink: &str) -> bool {
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(sink)
    }

    /// Sinks failing for at least `grace`: "sink X: commits failing for N s: why".
    pub(crate) fn report(&self, grace: Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, (t, _))| t.elapsed() >= grace)
            .map(|(s, (t, why))| {
                format!(
                    "sink {s}: commits failing for {} s (files wait in the outbox): {why}",
                    t.elapsed().as_secs()
                )
            })
            .collect()
    }
}

/// The inputs' listeners by name ("forward", "forward unix", "http") and
/// whether each accepts yet.
#[derive(Default)]
pub(crate) struct Listeners(std::sync::Mutex<Vec<(&'static str, bool)>>);

impl Listeners {
    /// A listener that will accept once the WAL is recovered.
    pub(crate) fn expect(&self, name: &'static str) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !l.iter().any(|(n, _)| *n == name) {
            l.push((name, false));
        }
    }

    /// `name` accepts now.
    pub(crate) fn accepting(&self, name: &'static str) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match l.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = true,
            None => l.push((name, true)),
        }
    }

    /// The listeners not accepting yet (every one, when none is known).
    pub(crate) fn waiting(&self) -> Vec<&'static str> {
        let l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if l.is_empty() {
            return vec!["forward"];
        }
        l.iter().filter(|(_, up)| !up).map(|(n, _)| *n).collect()
    }
}
