//! Delivered files are retained for restore (`outbox.retain`), moved out of
//! the outbox with their manifests, byte-identical to what the sinks got;
//! past `outbox.retain_bytes` the oldest go first and the metrics say so.

use std::time::Duration;

use crate::common::*;

#[test]
fn delivered_files_are_retained_within_their_byte_budget() {
    let budget = 4096u64;
    let weir = Weir::start(&format!(
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\n[outbox]\nretain = \"7d\"\nretain_bytes = \"{budget}B\"\n"
    ));
    let t = now_secs();
    for tag in ["keep.a", "keep.b", "keep.c"] {
        let events: Vec<(i64, String)> = (0..20).map(|i| (t, format!("{tag}-{i}"))).collect();
        let mut s = connect(weir.port).unwrap();
        send_acked(&mut s, &forward_request(tag, &events, Some(tag), 50), tag).unwrap();
    }
    let ok = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_outbox_retained_files", &[])
            + metric(&m, "weir_outbox_retained_removed_total", &[])
            == 3.0
    });
    assert!(
        ok,
        "three files delivered and retained or removed\n{}",
        weir.log()
    );
    let m = scrape(weir.metrics_port);
    let bytes = metric(&m, "weir_outbox_retained_bytes", &[]);
    let files = metric(&m, "weir_outbox_retained_files", &[]);
    assert!(
        bytes <= budget as f64,
        "{bytes} retained bytes over {budget}"
    );
    assert!(
        metric(&m, "weir_outbox_retained_removed_total", &[]) >= 1.0,
        "three files of a few KiB cannot all fit in 4 KiB"
    );
    assert_eq!(output_files_count(&weir), 3, "every file delivered");
    // What is retained is what the sink got, with its manifest, and no
    // longer in the outbox.
    let dir = weir.data_dir().join("retained");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let id = m["id"].as_str().unwrap();
            let key = m["keys"]["local"].as_str().unwrap();
            let retained = std::fs::read(dir.join(format!("{id}.parquet"))).unwrap();
            let delivered = std::fs::read(weir.out_dir().join(key)).unwrap();
            assert!(retained == delivered, "{key}: retained copy differs");
            assert!(!weir
                .data_dir()
                .join("outbox")
                .join(format!("{id}.parquet"))
                .exists());
            seen += 1;
        }
    }
    assert_eq!(seen as f64, files);
    if files > 0.0 {
        assert!(metric(&m, "weir_outbox_retained_oldest_period_seconds", &[]) > 0.0);
    }
}

fn output_files_count(weir: &Weir) -> usize {
    weir.output_files()
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .count()
}
