//! One Prometheus registry, with each stage's metrics in its own struct
//! (forward.rs, capture.rs, wal.rs, roll.rs, outbox.rs, iceberg.rs).
//!
//! Names follow `weir_<stage>_<noun>_<unit>_total`. Labels are bounded sets
//! (mode, reason, sink, result): never a tag or a client address.
//! Every drop, reject and retry counts here as well as in the log: the
//! stage structs' event methods (e.g. [`ForwardMetrics::refused`]) do both,
//! so a counter and its log line cannot drift apart.

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};

use crate::logging::Suppressed;

mod capture;
mod forward;
mod forward_out;
mod http;
mod iceberg;
mod outbox;
mod registry;
mod roll;
mod wal;

pub(crate) use capture::CaptureMetrics;
pub(crate) use forward::ForwardMetrics;
pub(crate) use forward_out::ForwardOutMetrics;
pub(crate) use http::HttpMetrics;
pub(crate) use iceberg::IcebergMetrics;
pub(crate) use outbox::{OutboxGauges, OutboxMetrics, Retained, Waiting};
pub(crate) use roll::{RollGauges, RollMetrics};
pub(crate) use wal::{WalGauges, WalMetrics};

/// Shared handle to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    pub(crate) registry: Registry,
    /// Every metric in registration order, for the README's table.
    pub(crate) catalog: Vec<MetricInfo>,
    pub(crate) forward: ForwardMetrics,
    pub(crate) http: HttpMetrics,
    pub(crate) capture: CaptureMetrics,
    pub(crate) wal: WalMetrics,
    pub roll: RollMetrics,
    pub(crate) outbox: OutboxMetrics,
    pub(crate) iceberg: IcebergMetrics,
    pub(crate) forward_out: ForwardOutMetrics,
    /// Repeated warnings not logged.
    pub(crate) suppressed: Suppressed,
}

/// Every kind of rate-limited warning (`Suppressed::allow`) and per-unit
/// line ([`crate::logging::Activity`]), so each
/// `weir_log_suppressed_total{kind}` series exists from the start; a unit
/// test checks the list against the source.
pub(crate) const LOG_KINDS: [&str; 25] = [
    "accept_failed",
    "bad_wal_record",
    "capture",
    "connection_refused",
    "delivered",
    "early_finish",
    "finished_file",
    "forward_out_failed",
    "handshake",
    "http_accept_failed",
    "http_refused",
    "http_rejected",
    "iceberg_commit",
    "iceberg_table",
    "large_request",
    "not_array",
    "preview_sweep",
    "roller_failing",
    "tls",
    "type_mismatch",
    "unrouted_tag",
    "upload_failed",
    "wal_disk_reserve",
    "wal_upkeep",
    "wal_write",
];

/// One metric as the README's table lists it.
#[derive(Debug, Clone)]
pub(crate) struct MetricInfo {
    pub(crate) name: String,
    /// counter, gauge or histogram.
    pub(crate) kind: &'static str,
    pub(crate) labels: Vec<String>,
    pub(crate) help: String,
}

impl Metrics {
    /// Builds the registry. Metric definitions are constants, so a failure
    /// here is a programming error caught by every test run.
    pub fn new() -> Self {
        let r = registry::Reg {
            registry: Registry::new(),
            catalog: std::cell::RefCell::new(Vec::new()),
        };
        // Every stage counts its suppressed lines here; listed last.
        let name = "weir_log_suppressed_total";
        let suppressed = prometheus::IntCounterVec::new(
            prometheus::Opts::new(name, "Lines not logged, by kind: repeated warnings past their rate, and per-file lines past log.lines_per_minute (summed a minute)."),
            &["kind"],
        );
        let counter = suppressed.unwrap_or_else(|e| panic!("metric {name}: {e}"));
        let suppressed = Suppressed::new(counter.clone());
        let forward = ForwardMetrics::register(&r, &suppressed);
        let http = HttpMetrics::register(&r, &suppressed);
        let capture = CaptureMetrics::register(&r, &suppressed);
        let wal = WalMetrics::register(&r, &suppressed);
        let roll = RollMetrics::register(&r, &suppressed);
        let outbox = OutboxMetrics::register(&r, &suppressed);
        let iceberg = IcebergMetrics::register(&r, &suppressed);
        let forward_out = ForwardOutMetrics::register(&r, &suppressed);
        registry::register(&r, "counter", name, Ok(counter.clone()));
        for kind in LOG_KINDS {
            counter.with_label_values(&[kind]);
        }
        forward.zeros();
        wal.zeros();
        outbox.zeros();
        http.zeros();
        capture.zeros();
        roll.zeros();
        let build_info = registry::gauge_vec(
            &r,
            "weir_build_info",
            "Always 1; the labels say which weir runs (version, target).",
            &["version", "target"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            ])
            .set(1);
        // process_resident_memory_bytes, process_cpu_seconds_total,
        // process_open_fds, process_max_fds, process_start_time_seconds …
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = r.registry.register(Box::new(process)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        Metrics(Arc::new(Inner {
            forward,
            http,
            capture,
            wal,
            roll,
            outbox,
            iceberg,
            forward_out,
            suppressed,
            catalog: r.catalog.into_inner(),
            registry: r.registry,
        }))
    }

    /// The README's metric table (markdown), from the catalog.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
        for m in &self.catalog {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                m.name,
                m.kind,
                m.labels.join(", "),
                m.help
            ));
        }
        out
    }

    /// The value of the series `name` with `labels` (a counter, a gauge, or
    /// a histogram's count); 0 when it does not exist. For tests.
    #[cfg(test)]
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let families = self.registry.gather();
        let Some(family) = families.iter().find(|f| f.name() == name) else {
            return 0.0;
        };
        family
            .get_metric()
            .iter()
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map_or(0.0, |m| match family.get_field_type() {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                _ => m.get_histogram().get_sample_count() as f64,
            })
    }

    /// Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    /// Every `allow("kind")`, `allow_per_minute("kind")` and
    /// `Activity::new(kind, …)` in the source is in [`super::LOG_KINDS`].
    #[test]
    fn every_warning_kind_is_listed() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for call in [".allow(\"", ".allow_per_minute(\"", "Activity::new(\""] {
                        for part in text.split(call).skip(1) {
                            if let Some(kind) = part.split('"').next() {
                                out.push(kind.to_string());
                            }
                        }
                    }
                }
            }
        }
        let mut kinds = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut kinds,
        );
        kinds.retain(|k| {
            !k.is_empty()
                && !k.starts_with("test")
                && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        for k in kinds {
            assert!(
                super::LOG_KINDS.contains(&k.as_str()),
                "{k} missing from LOG_KINDS"
            );
        }
    }
}
