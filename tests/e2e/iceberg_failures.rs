//! The Iceberg sink when things go wrong: refused credentials, a catalog
//! that is down (and a kill -9 while its commit is being retried), a table
//! someone else dropped, and `weir redeliver` into a table.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::postgres::Postgres;

fn read_count(uri: &str, table: &str) -> (u64, u64) {
    let out = run_ok(
        Command::new(python())
            .arg(support("iceberg_read.py"))
            .args([uri, "file:///", &format!("weir.{table}")]),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["rows"].as_u64().unwrap(),
        v["distinct_ids"].as_u64().unwrap(),
    )
}

fn send_n(port: u16, tag: &str, prefix: &str, n: usize) -> usize {
    let mut s = connect(port).unwrap();
    let t = now_secs();
    let ev: Vec<(i64, String)> = (0..n).map(|i| (t, format!("{prefix}-{i}"))).collect();
    send_acked(&mut s, &forward_request(tag, &ev, Some(prefix), 10), prefix).unwrap();
    n
}

fn m(weir: &Weir, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&scrape(weir.metrics_port), name, labels)
}

fn wait_all_committed(weir: &Weir) {
    let ok = wait_until(Duration::from_secs(180), || {
        let s = scrape(weir.metrics_port);
        metric(&s, "weir_roll_open_files", &[]) == 0.0
            && metric(&s, "weir_outbox_files", &[]) == 0.0
            && metric(&s, "weir_iceberg_waiting_files", &[]) == 0.0
    });
    assert!(ok, "not all committed\n{}", weir.log());
}

/// Refused credentials are counted as such and retried while the other
/// sink goes on and /readyz (still ready) names the failing sink; then the
/// catalog goes down, the node is killed -9 while its commit is retried,
/// and once the catalog is back every event is in the table exactly once.
#[test]
fn refused_credentials_and_a_catalog_that_is_down_lose_nothing_and_double_nothing() {
    let pg = Postgres::start();
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let sink = |password: &str| {
        format!(
            "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncatalog_uri = \"postgres://weir:{password}@127.0.0.1:{}/iceberg\"\ncommit_interval = \"1s\"\n",
            wh.display(),
            pg.port
        )
    };
    let mut weir = Weir::create_full("", "backpressure_grace = \"2s\"\n", &sink("wrong"));
    weir.spawn();
    let mut sent = send_n(weir.port, "auth.x", "a", 100);
    let refused = wait_until(Duration::from_secs(150), || {
        m(&weir, "weir_sink_auth_failures_total", &[("sink", "lake")]) >= 1.0
    });
    assert!(refused, "refused credentials not counted\n{}", weir.log());
    assert!(
        m(
            &weir,
            "weir_iceberg_commit_retries_total",
            &[("sink", "lake")]
        ) >= 1.0
    );
    // The local sink has the file meanwhile.
    let other = wait_until(Duration::from_secs(30), || !weir.output_files().is_empty());
    assert!(other, "the other sink waited for the table\n{}", weir.log());
    let said = wait_until(Duration::from_secs(30), || {
        http_get(weir.metrics_port, "/readyz").is_ok_and(|(code, body)| {
            code == 200 && body.contains("warning: sink lake: commits failing")
        })
    });
    assert!(said, "{:?}", http_get(weir.metrics_port, "/readyz"));
    assert!(weir.is_running(), "{}", weir.log());

    // The right password, but the catalog is down: the start waits, then
    // takes traffic; commits are retried; kill -9 in the middle.
    weir.kill9();
    let cfg = std::fs::read_to_string(&weir.config_path).unwrap();
    std::fs::write(&weir.config_path, cfg.replace("weir:wrong@", "weir:weir@")).unwrap();
    pg.down();
    weir.spawn();
    sent += send_n(weir.port, "auth.x", "b", 100);
    let retried = wait_until(Duration::from_secs(150), || {
        m(
            &weir,
            "weir_iceberg_commit_retries_total",
            &[("sink", "lake")],
        ) >= 1.0
    });
    assert!(retried, "{}", weir.log());
    weir.kill9();
    pg.up();
    weir.spawn();
    wait_all_committed(&weir);
    let uri = pg.sqlalchemy_uri();
    assert_eq!(
        read_count(&uri, "logs"),
        (sent as u64, sent as u64),
        "{}",
        weir.log()
    );
}

/// A table someone drops is not re-created over: its files wait, the
/// metric and the log say so, the node keeps running. Removing the sink's
/// memory of the table lets weir create a new one, which gets the waiting
/// files once.
#[test]
fn a_dropped_table_is_refused_not_recreated() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let mut weir = Weir::start(&format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
        wh.display()
    ));
    let uri = format!("sqlite:///{}", wh.join("catalog.db").display());
    let first = send_n(weir.port, "drop.x", "a", 50);
    wait_all_committed(&weir);
    assert_eq!(read_count(&uri, "logs"), (first as u64, first as u64));
    // Someone drops the table.
    run_ok(Command::new(python()).args([
        "-c",
        &format!(
            "from pyiceberg.catalog.sql import SqlCatalog; SqlCatalog('weir', uri='{uri}').drop_table('weir.logs')"
        ),
    ]));
    let second = send_n(weir.port, "drop.x", "b", 50);
    let refused = wait_until(Duration::from_secs(150), || {
        m(
            &weir,
            "weir_iceberg_table_refused",
            &[("sink", "lake"), ("table", "logs")],
        ) == 1.0
    });
    assert!(refused, "{}", weir.log());
    assert!(weir.log().contains("was dropped"), "{}", weir.log());
    assert!(weir.is_running());
    let exists = run_ok(Command::new(python()).args([
        "-c",
        &format!(
            "from pyiceberg.catalog.sql import SqlCatalog; print(SqlCatalog('weir', uri='{uri}').table_exists('weir.logs'))"
        ),
    ]));
    assert_eq!(
        String::from_utf8_lossy(&exists.stdout).trim(),
        "False",
        "re-created over someone's drop"
    );
    assert!(m(&weir, "weir_iceberg_waiting_files", &[("sink", "lake")]) >= 1.0);
    // The operator lets weir make a new table.
    weir.kill9();
    std::fs::remove_file(weir.data_dir().join("iceberg/lake/logs.uuid")).unwrap();
    weir.spawn();
    wait_all_committed(&weir);
    assert_eq!(read_count(&uri, "logs"), (second as u64, second as u64));
    assert_eq!(
        m(
            &weir,
            "weir_iceberg_table_refused",
            &[("sink", "lake"), ("table", "logs")]
        ),
        0.0
    );
}

/// `weir redeliver` into a table adds only the files it lacks: again into
/// the same table adds nothing; into a table added later (a second Iceberg
/// sink) every retained file, once, however often it runs.
#[test]
fn redeliver_into_a_table_adds_only_what_it_lacks() {
    let lake = tempfile::tempdir().unwrap();
    let (wh, wh2) = (lake.path().join("wh"), lake.path().join("wh2"));
    let mut weir = Weir::start(&format!(
        "[outbox]\nretain = \"7d\"\n[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
        wh.display()
    ));
    let from = chrono::DateTime::from_timestamp(now_secs() / 3600 * 3600 - 3600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H")
        .to_string();
    let sent = send_n(weir.port, "re.x", "a", 80) + send_n(weir.port, "re.y", "b", 40);
    wait_all_committed(&weir);
    let uri = format!("sqlite:///{}", wh.join("catalog.db").display());
    assert_eq!(read_count(&uri, "logs"), (sent as u64, sent as u64));
    let redeliver = |weir: &Weir, sink: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["redeliver", "-c"])
            .arg(&weir.config_path)
            .args(["--sink", sink, "--from", &from])
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            weir.log()
        );
    };
    redeliver(&weir, "lake");
    assert_eq!(
        read_count(&uri, "logs"),
        (sent as u64, sent as u64),
        "redeliver doubled rows"
    );
    // A second table, added later, backfilled (live node), then again.
    weir.kill9();
    let cfg = std::fs::read_to_string(&weir.config_path).unwrap();
    std::fs::write(
        &weir.config_path,
        format!(
            "{cfg}[sinks.lake2]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
            wh2.display()
        ),
    )
    .unwrap();
    weir.spawn();
    redeliver(&weir, "lake2");
    let uri2 = format!("sqlite:///{}", wh2.join("catalog.db").display());
    assert_eq!(read_count(&uri2, "logs"), (sent as u64, sent as u64));
    weir.kill9();
    // And from the stopped node.
    redeliver(&weir, "lake2");
    assert_eq!(read_count(&uri2, "logs"), (sent as u64, sent as u64));
}
