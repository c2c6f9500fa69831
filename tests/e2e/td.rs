//! The Treasure Data sink against a local import endpoint as strict as TD
//! (tests/support/td_mock.py): records come from the WAL, each with an
//! integer `time`; 429/500 are retried, 404 creates the table, 400 goes to
//! the dead-letter folder; a crash between upload and mark re-sends the same
//! unique_id, which TD keeps once.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::servers::*;

fn send(port: u16, tag: &str, n: usize, t: i64) -> Vec<String> {
    let ids: Vec<(i64, String)> = (0..n).map(|i| (t, format!("{tag}-{i}"))).collect();
    let mut s = connect(port).unwrap();
    let chunk = format!("{tag}-c");
    send_acked(
        &mut s,
        &forward_request(tag, &ids, Some(&chunk), 10),
        &chunk,
    )
    .unwrap();
    ids.into_iter().map(|(_, id)| id).collect()
}

/// Rows TD stored for db.table, by id.
fn stored(state: &Value, db: &str, table: &str) -> Vec<Value> {
    state["records"]
        .as_object()
        .unwrap()
        .values()
        .filter(|p| p["db"] == db && p["table"] == table)
        .flat_map(|p| p["rows"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn td_gets_routed_records_and_each_error_takes_its_path() {
    let td = TdServer::start();
    let extra = format!(
        "{}[[route]]\nmatch = \"app.** x.** bad.**\"\nsinks = [\"td\"]\n[[route]]\nmatch = \"dev.**\"\nsinks = [\"local\"]\n",
        td.sink_toml("td")
    );
    let weir = Weir::start(&extra);
    let t = now_secs();
    let web = send(weir.port, "app.web", 300, t);
    let flaky = send(weir.port, "x.flaky", 20, t);
    send(weir.port, "bad.reject", 10, t);
    send(weir.port, "dev.team", 5, t);

    let done = wait_until(Duration::from_secs(120), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_outbox_files", &[("sink", "td")]) == 0.0
            && metric(&m, "weir_roll_files_finished_total", &[("kind", "td_part")]) == 3.0
            && metric(&m, "weir_sink_dead_lettered_total", &[("sink", "td")]) == 1.0
    });
    assert!(done, "TD parts not delivered\n{}", weir.log());
    let m = scrape(weir.metrics_port);
    assert!(
        metric(&m, "weir_sink_retries_total", &[("sink", "td")]) >= 2.0,
        "429 and 500 retried"
    );

    let state = td.state();
    assert!(
        state["bad_requests"].as_array().unwrap().is_empty(),
        "{state}"
    );
    let rows = stored(&state, "app", "web");
    let ids: BTreeSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, web.into_iter().collect(), "app.web records");
    assert!(
        rows.iter().all(|r| r["time"] == t),
        "integer event time on every record"
    );
    assert_eq!(stored(&state, "x__", "flaky").len(), flaky.len());
    assert!(
        stored(&state, "dev", "team").is_empty(),
        "dev.** goes to the local sink only"
    );
    let statuses: Vec<(String, String, u64)> = state["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().into(),
                s[1].as_str().unwrap().into(),
                s[2].as_u64().unwrap(),
            )
        })
        .collect();
    let flaky_puts: Vec<u64> = statuses
        .iter()
        .filter(|(m, p, _)| m == "PUT" && p.contains("/x__/flaky/"))
        .map(|s| s.2)
        .collect();
    assert_eq!(&flaky_puts[..2], &[429, 500], "{flaky_puts:?}");
    assert_eq!(flaky_puts.last(), Some(&200));
    assert!(statuses
        .iter()
        .any(|(m, p, s)| m == "POST" && p == "/v3/table/create/app/web/log" && *s == 200));
    // The rejected part is kept, with its reason.
    let dl = weir.data_dir().join("deadletter/td");
    let files = file_names(&dl);
    assert!(
        files.iter().any(|f| f.ends_with(".msgpack.gz")),
        "{files:?}"
    );
    let note = files.iter().find(|f| f.ends_with(".json")).unwrap();
    let note: Value = serde_json::from_slice(&std::fs::read(dl.join(note)).unwrap()).unwrap();
    assert!(
        note["dead_letter_reason"].as_str().unwrap().contains("400"),
        "{note}"
    );
    assert_eq!(note["group"], "bad.reject", "db.table of the part");
    // The local sink got dev.team as Parquet.
    let ok = wait_until(Duration::from_secs(120), || !weir.output_files().is_empty());
    assert!(ok);
}

#[test]
fn td_crash_between_upload_and_mark_resends_the_same_unique_id() {
    let td = TdServer::start();
    let extra = format!(
        "{}[[route]]\nmatch = \"**\"\nsinks = [\"td\"]\n",
        td.sink_toml("td")
    );
    let mut weir = Weir::create_full("", "", &extra);
    weir.env = vec![("WEIR_FAILPOINTS".into(), "outbox.after_upload".into())];
    weir.spawn();
    let t = now_secs();
    send(weir.port, "app.crash", 50, t);
    assert!(
        weir.wait_exit(Duration::from_secs(60)),
        "failpoint not reached\n{}",
        weir.log()
    );
    weir.env.clear();
    weir.spawn();
    let ok = wait_until(Duration::from_secs(60), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_sink_uploads_total",
            &[("sink", "td"), ("result", "ok")],
        ) == 1.0
    });
    assert!(ok, "not re-delivered\n{}", weir.log());
    let state = td.state();
    let imports: Vec<&Value> = state["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["table"] == "crash")
        .collect();
    assert_eq!(
        imports.len(),
        2,
        "uploaded, crashed, uploaded again: {imports:?}"
    );
    assert_eq!(
        imports[0]["unique_id"], imports[1]["unique_id"],
        "same unique_id"
    );
    assert_eq!(imports[0]["md5"], imports[1]["md5"], "same bytes");
    assert_eq!(
        stored(&state, "app", "crash").len(),
        50,
        "TD keeps one copy"
    );
}

/// TD answering 401 and 403 (an API key being rotated) is retried with
/// backoff and counted as an auth failure, never dead-lettered: the part
/// is delivered once the key works again.
#[test]
fn td_auth_failures_are_retried_not_dead_lettered() {
    let td = TdServer::start();
    let extra = format!(
        "{}[[route]]\nmatch = \"x.**\"\nsinks = [\"td\"]\n",
        td.sink_toml("td")
    );
    let weir = Weir::start(&extra);
    let ids = send(weir.port, "x.rotated", 30, now_secs());
    let done = wait_until(Duration::from_secs(120), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_files_finished_total", &[("kind", "td_part")]) == 1.0
            && metric(&m, "weir_outbox_files", &[("sink", "td")]) == 0.0
    });
    assert!(done, "not delivered\n{}", weir.log());
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_sink_auth_failures_total", &[("sink", "td")]),
        2.0
    );
    assert_eq!(
        metric(&m, "weir_sink_dead_lettered_total", &[("sink", "td")]),
        0.0
    );
    let rows = stored(&td.state(), "x__", "rotated");
    let got: BTreeSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids.into_iter().collect::<BTreeSet<_>>());
    assert!(!weir.data_dir().join("deadletter/td").exists());
}
