//! `layout = "hive"`: a sink's root is one table for Spark, Hive and Athena
//! partition projection (`tag=…/dt=…/hour=…/minute=…`). Read by Spark
//! (pyspark, Debian's JRE) from the folder weir wrote.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

#[test]
fn spark_reads_a_hive_layout_sink_root_as_one_table() {
    let lake = tempfile::tempdir().unwrap();
    let root = lake.path().join("hive");
    let weir = Weir::start(&format!(
        "[sinks.hive]\ntype = \"local\"\npath = \"{}\"\nlayout = \"hive\"\n",
        root.display()
    ));
    let t = now_secs();
    let mut s = connect(weir.port).unwrap();
    let mut sent = 0;
    for (i, tag) in ["app.web", "app.api", "_odd tag"].iter().enumerate() {
        let ev: Vec<(i64, String)> = (0..100).map(|k| (t, format!("{i}-{k}"))).collect();
        let chunk = format!("c{i}");
        send_acked(&mut s, &forward_request(tag, &ev, Some(&chunk), 10), &chunk).unwrap();
        sent += ev.len();
    }
    let ok = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_outbox_files", &[]) == 0.0 && list_files(&root).len() == 3
    });
    assert!(ok, "{:?}\n{}", list_files(&root), weir.log());
    for f in list_files(&root) {
        assert!(f.starts_with("tag="), "{f}");
        assert!(
            f.contains("/dt=") && f.contains("/hour=") && f.contains("/minute="),
            "{f}"
        );
    }
    let out = run_ok(
        Command::new(python())
            .arg(support("spark_read.py"))
            .arg(&root),
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["rows"], sent as u64, "{v}");
    assert_eq!(v["distinct_ids"], sent as u64);
    assert_eq!(
        v["per_tag"]["_odd tag"], 100,
        "tags come back unescaped: {v}"
    );
    let schema = v["schema"].as_str().unwrap();
    for col in [
        "time:timestamp",
        "tag:string",
        "record:string",
        "dt:date",
        "hour:int",
        "minute:int",
    ] {
        assert!(schema.contains(col), "{schema}");
    }
}

/// What readers see of weir's Parquet: `record` has the JSON logical type,
/// and a float column's statistics are there for pyarrow and DuckDB (the
/// column order parquet-rs 60 wrote made both ignore them).
#[test]
fn record_is_json_and_float_statistics_are_read() {
    let weir = Weir::start(
        "[[route]]\nname = \"m\"\nmatch = \"**\"\nsinks = [\"local\"]\ncolumns = { latency = \"float64\", status = \"int32\" }\n",
    );
    let mut s = connect(weir.port).unwrap();
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    mp_str(&mut b, "m.x");
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    for (i, lat) in [0.5f64, 2.25, -1.0].iter().enumerate() {
        rmp::encode::write_array_len(&mut b, 2).unwrap();
        rmp::encode::write_uint(&mut b, now_secs() as u64).unwrap();
        rmp::encode::write_map_len(&mut b, 2).unwrap();
        mp_str(&mut b, "latency");
        rmp::encode::write_f64(&mut b, *lat).unwrap();
        mp_str(&mut b, "status");
        rmp::encode::write_uint(&mut b, 200 + i as u64).unwrap();
    }
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    mp_str(&mut b, "chunk");
    mp_str(&mut b, "f");
    send_acked(&mut s, &b, "f").unwrap();
    let ok = wait_until(Duration::from_secs(150), || !weir.output_files().is_empty());
    assert!(ok, "{}", weir.log());
    // Times in log lines are RFC 3339, not seconds since the epoch.
    let log = weir.log();
    let finished = log
        .lines()
        .find(|l| l.contains("finished file"))
        .unwrap_or_default();
    assert!(
        finished.contains(&format!("period={}", chrono::Utc::now().format("%Y-"))),
        "{finished}"
    );
    let file = weir.out_dir().join(&weir.output_files()[0]);
    let out = run_ok(
        Command::new(python())
            .arg(support("parquet_meta.py"))
            .arg(&file),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["record"]["logical"], "JSON", "{v}");
    assert_eq!(v["latency"]["pyarrow_min_max"], true, "{v}");
    assert_eq!(v["latency"]["duckdb_min"], "-1.0", "{v}");
    assert_eq!(v["latency"]["duckdb_max"], "2.25", "{v}");
    assert_eq!(v["status"]["duckdb_max"], "202", "{v}");
}
