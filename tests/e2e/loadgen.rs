//! `weir loadgen` against a real weir: its counts match weir's metrics, in
//! every mode, through the shared-key handshake.

use crate::common::*;

#[test]
fn loadgen_counts_match_weir_metrics() {
    let weir =
        Weir::start("[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"k\"\n");
    let mut sent = 0.0;
    for mode in ["packed", "forward", "message", "gzip", "zstd"] {
        let r = loadgen(
            &format!("127.0.0.1:{}", weir.port),
            &[
                "--mode",
                mode,
                "--connections",
                "2",
                "--requests",
                "5",
                "--events-per-request",
                "100",
                "--duration",
                "60s",
                "--shared-key",
                "k",
            ],
        );
        let want = if mode == "message" { 10 } else { 1000 };
        assert_eq!(r["events_acked"], want, "{mode}: {r}");
        assert_eq!(r["events_sent"], want, "{mode}: {r}");
        assert!(r["ack_latency_ms"]["p99"].as_f64().unwrap() > 0.0);
        sent += want as f64;
    }
    let m = scrape(weir.metrics_port);
    assert_eq!(metric(&m, "weir_forward_events_total", &[]), sent);
    assert_eq!(
        metric(
            &m,
            "weir_forward_events_total",
            &[("mode", "compressed_packed_forward")]
        ),
        2000.0
    );
    assert_eq!(metric(&m, "weir_forward_acks_total", &[]), 50.0);
}
