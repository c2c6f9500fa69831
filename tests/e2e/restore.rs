//! Restore with `weir redeliver` (issue 14): objects deleted from a real S3
//! server come back byte-identical, on a live node (through its outbox) and
//! on a stopped one; a second run changes nothing; Treasure Data parts go
//! again with their unique ids (TD keeps one copy); a sink added later is
//! backfilled; a crash in the middle of a redelivery is completed by running
//! it again.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::servers::*;

/// key → md5 of the objects in the S3 server's bucket, after deleting those
/// under `delete` (the helper fails if nothing was there to delete).
fn objects(s3: &S3Server, delete: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = Command::new(python());
    cmd.arg(support("s3_objects.py"))
        .args([&s3.endpoint(), S3Server::BUCKET]);
    if !delete.is_empty() {
        cmd.arg("--delete").args(delete);
    }
    let out = run_ok(&mut cmd);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn redeliver(weir: &Weir, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["redeliver", "-c"])
        .arg(&weir.config_path)
        .args(args)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The current minute, as `--from`/`--to` arguments (its files finish a
/// second after it ends).
fn this_minute() -> (i64, String, String) {
    let start = now_secs() / 60 * 60;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    (start, fmt(start), fmt(start + 60))
}

fn send(port: u16, tag: &str, n: usize, t: i64) {
    let events: Vec<(i64, String)> = (0..n).map(|i| (t, format!("{tag}-{i}"))).collect();
    let mut s = connect(port).unwrap();
    send_acked(&mut s, &forward_request(tag, &events, Some(tag), 40), tag).unwrap();
}

fn imports_of(state: &Value) -> Vec<String> {
    state["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["unique_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn redeliver_restores_a_deleted_hour_byte_identical_live_then_stopped_and_backfills_a_new_sink() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path());
    let td = TdServer::start();
    let extra = format!(
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\n[outbox]\nretain = \"7d\"\n{}{}[[route]]\nname = \"all\"\nmatch = \"**\"\nsinks = [\"lake\", \"td\"]\n",
        s3.sink_toml("lake", "dwh"),
        td.sink_toml("td"),
    );
    let mut weir = Weir::start(&extra);
    let (start, from, to) = this_minute();
    for tag in ["app.a", "app.b", "sys.c"] {
        send(weir.port, tag, 50, start + 5);
    }
    let settled = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        // 3 Parquet files and 3 TD parts, all delivered and retained.
        metric(&m, "weir_outbox_retained_files", &[]) == 6.0
    });
    assert!(settled, "files not delivered and retained\n{}", weir.log());
    let before = objects(&s3, &[]);
    assert_eq!(before.len(), 3, "{before:?}");
    let td_before = td.state();
    let uids = imports_of(&td_before);
    assert_eq!(uids.len(), 3, "{td_before}");

    // Lose app.* of that minute from the bucket; restore it through the
    // running node.
    let lost = objects(&s3, &["dwh/app."]);
    assert_eq!(lost.len(), 1, "{lost:?}");
    let out = redeliver(
        &weir,
        &[
            "--sink", "lake", "--from", &from, "--to", &to, "--match", "app.**",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("handed to the running node"), "{text}");
    assert!(text.contains("2/2 files sent, 100 rows"), "{text}");
    assert_eq!(
        text.matches("2/2 files sent").count(),
        1,
        "the summary is printed once: {text}"
    );
    assert_eq!(objects(&s3, &[]), before, "restored byte-identical");
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(
            &m,
            "weir_redeliver_files_total",
            &[("sink", "lake"), ("result", "ok")]
        ),
        2.0
    );

    // TD parts again with their unique ids: TD keeps one copy of each.
    let out = redeliver(
        &weir,
        &["--sink", "td", "--from", &from, "--to", "2100-01-01"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let td_after = td.state();
    let mut again = imports_of(&td_after);
    assert_eq!(again.len(), 6, "{td_after}");
    again.sort();
    again.dedup();
    let mut first = uids.clone();
    first.sort();
    assert_eq!(again, first, "the same unique ids");
    assert_eq!(td_after["records"], td_before["records"], "one copy each");

    // A sink added to the config but not to the running node: the command
    // says to restart it.
    let config = std::fs::read_to_string(&weir.config_path).unwrap();
    let config = config.replace(
        "sinks = [\"lake\", \"td\"]",
        "sinks = [\"lake\", \"td\", \"lake2\"]",
    ) + &s3.sink_toml("lake2", "restored");
    std::fs::write(&weir.config_path, config).unwrap();
    let out = redeliver(&weir, &["--sink", "lake2", "--from", &from, "--to", &to]);
    let text = stdout(&out);
    assert!(
        !out.status.success() && text.contains("restart it"),
        "{text}"
    );
    // Nothing matching is a failure, not a silent success.
    let out = redeliver(
        &weir,
        &["--sink", "lake", "--from", &from, "--match", "nope.**"],
    );
    let text = stdout(&out);
    assert!(
        !out.status.success() && text.contains("nothing sent"),
        "{text}"
    );

    // Stopped node: the command uploads itself; a second run leaves the
    // same objects.
    assert!(weir.terminate().success());
    let out = redeliver(&weir, &["--sink", "lake", "--from", &from, "--to", &to]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stopped node"), "{text}");
    assert!(text.contains("3/3 files sent, 150 rows"), "{text}");
    assert_eq!(
        text.matches("3/3 files sent").count(),
        1,
        "the summary is printed once: {text}"
    );
    assert_eq!(objects(&s3, &[]), before, "a rerun changes nothing");

    // The sink added later (same route, another prefix) is backfilled
    // with the keys the route gives it.
    let out = redeliver(&weir, &["--sink", "lake2", "--from", &from, "--to", &to]);
    assert!(out.status.success(), "{}", stdout(&out));
    let after = objects(&s3, &[]);
    assert_eq!(after.len(), 6, "{after:?}");
    for (key, md5) in &before {
        let copy = key.replacen("dwh/", "restored/", 1);
        assert_eq!(after.get(&copy), Some(md5), "{copy} backfilled");
    }

    // Mistakes are named.
    let out = redeliver(&weir, &["--sink", "nope", "--from", &from]);
    let text = stdout(&out);
    assert!(
        !out.status.success() && text.contains("--sink \"nope\""),
        "{text}"
    );
    let out = redeliver(&weir, &["--sink", "lake", "--from", "yesterday"]);
    let text = stdout(&out);
    assert!(!out.status.success() && text.contains("--from"), "{text}");
    let out = redeliver(
        &weir,
        &["--sink", "lake", "--from", &from, "--timeout", "3650d"],
    );
    let text = stdout(&out);
    assert!(
        !out.status.success() && text.contains("at most 7d"),
        "{text}"
    );
}

#[test]
fn a_redeliver_killed_midway_completes_when_run_again() {
    let mut weir = Weir::start("[outbox]\nretain = \"7d\"\n");
    let (start, from, to) = this_minute();
    let tags: Vec<String> = (0..12).map(|i| format!("kill.t{i}")).collect();
    for tag in &tags {
        send(weir.port, tag, 20, start + 1);
    }
    let settled = wait_until(Duration::from_secs(150), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_outbox_retained_files",
            &[],
        ) == 12.0
    });
    assert!(settled, "files not retained\n{}", weir.log());
    assert!(weir.terminate().success());
    let delivered: BTreeMap<String, Vec<u8>> = list_files(&weir.out_dir())
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(weir.out_dir().join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert_eq!(delivered.len(), 12);
    std::fs::remove_dir_all(weir.out_dir()).unwrap();

    // The process dies (abort, as abruptly as kill -9) right after its
    // first upload.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["redeliver", "-c"])
        .arg(&weir.config_path)
        .args(["--sink", "local", "--from", &from, "--to", &to])
        .env("WEIR_FAILPOINTS", "redeliver.after_upload")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let partial = list_files(&weir.out_dir()).len();
    assert!(
        partial < 12,
        "the crash came before the end ({partial} files)"
    );

    let out = redeliver(&weir, &["--sink", "local", "--from", &from, "--to", &to]);
    assert!(out.status.success(), "{}", stdout(&out));
    let again: BTreeMap<String, Vec<u8>> = list_files(&weir.out_dir())
        .into_iter()
        // A crash may leave the local sink's staging file beside them.
        .filter(|f| f.ends_with(".parquet"))
        .map(|f| {
            let bytes = std::fs::read(weir.out_dir().join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert!(again == delivered, "every file back, byte-identical");
}
