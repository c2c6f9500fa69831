//! The Iceberg sink: one table per route for the whole tier, committed
//! exactly once by every node. Read back with pyiceberg and DuckDB's iceberg
//! extension; catalogs are SQLite (the embedded default) and a real
//! PostgreSQL; warehouses a local folder and s3s-fs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::postgres::Postgres;
use crate::servers::S3Server;

/// pyiceberg's (SQLAlchemy's) URI of a SQLite catalog file.
fn sqlite_uri(db: &Path) -> String {
    format!("sqlite:///{}", db.display())
}

/// Reads `table` (namespace `weir`) with tests/support/iceberg_read.py.
fn read_table(uri: &str, warehouse: &str, table: &str, extra: &[&str]) -> Value {
    let out = run_ok(
        Command::new(python())
            .arg(support("iceberg_read.py"))
            .args([uri, warehouse, &format!("weir.{table}")])
            .args(extra),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn committed(weir: &Weir) -> f64 {
    metric(
        &scrape(weir.metrics_port),
        "weir_iceberg_files_committed_total",
        &[],
    )
}

/// Waits until the node has nothing left to finish, deliver or commit.
fn wait_all_committed(weir: &Weir, within: Duration) {
    let ok = wait_until(within, || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_open_files", &[]) == 0.0
            && metric(&m, "weir_outbox_files", &[]) == 0.0
            && metric(&m, "weir_iceberg_waiting_files", &[]) == 0.0
    });
    assert!(ok, "files never all committed\n{}", weir.log());
}

/// Sends `n` events of `tag` in requests of 50 with chunk ids, each acked;
/// returns their ids. `fields` adds declared-column values by event number.
fn send(
    port: u16,
    tag: &str,
    prefix: &str,
    n: usize,
    fields: &dyn Fn(usize) -> Vec<(&'static str, Value)>,
) -> Vec<String> {
    send_at(port, tag, prefix, n, now_secs(), fields)
}

/// [`send`] with every event dated `t`.
fn send_at(
    port: u16,
    tag: &str,
    prefix: &str,
    n: usize,
    t: i64,
    fields: &dyn Fn(usize) -> Vec<(&'static str, Value)>,
) -> Vec<String> {
    let mut s = connect(port).unwrap();
    let mut ids = Vec::new();
    for start in (0..n).step_by(50) {
        let end = (start + 50).min(n);
        let chunk = format!("{prefix}-{start}");
        let mut b = Vec::new();
        rmp::encode::write_array_len(&mut b, 3).unwrap();
        mp_str(&mut b, tag);
        rmp::encode::write_array_len(&mut b, (end - start) as u32).unwrap();
        for i in start..end {
            let id = format!("{prefix}-{i}");
            let mut map = serde_json::Map::new();
            map.insert("id".into(), Value::String(id.clone()));
            for (k, v) in fields(i) {
                map.insert(k.into(), v);
            }
            rmp::encode::write_array_len(&mut b, 2).unwrap();
            rmp::encode::write_uint(&mut b, t as u64).unwrap();
            rmp_serde::encode::write_named(&mut b, &Value::Object(map)).unwrap();
            ids.push(id);
        }
        rmp::encode::write_map_len(&mut b, 1).unwrap();
        mp_str(&mut b, "chunk");
        mp_str(&mut b, &chunk);
        send_acked(&mut s, &b, &chunk).unwrap();
    }
    ids
}

fn no_fields(_: usize) -> Vec<(&'static str, Value)> {
    Vec::new()
}

/// A config naming only the sink type and a warehouse path: SQLite catalog
/// in the warehouse, nothing to run. Every acked event is in table
/// `weir.logs` once, for pyiceberg and DuckDB alike; a second commit makes a
/// second snapshot, and time travel to the first shows only what it held.
#[test]
fn the_embedded_default_table_holds_each_event_once_and_travels_in_time() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let weir = Weir::start(&format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\n",
        wh.display()
    ));
    let first = send(weir.port, "app.web", "a", 500, &no_fields);
    let ok = wait_until(Duration::from_secs(150), || committed(&weir) >= 1.0);
    assert!(ok, "nothing committed\n{}", weir.log());
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let warehouse = format!("file://{}", wh.display());
    let t1 = read_table(&uri, &warehouse, "logs", &["--duckdb"]);
    let snap1 = t1["current"].as_i64().unwrap();
    assert_eq!(t1["rows"], 500, "{t1}");
    assert_eq!(t1["distinct_ids"], 500);
    assert_eq!(t1["duckdb_rows"], 500, "{t1}");
    assert_eq!(t1["duckdb_distinct_ids"], 500);

    let second = send(weir.port, "app.api", "b", 300, &no_fields);
    let ok = wait_until(Duration::from_secs(150), || committed(&weir) >= 2.0);
    assert!(ok, "second file never committed\n{}", weir.log());
    wait_all_committed(&weir, Duration::from_secs(60));
    let t2 = read_table(&uri, &warehouse, "logs", &["--duckdb"]);
    assert_eq!(t2["rows"], (first.len() + second.len()) as u64, "{t2}");
    assert_eq!(t2["distinct_ids"], 800);
    assert_eq!(t2["duckdb_rows"], 800);
    // Time travel: the first snapshot holds only the first file.
    let back = read_table(
        &uri,
        &warehouse,
        "logs",
        &["--duckdb", "--snapshot", &snap1.to_string()],
    );
    assert_eq!(back["rows"], 500, "{back}");
    assert_eq!(back["duckdb_rows"], 500, "{back}");
    // The table's shape: columns, partitions by tag and period hour, a
    // name mapping for files without field ids, commits named by node.
    let names: Vec<&str> = t2["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["time", "tag", "period", "record"], "{t2}");
    let spec: Vec<&str> = t2["spec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(spec, ["tag", "period_hour"]);
    assert!(t2["properties"]["schema.name-mapping.default"]
        .as_str()
        .unwrap()
        .contains("\"record\""));
    let ours = t2["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["summary"]["weir.node"] == "n1")
        .count();
    assert_eq!(ours, 2, "one snapshot per commit: {t2}");
    for f in t2["files"].as_array().unwrap() {
        assert!(
            f["path"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{warehouse}/weir/logs/data/tag=")),
            "{f}"
        );
    }
}

/// Declared columns keep their types in the table; a column added to the
/// route later becomes an optional column at the next start (older rows
/// read null); changing a column's type is refused by `weir check` and at
/// start, naming the route and the column.
#[test]
fn declared_types_schema_evolution_and_a_refused_type_change() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let sink = format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
        wh.display()
    );
    let route = |cols: &str| {
        format!("[[route]]\nname = \"app\"\nmatch = \"app.**\"\nsinks = [\"lake\"]\ncolumns = {{ {cols} }}\n")
    };
    let mut weir = Weir::create_full(
        "",
        "",
        &format!(
            "{sink}{}",
            route("status = \"int32\", latency = \"float64\", ok = \"bool\"")
        ),
    );
    weir.spawn();
    let typed = |i: usize| {
        vec![
            ("status", Value::from(200 + (i % 3) as i64)),
            ("latency", Value::from(i as f64 / 10.0)),
            ("ok", Value::from(i.is_multiple_of(2))),
        ]
    };
    let a = send(weir.port, "app.web", "a", 100, &typed);
    wait_all_committed(&weir, Duration::from_secs(150));
    assert_eq!(weir.terminate().code(), Some(0), "{}", weir.log());
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let warehouse = format!("file://{}", wh.display());
    let t = read_table(&uri, &warehouse, "app", &["--rows"]);
    assert_eq!(t["rows"], a.len() as u64, "{t}");
    let ty = |t: &Value, name: &str| {
        t["schema"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap().to_string())
    };
    assert_eq!(ty(&t, "status").as_deref(), Some("int"));
    assert_eq!(ty(&t, "latency").as_deref(), Some("double"));
    assert_eq!(ty(&t, "ok").as_deref(), Some("boolean"));
    let row = t["row_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "a-7")
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["status"].clone(),
            row["latency"].clone(),
            row["ok"].clone()
        ),
        (Value::from(201), Value::from(0.7), Value::from(false))
    );

    // A new declared column: added at start, optional.
    let cfg = std::fs::read_to_string(&weir.config_path).unwrap();
    let evolved = cfg.replace("ok = \"bool\"", "ok = \"bool\", path = \"string\"");
    std::fs::write(&weir.config_path, &evolved).unwrap();
    weir.spawn();
    let b = send(weir.port, "app.web", "b", 100, &|i| {
        let mut v = typed(i);
        v.push(("path", Value::from(format!("/p/{i}"))));
        v
    });
    wait_all_committed(&weir, Duration::from_secs(150));
    assert_eq!(weir.terminate().code(), Some(0), "{}", weir.log());
    let t = read_table(&uri, &warehouse, "app", &["--rows", "--duckdb"]);
    assert_eq!(t["rows"], (a.len() + b.len()) as u64, "{t}");
    assert_eq!(t["duckdb_rows"], 200);
    assert_eq!(ty(&t, "path").as_deref(), Some("string"));
    let path = t["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "path")
        .unwrap()
        .clone();
    assert_eq!(path["required"], false);
    let rows = t["row_list"].as_array().unwrap();
    let old = rows.iter().find(|r| r["id"] == "a-7").unwrap();
    assert_eq!(
        old["path"],
        Value::Null,
        "older files read the new column as null"
    );
    let new = rows.iter().find(|r| r["id"] == "b-7").unwrap();
    assert_eq!(new["path"], "/p/7");

    // A changed type: refused by `weir check` and at start.
    let changed = evolved.replace("status = \"int32\"", "status = \"string\"");
    std::fs::write(&weir.config_path, &changed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "-c"])
        .arg(&weir.config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "weir check accepted a type change");
    assert!(
        err.contains("route app")
            && err.contains("`status`")
            && err.contains("changing a column's type is refused"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "-c"])
        .arg(&weir.config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("route app") && err.contains("`status`"),
        "{err}"
    );
    // A removed column: refused by `weir check` and at start, route and
    // column named; the table is left as it was.
    let removed = evolved.replace(", path = \"string\"", "");
    std::fs::write(&weir.config_path, &removed).unwrap();
    for cmd in ["check", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([cmd, "-c"])
            .arg(&weir.config_path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "weir {cmd} accepted a removed column"
        );
        assert!(
            err.contains("route app")
                && err.contains("`path`")
                && err.contains("removing a column is refused"),
            "weir {cmd}: {err}"
        );
    }
    // Dropped from the table with an engine first, the removal starts, and
    // the rows sent since read no `path`.
    run_ok(
        Command::new(python())
            .arg(support("iceberg_alter.py"))
            .args([uri.as_str(), warehouse.as_str(), "weir.app", "drop", "path"]),
    );
    weir.spawn();
    let c = send(weir.port, "app.web", "c", 50, &typed);
    wait_all_committed(&weir, Duration::from_secs(150));
    assert_eq!(weir.terminate().code(), Some(0), "{}", weir.log());
    let t = read_table(&uri, &warehouse, "app", &["--rows"]);
    assert_eq!(t["rows"], (a.len() + b.len() + c.len()) as u64, "{t}");
    assert_eq!(ty(&t, "path"), None, "weir did not add the column back");
    let rows = t["row_list"].as_array().unwrap();
    assert_eq!(
        rows.iter().find(|r| r["id"] == "c-7").unwrap()["status"],
        Value::from(201)
    );
}

/// A crash between commit and the outbox's mark, and one between upload
/// and commit (failpoints abort the process there, as kill -9 would): after
/// a restart every acked event is in the table exactly once.
#[test]
fn a_crash_on_either_side_of_a_commit_stores_nothing_twice() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let mut weir = Weir::create_full(
        "",
        "",
        &format!(
            "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
            wh.display()
        ),
    );
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let warehouse = format!("file://{}", wh.display());
    let mut sent = Vec::new();
    for (phase, point) in ["iceberg.after_commit", "iceberg.before_commit"]
        .iter()
        .enumerate()
    {
        weir.env = vec![("WEIR_FAILPOINTS".into(), point.to_string())];
        weir.spawn();
        sent.extend(send(
            weir.port,
            "crash.x",
            &format!("p{phase}"),
            200,
            &no_fields,
        ));
        assert!(
            weir.wait_exit(Duration::from_secs(150)),
            "the failpoint {point} was never reached\n{}",
            weir.log()
        );
        assert!(weir.log().contains(&format!("failpoint {point} reached")));
        if phase == 0 {
            // Before the restart another writer merges the manifests (as
            // Spark's and Trino's appends do): the restart must still find
            // its earlier commit.
            let out = run_ok(
                Command::new(python())
                    .arg(support("iceberg_merge.py"))
                    .args([&uri, &warehouse, "weir.logs"]),
            );
            let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(merged["manifests_after"], 1, "{merged}");
        }
        weir.env.clear();
        weir.spawn();
        wait_all_committed(&weir, Duration::from_secs(60));
        let t = read_table(&uri, &warehouse, "logs", &["--duckdb"]);
        assert_eq!(t["rows"], sent.len() as u64, "{point}: {t}");
        assert_eq!(t["distinct_ids"], sent.len() as u64, "{point}");
        assert_eq!(t["duckdb_rows"], sent.len() as u64, "{point}");
        assert!(
            weir.log().contains("already in the table") || phase == 1,
            "after a crash past the commit the restart must find the file there\n{}",
            weir.log()
        );
        weir.kill9();
    }
}

/// A tier: three nodes share a PostgreSQL catalog and an S3 warehouse;
/// clients spread over them; one node is killed -9 again and again while
/// commits happen. Every acked event is in the table exactly once, no
/// commit is lost, and the other two kept committing meanwhile.
#[test]
fn a_tier_of_three_commits_every_event_once_while_one_node_is_killed_again_and_again() {
    let pg = Postgres::start();
    let s3root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3root.path());
    let sink = format!(
        "[sinks.lake]\ntype = \"iceberg\"\ncatalog_uri = \"{}\"\ncommit_interval = \"2s\"\n\
         [sinks.lake.warehouse]\ntype = \"s3\"\nbucket = \"{}\"\nprefix = \"wh\"\nendpoint = \"{}\"\n\
         allow_http = true\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\
         [[route]]\nname = \"tier\"\nmatch = \"**\"\nsinks = [\"lake\"]\n",
        pg.uri(),
        S3Server::BUCKET,
        s3.endpoint()
    );
    let mut nodes: Vec<Weir> = (1..=3)
        .map(|i| {
            let mut w = Weir::create_full("", "", &sink);
            let cfg = std::fs::read_to_string(&w.config_path).unwrap();
            std::fs::write(
                &w.config_path,
                cfg.replace("node_id = \"n1\"", &format!("node_id = \"n{i}\"")),
            )
            .unwrap();
            w.spawn();
            w
        })
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|w| w.port).collect();
    // One client per node, resending until acked (a killed node's client
    // waits for it to come back).
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(k, &port)| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut conn: Option<std::net::TcpStream> = None;
                while !stop.load(Ordering::Relaxed) {
                    let t = now_secs();
                    let ev: Vec<(i64, String)> =
                        (0..20).map(|i| (t, format!("c{k}-{n}-{i}"))).collect();
                    let chunk = format!("c{k}-{n}");
                    let req = forward_request(&format!("tier.c{k}"), &ev, Some(&chunk), 20);
                    loop {
                        if conn.is_none() {
                            conn = connect(port).ok();
                            if conn.is_none() {
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        }
                        match send_acked(conn.as_mut().unwrap(), &req, &chunk) {
                            Ok(()) => break,
                            Err(_) => conn = None,
                        }
                    }
                    acked
                        .lock()
                        .unwrap()
                        .extend(ev.into_iter().map(|(_, id)| id));
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    // Kill n2 every few seconds for about two periods, restarting it.
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(130) {
        std::thread::sleep(Duration::from_millis(4000 + (kills % 3) * 1500));
        nodes[1].kill9();
        kills += 1;
        std::thread::sleep(Duration::from_millis(500));
        nodes[1].spawn();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    for w in &nodes {
        wait_all_committed(w, Duration::from_secs(180));
    }
    let acked = acked.lock().unwrap().clone();
    let t = read_table(
        &pg.sqlalchemy_uri(),
        &format!("s3://{}/wh", S3Server::BUCKET),
        "tier",
        &["--s3", &s3.endpoint(), "--duckdb"],
    );
    println!(
        "tier: {} events acked, {kills} kills of n2, {} snapshots",
        acked.len(),
        t["snapshots"].as_array().unwrap().len()
    );
    assert_eq!(t["rows"], acked.len() as u64, "every acked event once");
    assert_eq!(t["distinct_ids"], acked.len() as u64);
    assert_eq!(t["duckdb_rows"], acked.len() as u64);
    // n1 and n3 kept committing while n2 was killed: no gap of more than
    // 30 s between their commits in the kill window.
    for node in ["n1", "n3"] {
        let mut at: Vec<i64> = t["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["summary"]["weir.node"] == node)
            .map(|s| s["timestamp_ms"].as_i64().unwrap())
            .collect();
        at.sort_unstable();
        assert!(at.len() >= 2, "{node} committed {} times", at.len());
        let gap = at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(gap < 90_000, "{node} stalled {gap} ms between commits");
    }
    let nodes_seen: BTreeSet<String> = t["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["summary"]["weir.node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        nodes_seen,
        ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect()
    );
}

/// Every kind of file goes into the table: the period's file, a `late`
/// file (an event for a period already committed), an `outside` file
/// (events dated three days back, filed under the hour they arrived in),
/// and a `part` file (finished early by a drain). The outside file's
/// partition is its arrival hour; a filter on its events' own time still
/// finds them (engines prune by the file's time bounds, not its partition).
#[test]
fn late_outside_and_part_files_are_committed_and_found_by_time() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let mut weir = Weir::start(&format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n",
        wh.display()
    ));
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let warehouse = format!("file://{}", wh.display());
    let now = now_secs();
    let mut all = send_at(weir.port, "k.main", "m", 100, now, &no_fields);
    let long_ago = now - 3 * 86_400;
    all.extend(send_at(weir.port, "k.far", "o", 40, long_ago, &no_fields));
    let ok = wait_until(Duration::from_secs(150), || committed(&weir) >= 2.0);
    assert!(ok, "{}", weir.log());
    // The period's file is committed: an event for it now is late.
    all.extend(send_at(weir.port, "k.main", "l", 10, now, &no_fields));
    let ok = wait_until(Duration::from_secs(150), || committed(&weir) >= 3.0);
    assert!(ok, "the late file never committed\n{}", weir.log());
    // A drain finishes the open period's file early, as a part.
    all.extend(send(weir.port, "k.part", "p", 30, &no_fields));
    std::fs::write(weir.data_dir().join("drain-on-exit"), b"").unwrap();
    weir.sigterm();
    assert!(weir.wait_exit(Duration::from_secs(120)), "{}", weir.log());
    let day = chrono::DateTime::from_timestamp(long_ago / 86_400 * 86_400, 0).unwrap();
    let filter = format!(
        "time >= '{}' and time < '{}'",
        day.to_rfc3339(),
        (day + chrono::Duration::days(1)).to_rfc3339()
    );
    let t = read_table(&uri, &warehouse, "logs", &["--duckdb", "--filter", &filter]);
    assert_eq!(t["rows"], all.len() as u64, "{t}");
    assert_eq!(t["distinct_ids"], all.len() as u64);
    assert_eq!(t["duckdb_rows"], all.len() as u64);
    let files = t["files"].as_array().unwrap();
    let find = |kind: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().unwrap().contains(kind))
            .unwrap_or_else(|| panic!("no {kind} file: {t}"))
            .clone()
    };
    let outside = find(".outside-");
    find(".late-");
    find(".part-");
    // Partitioned by the hour it arrived in (hours since the epoch).
    let arrival_hour = (now / 3600).to_string();
    assert_eq!(outside["partition"][1], arrival_hour.as_str(), "{outside}");
    assert_eq!(
        t["filtered_rows"], 40,
        "a time filter found the far-dated events: {t}"
    );
    assert_eq!(
        t["filtered_files"], 1,
        "and pruned every other file by its bounds"
    );
}

/// A route with one file per period for all its tags (`per_route`): its
/// table is partitioned by period only, files sit under no tag folder, and
/// every tag's events are in it. (Snapshot expiry is tested without a weir
/// process in src/sink/iceberg/tests.rs, where snapshots can be seconds old.)
#[test]
fn a_per_route_table_is_partitioned_by_period_only() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    // An hour's period and the default 1m commit interval: a drain must
    // commit at once, not at the interval.
    let mut weir = Weir::start(&format!(
        "[roll]\nperiod = \"1h\"\ngrace = \"1s\"\n\
         [sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\n\
         [[route]]\nname = \"pods\"\nmatch = \"**\"\nsinks = [\"lake\"]\nfiles = \"per_route\"\n",
        wh.display()
    ));
    let mut sent = 0;
    for (i, tag) in ["k8s.pod-a", "k8s.pod-b", "k8s.pod-c"].iter().enumerate() {
        sent += send(weir.port, tag, &format!("p{i}"), 30, &no_fields).len();
    }
    std::fs::write(weir.data_dir().join("drain-on-exit"), b"").unwrap();
    let started = Instant::now();
    let status = weir.terminate();
    assert!(status.success(), "the drain failed\n{}", weir.log());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the drain waited for the commit interval: {:?}",
        started.elapsed()
    );
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let t = read_table(
        &uri,
        &format!("file://{}", wh.display()),
        "pods",
        &["--duckdb"],
    );
    assert_eq!(t["rows"], sent as u64, "{t}");
    assert_eq!(t["duckdb_rows"], sent as u64);
    let spec: Vec<&str> = t["spec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(spec, ["period_hour"], "{t}");
    let files = t["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "one file for the route's tags: {t}");
    let path = files[0]["path"].as_str().unwrap();
    assert!(
        path.contains("/weir/pods/data/dt=") && path.contains(".part-") && !path.contains("tag="),
        "{path}"
    );
}

/// Another writer changes the table under running nodes: a promotion
/// Iceberg allows (int → long) is taken (commits go on, a restart too, with
/// bounds of the table's type); a declared column someone dropped is added
/// back with a warning; a partition spec over another column (hour of
/// `time` for hour of `period`) is refused: the node stays up, says so in
/// the metric and the log, and its files wait.
#[test]
fn another_writers_changes_are_taken_or_refused_without_stopping_the_node() {
    let lake = tempfile::tempdir().unwrap();
    let wh = lake.path().join("wh");
    let mut weir = Weir::start(&format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\ncommit_interval = \"1s\"\n\
         [[route]]\nname = \"app\"\nmatch = \"app.**\"\nsinks = [\"lake\"]\ncolumns = {{ status = \"int32\" }}\n",
        wh.display()
    ));
    let uri = sqlite_uri(&wh.join("catalog.db"));
    let warehouse = format!("file://{}", wh.display());
    let alter = |op: &[&str]| {
        run_ok(
            Command::new(python())
                .arg(support("iceberg_alter.py"))
                .args([uri.as_str(), warehouse.as_str(), "weir.app"])
                .args(op),
        );
    };
    let status = |i: usize| vec![("status", Value::from(200 + (i % 5) as i64))];
    let mut sent = send(weir.port, "app.web", "a", 50, &status);
    wait_all_committed(&weir, Duration::from_secs(150));

    alter(&["promote", "status"]);
    sent.extend(send(weir.port, "app.web", "b", 50, &status));
    wait_all_committed(&weir, Duration::from_secs(150));
    assert_eq!(weir.terminate().code(), Some(0), "{}", weir.log());
    weir.spawn();
    sent.extend(send(weir.port, "app.web", "c", 50, &status));
    wait_all_committed(&weir, Duration::from_secs(150));
    let t = read_table(&uri, &warehouse, "app", &["--rows", "--duckdb"]);
    assert_eq!(t["rows"], sent.len() as u64, "{t}");
    assert_eq!(t["duckdb_rows"], sent.len() as u64);
    let ty = t["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "status")
        .unwrap()["type"]
        .clone();
    assert_eq!(ty, "long", "the promotion stands");
    let rows = t["row_list"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["status"]
            .as_i64()
            .is_some_and(|s| (200..205).contains(&s))),
        "{t}"
    );

    alter(&["drop", "status"]);
    sent.extend(send(weir.port, "app.web", "d", 50, &status));
    wait_all_committed(&weir, Duration::from_secs(150));
    assert!(
        weir.log().contains("was dropped by someone else"),
        "{}",
        weir.log()
    );
    let t = read_table(&uri, &warehouse, "app", &[]);
    assert_eq!(t["rows"], sent.len() as u64, "{t}");
    assert!(
        !t["schema"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "status"),
        "a running node does not add back a column someone dropped: {t}"
    );

    alter(&["respec"]);
    send(weir.port, "app.web", "e", 50, &status);
    let refused = wait_until(Duration::from_secs(150), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_iceberg_table_refused",
            &[("sink", "lake"), ("table", "app")],
        ) == 1.0
    });
    assert!(refused, "{}", weir.log());
    assert!(weir.log().contains("partition spec"), "{}", weir.log());
    assert!(weir.is_running());
    let t = read_table(&uri, &warehouse, "app", &[]);
    assert_eq!(
        t["rows"],
        sent.len() as u64,
        "nothing written under the changed spec"
    );
}
