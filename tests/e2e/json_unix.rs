//! Forward messages as JSON (Fluentd's in_forward reads a connection whose
//! first byte is `[` or `{` as a stream of JSON values and answers acks in
//! JSON), and the forward protocol over a Unix socket: its bounds (10,000
//! connections), a stale socket file after kill -9, and files weir must
//! not replace.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// Reads one JSON ack (`{"ack":"<chunk>"}`) from `r`: Fluentd writes each
/// as one JSON text, with nothing between them.
fn read_json_ack<R: Read>(r: &mut R) -> serde_json::Value {
    let mut de = serde_json::Deserializer::from_reader(r).into_iter::<serde_json::Value>();
    de.next()
        .expect("an ack before the connection closed")
        .expect("a JSON ack")
}

#[test]
fn json_forward_messages_in_every_shape_are_acked_in_json_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("weir.sock");
    let mut weir = Weir::start_with(
        &format!(
            "unix_path = \"{}\"\nrequest_timeout = \"2s\"\n",
            sock.display()
        ),
        "",
    );
    let t0 = now_secs() - 5;

    // One connection, values back to back in a single write (pipelined),
    // one Message without a chunk (no ack), whitespace between values.
    let mut s = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let batch = format!(
        "{}\n{}  {}\r\n{}",
        json!(["js.message", t0, {"seq": 1}, {"chunk": "m1"}]),
        json!(["js.message", t0 as f64 + 0.25, {"seq": 2}]),
        json!(["js.message", 0, {"seq": 3}, {"chunk": "m3"}]),
        json!(["js.forward", [[t0, {"seq": 1}], [t0 + 1, {"seq": 2}], [t0 as f64 + 2.5, {"seq": 3}]], {"chunk": "f1"}]),
    );
    s.write_all(batch.as_bytes()).unwrap();
    // A value split mid-string across two writes.
    let split =
        json!(["js.split", [[t0, {"seq": 1, "msg": "split across writes"}]], {"chunk": "s1"}])
            .to_string();
    let (a, b) = split.split_at(split.find("across").unwrap());
    s.write_all(a.as_bytes()).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b.as_bytes()).unwrap();
    for want in ["m1", "m3", "f1", "s1"] {
        assert_eq!(
            read_json_ack(&mut s),
            json!({ "ack": want }),
            "acks in order, as JSON"
        );
    }

    // The same over the Unix socket.
    let mut u = UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    u.write_all(
        json!(["js.unix", [[t0, {"seq": 1}], [t0, {"seq": 2}]], {"chunk": "u1"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_json_ack(&mut u), json!({"ack": "u1"}));

    // A JSON connection that switches to garbage: what came before is
    // acked and stored, then the connection closes, the garbage stores
    // nothing and other connections are untouched.
    let mut g = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(
        json!(["js.garbage", t0, {"seq": 1}, {"chunk": "g1"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    g.write_all(b"]]{not json at all").unwrap();
    let mut r = BufReader::new(g);
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    assert!(first.starts_with(r#"{"ack":"g1"}"#), "{first:?}");
    let mut rest = Vec::new();
    assert!(
        r.read_to_end(&mut rest).is_ok() && rest.is_empty(),
        "closed after garbage: {rest:?}"
    );
    let mut again = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    again
        .write_all(
            json!(["js.after", t0, {"seq": 1}, {"chunk": "a1"}])
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_json_ack(&mut again), json!({"ack": "a1"}));
    // A resent chunk (its ack was lost) is acked and not stored twice.
    again
        .write_all(
            json!(["js.after", t0, {"seq": 1}, {"chunk": "a1"}])
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_json_ack(&mut again), json!({"ack": "a1"}));

    // Chunk ids of any JSON type are echoed as sent and tell requests
    // apart (a resend of one is stored once); a null chunk asks for no ack,
    // as in Fluentd. Each value ends with a newline, as line-oriented
    // senders write: the newline starts no request, so a pause longer than
    // request_timeout (2 s here) does not close the connection.
    let mut n = TcpStream::connect(("127.0.0.1", weir.port)).unwrap();
    n.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunks = [json!(1), json!(2), json!({"id": 3}), json!(1)];
    for (seq, chunk) in chunks.iter().enumerate() {
        let seq = if seq == 3 { 1 } else { seq + 1 };
        n.write_all(
            format!(
                "{}\n",
                json!(["js.chunks", t0, {"seq": seq}, {"chunk": chunk}])
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(read_json_ack(&mut n), json!({ "ack": chunk }));
    }
    n.write_all(
        format!(
            "{}\n",
            json!(["js.chunks", t0, {"seq": 4}, {"chunk": null}])
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    n.write_all(
        format!(
            "{}\n",
            json!(["js.chunks", t0, {"seq": 5}, {"chunk": "c5"}])
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        read_json_ack(&mut n),
        json!({"ack": "c5"}),
        "no ack for the null chunk, and the connection outlived request_timeout"
    );
    assert!(
        !weir.log().contains("request not complete"),
        "{}",
        weir.log()
    );

    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(
            &m,
            "weir_forward_connections_closed_total",
            &[("reason", "malformed")]
        ),
        1.0
    );
    weir.drain_and_stop();
    let mut by: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for r in read_rows(&weir.out_dir()) {
        by.entry(r.tag.clone()).or_default().push(r);
    }
    let counts: std::collections::BTreeMap<&str, usize> =
        by.iter().map(|(t, r)| (t.as_str(), r.len())).collect();
    assert_eq!(
        counts,
        [
            ("js.after", 1),
            ("js.chunks", 5),
            ("js.forward", 3),
            ("js.garbage", 1),
            ("js.message", 3),
            ("js.split", 1),
            ("js.unix", 2)
        ]
        .into_iter()
        .collect()
    );
    let time_of = |tag: &str, seq: u64| {
        by[tag]
            .iter()
            .find(|r| r.record["seq"] == seq)
            .unwrap()
            .time_us
    };
    assert_eq!(time_of("js.message", 1), t0 * 1_000_000);
    assert_eq!(
        time_of("js.message", 2),
        t0 * 1_000_000 + 250_000,
        "float seconds"
    );
    assert!(time_of("js.message", 3) > t0 * 1_000_000, "time 0 is now");
    assert_eq!(time_of("js.forward", 3), (t0 * 1_000_000) + 2_500_000);
    assert_eq!(by["js.split"][0].record["msg"], "split across writes");
}

#[test]
fn the_unix_socket_stays_bounded_under_ten_thousand_connections_and_survives_kill_9() {
    let _ = rlimit::increase_nofile_limit(20_000);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("weir.sock");
    let mut weir = Weir::start_with(
        &format!(
            "unix_path = \"{}\"\nmax_connections = 100\n",
            sock.display()
        ),
        "",
    );
    let fds_before = weir.fd_count();
    let mut held = Vec::new();
    for i in 0..10_000 {
        match UnixStream::connect(&sock) {
            Ok(c) => held.push(c),
            Err(e) => panic!("connect {i}: {e}\n{}", weir.log()),
        }
    }
    let refused = wait_until(Duration::from_secs(60), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_connections_refused_total",
            &[],
        ) >= 9_900.0
    });
    assert!(
        refused,
        "connections past forward.max_connections refused\n{}",
        weir.log()
    );
    assert!(weir.is_running());
    let fds = weir.fd_count();
    assert!(
        fds < fds_before + 150,
        "weir holds {fds} fds (was {fds_before}) with 10,000 clients"
    );
    assert!(weir.rss_kib() < 300 << 10, "rss {} KiB", weir.rss_kib());
    assert!(
        weir.log().matches("refusing connection").count() < 50,
        "refusals logged within the rate limit"
    );
    drop(held);

    // With the clients gone, a client is served again.
    let ok = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_connections_active",
            &[],
        ) == 0.0
    });
    assert!(ok);
    let mut u = UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    u.write_all(
        json!(["ux.after", now_secs(), {"seq": 1}, {"chunk": "x1"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_json_ack(&mut u), json!({"ack": "x1"}));
    drop(u);

    // kill -9 leaves the socket file; the next start replaces it.
    weir.kill9();
    assert!(sock.exists(), "a killed weir leaves its socket file");
    weir.spawn();
    assert!(
        weir.log().contains("replaced a stale Unix socket"),
        "{}",
        weir.log()
    );
    let mut u = UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    u.write_all(
        json!(["ux.after", now_secs(), {"seq": 2}, {"chunk": "x2"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_json_ack(&mut u), json!({"ack": "x2"}));

    // A second weir on the same socket path is refused, and the first
    // keeps its socket.
    let other = tempfile::tempdir().unwrap();
    let cfg = other.path().join("weir.toml");
    let second = |path: &std::path::Path| {
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[forward]\nlisten = \"127.0.0.1:{}\"\nunix_path = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
                other.path().join("data").display(),
                free_port(),
                path.display(),
                free_port()
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "-c"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = second(&sock);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forward.unix_path") && err.contains("served by another process"),
        "{err}"
    );
    assert!(sock.exists());
    // A file that is not a socket is never replaced.
    let plain = dir.path().join("not-a-socket");
    std::fs::write(&plain, b"precious").unwrap();
    let out = second(&plain);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"precious");

    weir.drain_and_stop();
    let rows = read_rows(&weir.out_dir());
    let mut seqs: Vec<u64> = rows
        .iter()
        .map(|r| r.record["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2]);
}
