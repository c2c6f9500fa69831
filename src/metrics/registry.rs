//! Registering metrics: each is added to the registry and to the catalog
//! the README's table is generated from.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::MetricInfo;

/// The registry while metrics are being registered, with their catalog.
pub(super) struct Reg {
    pub(crate) registry: Registry,
    pub(crate) catalog: std::cell::RefCell<Vec<MetricInfo>>,
}

/// Registers a metric built from constant names; a failure is a programming
/// error that every test run would hit.
pub(super) fn register<T: Collector + Clone + 'static>(
    r: &Reg,
    kind: &'static str,
    name: &str,
    metric: prometheus::Result<T>,
) -> T {
    let m = metric.unwrap_or_else(|e| panic!("metric {name}: {e}"));
    for d in m.desc() {
        r.catalog.borrow_mut().push(MetricInfo {
            name: d.fq_name.clone(),
            kind,
            labels: d.variable_labels.clone(),
            help: d.help.clone(),
        });
    }
    r.registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    m
}

pub(super) fn counter(r: &Reg, name: &str, help: &str) -> IntCounter {
    register(r, "counter", name, IntCounter::new(name, help))
}

pub(super) fn counter_vec(r: &Reg, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        "counter",
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

pub(super) fn gauge(r: &Reg, name: &str, help: &str) -> IntGauge {
    register(r, "gauge", name, IntGauge::new(name, help))
}

pub(super) fn gauge_vec(r: &Reg, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        "gauge",
        name,
        IntGaugeVec::new(Opts::new(name, help), labels),
    )
}

pub(super) fn histogram(r: &Reg, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        r,
        "histogram",
        name,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

pub(super) fn histogram_vec(
    r: &Reg,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    register(
        r,
        "histogram",
        name,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

pub(super) fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ]
}
