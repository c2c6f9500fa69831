//! The users' agents on weir's other inputs: Fluent Bit's `out_http` (json,
//! json_lines and msgpack, gzip) and Fluentd's `out_http` (NDJSON, JSON
//! array, gzip) into the HTTP input, and Fluent Bit's `out_forward` into the
//! Unix socket. Every event must be in the Parquet files exactly once.

use std::path::Path;

use crate::common::*;
use crate::peers::{agent, assert_rows_once, await_metric, FluentBit, Fluentd, N};

#[test]
fn fluent_bit_out_http_in_every_format_lands_every_event_once() {
    let Some(bin) = agent("FLUENT_BIT", "fluent-bit") else {
        return;
    };
    let hp = free_port();
    let mut weir = Weir::start(&format!("[http]\nlisten = \"127.0.0.1:{hp}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let outputs = [
        // As the README shows: the JSON formats name the time key weir reads.
        ("fbh.json", "json", "    json_date_key time\n"),
        ("fbh.lines", "json_lines", "    json_date_key time\n"),
        ("fbh.msgpack", "msgpack", ""),
        (
            "fbh.gzip",
            "json_lines",
            "    json_date_key time\n    compress gzip\n",
        ),
    ];
    let running: Vec<FluentBit> = outputs
        .iter()
        .map(|(tag, format, extra)| {
            FluentBit::start_output(
                &bin,
                dir.path(),
                tag,
                &format!(
                    "[OUTPUT]\n    name http\n    match *\n    host 127.0.0.1\n    port {hp}\n    uri /{tag}\n    format {format}\n    retry_limit no_limits\n{extra}"
                ),
            )
        })
        .collect();
    let logs: Vec<&Path> = running.iter().map(|f| f.log.as_path()).collect();
    await_metric(&weir, "weir_http_events_total", N * 4, &logs);
    for f in running {
        f.stop();
    }
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_http_rejected_total", &[]),
        0.0,
        "{}",
        weir.log()
    );
    assert!(metric(&m, "weir_http_bodies_total", &[("encoding", "gzip")]) > 0.0);
    weir.drain_and_stop();
    let rows = read_rows(&weir.out_dir());
    assert_times_taken(&rows, &["date", "time"]);
    assert_rows_once(&rows, &["fbh.json", "fbh.lines", "fbh.msgpack", "fbh.gzip"]);
}

#[test]
fn fluentd_out_http_ndjson_json_array_and_gzip_land_every_event_once() {
    let Some(bin) = agent("FLUENTD", "fluentd") else {
        return;
    };
    let hp = free_port();
    let mut weir = Weir::start(&format!("[http]\nlisten = \"127.0.0.1:{hp}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let outputs = [
        ("fdh.ndjson", ""),
        ("fdh.array", "  json_array true\n"),
        ("fdh.gzip", "  compress gzip\n"),
    ];
    let running: Vec<Fluentd> = outputs
        .iter()
        .map(|(tag, extra)| {
            Fluentd::start_output(
                &bin,
                dir.path(),
                tag,
                &format!(
                    "  @type http\n  endpoint http://127.0.0.1:{hp}/{tag}\n  retryable_response_codes [503]\n{extra}  <format>\n    @type json\n  </format>\n  <inject>\n    time_key time\n    time_type float\n  </inject>\n"
                ),
            )
        })
        .collect();
    let logs: Vec<&Path> = running.iter().map(|f| f.log.as_path()).collect();
    await_metric(&weir, "weir_http_events_total", N * 3, &logs);
    for f in running {
        f.stop();
    }
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_http_rejected_total", &[]),
        0.0,
        "{}",
        weir.log()
    );
    assert!(metric(&m, "weir_http_bodies_total", &[("encoding", "gzip")]) > 0.0);
    weir.drain_and_stop();
    let rows = read_rows(&weir.out_dir());
    assert_times_taken(&rows, &["time"]);
    assert_rows_once(&rows, &["fdh.ndjson", "fdh.array", "fdh.gzip"]);
}

/// The agents sent each event's time under the key weir reads (the
/// README's settings), so weir took it out of the record as the event time.
fn assert_times_taken(rows: &[Row], keys: &[&str]) {
    for r in rows {
        for k in keys {
            assert!(
                r.record.get(k).is_none(),
                "`{k}` left in the record (the time was not read from it): {:?}",
                r.record
            );
        }
    }
}

#[test]
fn fluent_bit_forward_to_the_unix_socket_lands_every_event_once() {
    let Some(bin) = agent("FLUENT_BIT", "fluent-bit") else {
        return;
    };
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("weir.sock");
    let mut weir = Weir::start_with(
        &format!("unix_path = \"{}\"\nunix_mode = \"0600\"\n", sock.display()),
        "",
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "forward.unix_mode applied");
    let dir = tempfile::tempdir().unwrap();
    let fb = FluentBit::start_output(
        &bin,
        dir.path(),
        "fbu.ack",
        &format!(
            "[OUTPUT]\n    name forward\n    match *\n    unix_path {}\n    require_ack_response true\n    compress gzip\n    retry_limit no_limits\n",
            sock.display()
        ),
    );
    await_metric(&weir, "weir_forward_events_total", N, &[&fb.log]);
    fb.stop();
    weir.drain_and_stop();
    assert!(!sock.exists(), "the socket file is removed at a clean stop");
    assert_rows_once(&read_rows(&weir.out_dir()), &["fbu.ack"]);
}
