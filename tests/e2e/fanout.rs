//! Fan-out (invariant 6, sinks are independent): routes send files to a real
//! S3 server (s3s-fs, signature-checking) and to GCS through object_store's
//! real GCS client (against moto's XML endpoint; see servers.rs for what that
//! does not prove). Files are read back from the servers with pyarrow.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use crate::servers::*;

/// Sends `n` events for `tag` at event time `t`, each with a random `pad`
/// hex string of `pad` bytes (incompressible-ish), acked, 500 per request.
fn send(port: u16, tag: &str, n: usize, t: i64, pad: usize) -> Vec<String> {
    let mut s = connect(port).unwrap();
    let mut ids = Vec::new();
    let mut rng_state = (t as u64) ^ 0x9e37_79b9_7f4a_7c15 ^ (tag.len() as u64) << 32;
    let mut random_hex = |len: usize| {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            out.push_str(&format!("{rng_state:016x}"));
        }
        out.truncate(len);
        out
    };
    for (r, chunk) in (0..n).collect::<Vec<_>>().chunks(500).enumerate() {
        let mut b = Vec::new();
        rmp::encode::write_array_len(&mut b, 3).unwrap();
        mp_str(&mut b, tag);
        rmp::encode::write_array_len(&mut b, chunk.len() as u32).unwrap();
        for i in chunk {
            let id = format!("{tag}-{i}");
            b.push(0x92);
            b.extend([0xd7, 0x00]);
            b.extend((t as u32).to_be_bytes());
            b.extend(0u32.to_be_bytes());
            rmp::encode::write_map_len(&mut b, 3).unwrap();
            mp_str(&mut b, "id");
            mp_str(&mut b, &id);
            mp_str(&mut b, "n");
            rmp::encode::write_uint(&mut b, *i as u64).unwrap();
            mp_str(&mut b, "pad");
            mp_str(&mut b, &random_hex(pad));
            ids.push(id);
        }
        let c = format!("{tag}-r{r}");
        rmp::encode::write_map_len(&mut b, 1).unwrap();
        mp_str(&mut b, "chunk");
        mp_str(&mut b, &c);
        send_acked(&mut s, &b, &c).expect("acked");
    }
    ids
}

/// Waits until `files` Parquet files (Treasure Data parts not counted:
/// they close within seconds, long before a period's file) are finished
/// and every sink's outbox is empty.
fn wait_delivered(weir: &Weir, sinks: &[&str], files: f64) {
    let ok = wait_until(Duration::from_secs(180), || {
        let m = scrape(weir.metrics_port);
        let parquet = metric(&m, "weir_roll_files_finished_total", &[])
            - metric(&m, "weir_roll_files_finished_total", &[("kind", "td_part")]);
        sinks
            .iter()
            .all(|s| metric(&m, "weir_outbox_files", &[("sink", s)]) == 0.0)
            && parquet >= files
    });
    assert!(ok, "not delivered\n{}", weir.log());
}

fn ids_of(rows: &[Row], tag: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r.tag == tag)
        .map(|r| r.record["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn routes_deliver_to_s3_and_gcs_with_multipart_for_large_files() {
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3_root.path());
    let gcs = GcsServer::start();
    let td = TdServer::start();
    let extra = format!(
        "{}{}{}[[route]]\nname = \"common\"\nmatch = \"app.**\"\nsinks = [\"lake\", \"td\"]\ncolumns = {{ n = \"int64\" }}\n\
         [[route]]\nname = \"team\"\nmatch = \"dev.**\"\nprefix = \"team-a\"\nsinks = [\"sandbox\"]\n",
        s3.sink_toml("lake", "dwh"),
        gcs.sink_toml("sandbox", ""),
        td.sink_toml("td")
    );
    let weir = Weir::start(&extra);
    let t = now_secs();
    let web = send(weir.port, "app.web", 300, t, 20);
    // ~20 MB of record text: a Parquet file above the 8 MiB part size.
    let big = send(weir.port, "app.big", 20_000, t, 1000);
    let dev = send(weir.port, "dev.team", 100, t, 20);
    let other = send(weir.port, "other.x", 50, t, 20);
    wait_delivered(&weir, &["lake", "sandbox", "td"], 3.0);

    // Treasure Data got the common logs' records, and nothing else. Parts
    // close flush_interval after their first record, so the last one may
    // still be on its way when the Parquet files are delivered.
    let app: BTreeSet<String> = web.iter().chain(&big).cloned().collect();
    let td_records = || -> BTreeSet<String> {
        td.state()["records"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p["rows"].as_array().unwrap().clone())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    wait_until(Duration::from_secs(60), || td_records().len() >= app.len());
    let td_ids = td_records();
    let missing: Vec<_> = app.difference(&td_ids).take(5).collect();
    let extra: Vec<_> = td_ids.difference(&app).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "TD holds exactly the app.** records: {} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})\n{}",
        app.difference(&td_ids).count(),
        td_ids.difference(&app).count(),
        weir.log()
    );

    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_roll_unrouted_events_total", &[]),
        other.len() as f64
    );
    assert_eq!(
        metric(&m, "weir_sink_uploads_total", &[("sink", "local")]),
        0.0
    );

    let (objects, rows) = read_bucket(&s3.endpoint(), S3Server::BUCKET);
    let want: BTreeSet<String> = ["app.web", "app.big"]
        .iter()
        .map(|tag| format!("dwh/{}", minute_key(tag, t)))
        .collect();
    assert_eq!(
        objects.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "S3 keys"
    );
    let big_key = format!("dwh/{}", minute_key("app.big", t));
    assert!(
        objects[&big_key] > weir::sink::PART_BYTES as u64,
        "app.big is {} bytes: not above the part size, multipart not exercised",
        objects[&big_key]
    );
    assert_eq!(ids_of(&rows, "app.web"), web.iter().cloned().collect());
    assert_eq!(ids_of(&rows, "app.big"), big.iter().cloned().collect());
    assert!(
        rows.iter().all(|r| r.columns["n"].is_u64()),
        "declared column n"
    );

    let (objects, rows) = read_bucket(&gcs.endpoint(), GcsServer::BUCKET);
    assert_eq!(
        objects.keys().cloned().collect::<Vec<_>>(),
        vec![format!("team-a/{}", minute_key("dev.team", t))],
        "GCS keys: dev.** goes to the sandbox only"
    );
    assert_eq!(ids_of(&rows, "dev.team"), dev.into_iter().collect());
    assert!(
        weir.output_files().is_empty(),
        "nothing routed to the local sink"
    );
}

#[test]
fn an_s3_outage_does_not_hold_up_gcs_and_loses_nothing() {
    let s3_root = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(s3_root.path());
    let gcs = GcsServer::start();
    let td = TdServer::start();
    let extra = format!(
        // A tiny backlog limit: one undelivered file is over it.
        "{}{}{}[[route]]\nmatch = \"app.**\"\nsinks = [\"lake\", \"sandbox\", \"td\"]\n[outbox]\nmax_backlog_bytes = \"1KiB\"\n",
        s3.sink_toml("lake", ""),
        gcs.sink_toml("sandbox", ""),
        td.sink_toml("td")
    );
    let weir = Weir::start(&extra);
    let t = now_secs();
    let ids: BTreeSet<String> = send(weir.port, "app.both", 200, t, 50)
        .into_iter()
        .collect();
    s3.stop();
    // GCS gets the file while S3 is down and failing.
    let during = wait_until(Duration::from_secs(180), || {
        let m = scrape(weir.metrics_port);
        metric(
            &m,
            "weir_sink_uploads_total",
            &[("sink", "sandbox"), ("result", "ok")],
        ) == 1.0
            && metric(
                &m,
                "weir_sink_uploads_total",
                &[("sink", "lake"), ("result", "error")],
            ) >= 2.0
            && metric(&m, "weir_outbox_files", &[("sink", "lake")]) == 1.0
    });
    assert!(during, "GCS held up by the S3 outage\n{}", weir.log());
    let m = scrape(weir.metrics_port);
    assert!(metric(&m, "weir_outbox_bytes", &[("sink", "lake")]) > 0.0);
    assert_eq!(metric(&m, "weir_outbox_files", &[("sink", "sandbox")]), 0.0);
    assert!(metric(&m, "weir_sink_retries_total", &[("sink", "lake")]) >= 2.0);
    let (_, gcs_rows) = read_bucket(&gcs.endpoint(), GcsServer::BUCKET);
    assert_eq!(ids_of(&gcs_rows, "app.both"), ids);
    // Treasure Data too received everything during the outage.
    assert_eq!(metric(&m, "weir_outbox_files", &[("sink", "td")]), 0.0);
    let td_rows: usize = td.state()["records"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["rows"].as_array().unwrap().len())
        .sum();
    assert_eq!(td_rows, ids.len());

    // Over the backlog limit the roller pauses, and readiness says why.
    let paused = wait_until(Duration::from_secs(30), || {
        metric(&scrape(weir.metrics_port), "weir_outbox_blocked", &[]) == 1.0
    });
    assert!(
        paused,
        "roller did not pause over the backlog limit\n{}",
        weir.log()
    );
    let (status, body) = http_get(weir.metrics_port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("outbox backlog"), "{body}");

    s3.restart();
    wait_delivered(&weir, &["lake", "sandbox", "td"], 1.0);
    let resumed = wait_until(Duration::from_secs(30), || {
        metric(&scrape(weir.metrics_port), "weir_outbox_blocked", &[]) == 0.0
            && http_get(weir.metrics_port, "/readyz")
                .map(|r| r.0 == 200)
                .unwrap_or(false)
    });
    assert!(resumed, "roller did not resume\n{}", weir.log());
    let (objects, rows) = read_bucket(&s3.endpoint(), S3Server::BUCKET);
    assert_eq!(
        objects.keys().cloned().collect::<Vec<_>>(),
        vec![minute_key("app.both", t)],
        "exactly one object"
    );
    assert_eq!(rows.len(), ids.len(), "every event once");
    assert_eq!(ids_of(&rows, "app.both"), ids);
    let left: Vec<String> = file_names(&weir.data_dir().join("outbox"))
        .into_iter()
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert!(left.is_empty(), "files left in the outbox: {left:?}");
    // Each failed upload is weir's own rate-limited warning, not also a line
    // per HTTP retry from the S3 client (half of all lines in an outage).
    let log = weir.log();
    assert!(
        !log.contains("object_store::client::retry"),
        "the S3 client logs its retries\n{log}"
    );
}

#[test]
fn a_crash_between_upload_and_delivery_mark_rewrites_the_same_bytes() {
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3_root.path());
    let extra = format!(
        "{}[[route]]\nmatch = \"**\"\nsinks = [\"lake\"]\n",
        s3.sink_toml("lake", "p")
    );
    let mut weir = Weir::create_full("", "", &extra);
    weir.env = vec![("WEIR_FAILPOINTS".into(), "outbox.after_upload".into())];
    weir.spawn();
    let t = now_secs();
    send(weir.port, "crash.up", 300, t, 50);
    // The upload succeeds, then the process dies before recording it.
    assert!(
        weir.wait_exit(Duration::from_secs(180)),
        "failpoint never reached\n{}",
        weir.log()
    );
    assert!(weir.log().contains("failpoint outbox.after_upload reached"));
    let key = format!("p/{}", minute_key("crash.up", t));
    let object = s3_root.path().join(S3Server::BUCKET).join(&key);
    let first = std::fs::read(&object).expect("uploaded before the crash");
    let names = file_names(&weir.data_dir().join("outbox"));
    assert!(names.iter().any(|n| n.ends_with(".parquet")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".done")), "{names:?}");

    weir.env.clear();
    weir.spawn();
    wait_delivered(&weir, &["lake"], 0.0);
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(
            &m,
            "weir_sink_uploads_total",
            &[("sink", "lake"), ("result", "ok")]
        ),
        1.0,
        "re-delivered after the restart"
    );
    let second = std::fs::read(&object).unwrap();
    assert_eq!(first, second, "same key, same bytes");
    let (objects, rows) = read_bucket(&s3.endpoint(), S3Server::BUCKET);
    assert_eq!(objects.len(), 1);
    assert_eq!(rows.len(), 300);
}

/// The local folder takes the outbox file by hard link; a crash after the
/// link and before the outbox let go of the file links the same file again
/// at the restart, which must leave one file under the key and nothing
/// beside it (a staging name left there is read twice by Hive-style
/// readers of the folder).
#[test]
fn a_crash_after_linking_into_the_local_folder_leaves_one_file() {
    let mut weir = Weir::create_full("", "", "");
    weir.env = vec![("WEIR_FAILPOINTS".into(), "outbox.after_upload".into())];
    weir.spawn();
    let t = now_secs();
    send(weir.port, "crash.local", 300, t, 50);
    assert!(
        weir.wait_exit(Duration::from_secs(180)),
        "failpoint never reached\n{}",
        weir.log()
    );
    let key = minute_key("crash.local", t);
    let linked = weir.out_dir().join(&key);
    let outbox = weir.data_dir().join("outbox");
    let outbox_file = file_names(&outbox)
        .into_iter()
        .find(|n| n.ends_with(".parquet"))
        .map(|n| outbox.join(n))
        .expect("still in the outbox");
    {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            std::fs::metadata(&linked).expect("linked before the crash"),
            std::fs::metadata(&outbox_file).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "a link, not a copy");
    }

    weir.env.clear();
    weir.spawn();
    wait_delivered(&weir, &["local"], 0.0);
    let beside = file_names(linked.parent().unwrap());
    assert_eq!(
        beside,
        BTreeSet::from(["n1.parquet".to_string()]),
        "one file, nothing beside it"
    );
    assert_eq!(weir.output_files(), vec![key]);
    assert_eq!(
        ids_of(&read_rows(&weir.out_dir()), "crash.local").len(),
        300
    );
    assert_eq!(read_rows(&weir.out_dir()).len(), 300);
}
