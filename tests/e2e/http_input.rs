//! The HTTP input from real clients: `curl` posting every content type and
//! encoding weir takes, raw HTTP/1.1 keep-alive and pipelining, and the
//! hostile cases (oversized and endless bodies, gzip bombs, malformed JSON
//! half-way through an array, slow clients, bad tokens and origins): each
//! refusal is a 4xx or 503 with a reason, nothing of a refused request is
//! stored, weir stays up, and every 2xx'd event is in the Parquet once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::tls::make_certs;

/// `curl -s ARGS`: (status, body). curl is a real HTTP client the tests
/// cannot do without; scripts/test installs it.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl not runnable ({e}): apt-get install curl"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    format!("@{}", p.display())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn ndjson(tag: &str, n: u64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{{\"seq\":{i},\"src\":\"{tag}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn rows_by_tag(root: &Path) -> BTreeMap<String, Vec<Row>> {
    let mut by: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in read_rows(root) {
        by.entry(r.tag.clone()).or_default().push(r);
    }
    by
}

/// Reads one HTTP/1.1 response (head and a Content-Length body) from `s`.
pub fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, format!("{head}{}", String::from_utf8_lossy(&body))))
}

#[test]
fn curl_posts_of_every_type_and_encoding_land_once_with_their_times() {
    let hp = free_port();
    let mut weir = Weir::start(&format!(
        "[http]\nlisten = \"127.0.0.1:{hp}\"\nadd_http_headers = true\nadd_query_params = true\nadd_remote_addr = true\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json_h = "Content-Type: application/json";
    let nd_h = "Content-Type: application/x-ndjson";
    let ok = |r: (u16, String), what: &str| assert_eq!(r.0, 200, "{what}: {}\n{}", r.1, weir.log());

    // One object, its time an RFC 3339 string; one with seconds as a float.
    ok(
        curl(&[
            "-H",
            json_h,
            "-H",
            "X-Forwarded-For: 203.0.113.9, 10.0.0.1",
            "-H",
            "Authorization: Bearer not-for-the-lake",
            "-d",
            r#"{"seq":1,"time":"2023-11-14T22:13:20.123456Z"}"#,
            &url(hp, "/h/obj?team=a-b"),
        ]),
        "object",
    );
    ok(
        curl(&[
            "-H",
            json_h,
            "-d",
            r#"{"seq":2,"time":1700000000.5}"#,
            &url(hp, "/h/obj"),
        ]),
        "float time",
    );
    // An array is one batch.
    ok(
        curl(&[
            "-H",
            json_h,
            "-d",
            r#"[{"seq":1},{"seq":2},{"seq":3}]"#,
            &url(hp, "/h.arr"),
        ]),
        "array",
    );
    // NDJSON, gzip.
    let f = write_file(d, "nd.gz", &gzip(&ndjson("h.nd", 50)));
    ok(
        curl(&[
            "-H",
            nd_h,
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &f,
            &url(hp, "/h.nd"),
        ]),
        "ndjson gzip",
    );
    // JSON, deflate (zlib) and zstd.
    let arr: Vec<u8> =
        serde_json::to_vec(&(1..=20).map(|i| json!({"seq": i})).collect::<Vec<_>>()).unwrap();
    let f = write_file(d, "a.zz", &zlib(&arr));
    ok(
        curl(&[
            "-H",
            json_h,
            "-H",
            "Content-Encoding: deflate",
            "--data-binary",
            &f,
            &url(hp, "/h.deflate"),
        ]),
        "deflate",
    );
    let f = write_file(
        d,
        "nd.zst",
        &zstd::encode_all(&ndjson("h.zstd", 30)[..], 3).unwrap(),
    );
    ok(
        curl(&[
            "-H",
            nd_h,
            "-H",
            "Content-Encoding: zstd",
            "--data-binary",
            &f,
            &url(hp, "/h.zstd"),
        ]),
        "zstd",
    );
    // msgpack: a map, a [time, map] event, and an array of maps.
    let mut mp = rmp_serde::to_vec_named(&json!({"seq": 1})).unwrap();
    mp.extend(rmp_serde::to_vec_named(&(1_700_000_002u32, json!({"seq": 2}))).unwrap());
    mp.extend(rmp_serde::to_vec_named(&[json!({"seq": 3}), json!({"seq": 4})]).unwrap());
    let f = write_file(d, "b.mp", &mp);
    ok(
        curl(&[
            "-H",
            "Content-Type: application/msgpack",
            "--data-binary",
            &f,
            &url(hp, "/h.mp"),
        ]),
        "msgpack",
    );
    // Forms: json= (curl's default content type) and msgpack= (binary, encoded).
    ok(
        curl(&["-d", r#"json={"seq":1}"#, &url(hp, "/h.form")]),
        "form json",
    );
    let f = rmp_serde::to_vec_named(&json!({"seq": 2, "bin": "é"})).unwrap();
    let f = write_file(d, "form.mp", &f);
    ok(
        curl(&[
            "--data-urlencode",
            &format!("msgpack{f}"),
            &url(hp, "/h.form"),
        ]),
        "form msgpack",
    );
    // No body at all: json= and time= in the query string.
    ok(
        curl(&[
            "-X",
            "POST",
            &url(hp, "/h.query?json=%7B%22seq%22%3A1%7D&time=1700000003"),
        ]),
        "query",
    );

    // Keep-alive and pipelining: three requests written at once on one
    // connection, three answers in order.
    let mut s = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reqs = Vec::new();
    for i in 1..=3 {
        let body = format!("{{\"seq\":{i}}}");
        reqs.extend(format!(
            "POST /h.pipe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ).bytes());
    }
    s.write_all(&reqs).unwrap();
    for _ in 0..3 {
        let (status, text) = read_response(&mut s).unwrap();
        assert_eq!(status, 200, "{text}");
    }

    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_http_requests_total", &[("code", "200")]),
        13.0
    );
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    let counts: BTreeMap<&str, usize> = by.iter().map(|(t, r)| (t.as_str(), r.len())).collect();
    let want: BTreeMap<&str, usize> = [
        ("h.obj", 2),
        ("h.arr", 3),
        ("h.nd", 50),
        ("h.deflate", 20),
        ("h.zstd", 30),
        ("h.mp", 4),
        ("h.form", 2),
        ("h.query", 1),
        ("h.pipe", 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want, "rows per tag");
    for (tag, rows) in &by {
        let mut seqs: Vec<u64> = rows
            .iter()
            .map(|r| r.record["seq"].as_u64().unwrap())
            .collect();
        seqs.sort_unstable();
        let want: Vec<u64> = (1..=rows.len() as u64).collect();
        assert_eq!(seqs, want, "{tag}: every event once");
    }
    let obj = &by["h.obj"];
    let first = obj.iter().find(|r| r.record["seq"] == 1).unwrap();
    assert_eq!(first.time_us, 1_700_000_000_123_456, "RFC 3339 time");
    assert!(
        first.record.get("time").is_none(),
        "the time key is taken out"
    );
    assert_eq!(
        first.record["REMOTE_ADDR"], "203.0.113.9",
        "first X-Forwarded-For"
    );
    assert_eq!(first.record["QUERY_TEAM"], "a-b");
    assert!(
        first.record.get("HTTP_AUTHORIZATION").is_none(),
        "credentials are never stored: {:?}",
        first.record
    );
    assert!(first.record["HTTP_USER_AGENT"]
        .as_str()
        .unwrap()
        .starts_with("curl/"));
    let second = obj.iter().find(|r| r.record["seq"] == 2).unwrap();
    assert_eq!(second.time_us, 1_700_000_000_500_000);
    assert_eq!(by["h.query"][0].time_us, 1_700_000_003_000_000, "?time=");
    let mp2 = by["h.mp"].iter().find(|r| r.record["seq"] == 2).unwrap();
    assert_eq!(mp2.time_us, 1_700_000_002_000_000, "[time, map] event");
    let form2 = by["h.form"].iter().find(|r| r.record["seq"] == 2).unwrap();
    assert_eq!(form2.record["bin"], "é", "binary msgpack form value intact");
    assert_eq!(by["h.arr"][0].record["REMOTE_ADDR"], "127.0.0.1");
}

/// Refused requests: each answered with its status and reason, nothing of
/// it stored, weir up; the good requests among them stored once.
#[test]
fn hostile_http_requests_are_refused_with_a_reason_and_store_nothing() {
    let hp = free_port();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let c = certs.path();
    let mut weir = Weir::start_with(
        "request_timeout = \"2s\"\nmax_buffer_bytes = \"1MiB\"\nmax_decompressed_bytes = \"1MiB\"\n",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{hp}\"\nbearer_token = \"t0ken\"\nmax_body_bytes = \"64KiB\"\n\
             use_204_response = true\ncors_allow_origins = [\"https://*.example.com\"]\n\
             [http.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
            c.join("server.pem").display(),
            c.join("server.key").display()
        ),
    );
    let ca = c.join("ca.pem").display().to_string();
    let u = |path: &str| format!("https://localhost:{hp}{path}");
    let auth = "Authorization: Bearer t0ken";
    let json_h = "Content-Type: application/json";
    let post = |extra: &[&str], body: &str, path: &str| {
        let typed = extra.iter().any(|h| h.starts_with("Content-Type"));
        let mut args = vec!["--cacert", ca.as_str()];
        if !typed {
            args.extend(["-H", json_h]);
        }
        args.extend_from_slice(extra);
        let url = u(path);
        let mut all: Vec<&str> = args;
        all.extend(["--data-binary", body, &url]);
        curl(&all)
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Token.
    assert_eq!(post(&[], r#"{"seq":1}"#, "/hz.noauth").0, 401);
    assert_eq!(
        post(
            &["-H", "Authorization: Bearer nope"],
            r#"{"seq":1}"#,
            "/hz.noauth"
        )
        .0,
        401
    );
    let (code, body) = post(&["-H", auth], r#"{"seq":1}"#, "/hz.ok");
    assert_eq!(code, 204, "{body}\n{}", weir.log());
    // Size: declared, and chunked without a length.
    let big = format!(
        "[{}]",
        vec![r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#; 2000]
            .join(",")
    );
    let f = write_file(d, "big.json", big.as_bytes());
    let (code, body) = post(&["-H", auth], &f, "/hz.big");
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("http.max_body_bytes"), "{body}");
    assert_eq!(
        post(
            &["-H", auth, "-H", "Transfer-Encoding: chunked"],
            &f,
            "/hz.big"
        )
        .0,
        413
    );
    // A gzip bomb: 2 MiB of JSON in a few KiB, past the 1 MiB cap.
    let bomb = gzip(format!("{{\"a\":\"{}\"}}", "0".repeat(2 << 20)).as_bytes());
    assert!(bomb.len() < 64 << 10);
    let f = write_file(d, "bomb.gz", &bomb);
    let (code, body) = post(
        &["-H", auth, "-H", "Content-Encoding: gzip"],
        &f,
        "/hz.bomb",
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("forward.max_decompressed_bytes"), "{body}");
    let (code, _) = post(
        &["-H", auth, "-H", "Content-Encoding: gzip"],
        r#"{"not":"gzip"}"#,
        "/hz.bad",
    );
    assert_eq!(code, 400, "corrupt gzip");
    // Malformed half-way through an array: nothing of it stored.
    let (code, body) = post(&["-H", auth], r#"[{"seq":1},{"seq":2},{"se"#, "/hz.bad");
    assert_eq!(code, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    assert_eq!(post(&["-H", auth], r#"[{"seq":1},5]"#, "/hz.bad").0, 400);
    let (code, body) = post(
        &["-H", auth],
        r#"[{"seq":1},{"time":"yesterday"}]"#,
        "/hz.bad",
    );
    assert_eq!(code, 400);
    assert!(body.contains("not a time"), "{body}");
    assert_eq!(
        post(
            &["-H", auth, "-H", "Content-Type: text/csv"],
            "a,b",
            "/hz.bad"
        )
        .0,
        415
    );
    assert_eq!(
        post(&["-H", auth, "-H", "Content-Encoding: br"], "{}", "/hz.bad").0,
        415
    );
    assert_eq!(post(&["-H", auth], "{}", "/").0, 400, "no tag");
    // Origins.
    let (code, _) = post(
        &["-H", auth, "-H", "Origin: https://evil.org"],
        r#"{"seq":1}"#,
        "/hz.bad",
    );
    assert_eq!(code, 403);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--cacert",
            &ca,
            "-H",
            auth,
            "-H",
            json_h,
            "-H",
            "Origin: https://app.example.com",
            "-d",
            r#"{"seq":1}"#,
            &u("/hz.cors"),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{head}"
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "-X",
            "OPTIONS",
            "--cacert",
            &ca,
            "-H",
            "Origin: https://app.example.com",
            "-H",
            "Access-Control-Request-Method: POST",
            &u("/hz.cors"),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("access-control-allow-methods: post"),
        "{head}"
    );
    // Methods.
    assert_eq!(
        curl(&[
            "--cacert",
            &ca,
            "-X",
            "PUT",
            "-H",
            auth,
            "-d",
            "{}",
            &u("/hz.bad")
        ])
        .0,
        405
    );
    assert_eq!(
        curl(&["--cacert", &ca, &u("/")]).0,
        200,
        "GET is a health check"
    );
    // Plain HTTP to the TLS port gets nowhere.
    assert_eq!(curl(&["-H", auth, "-d", "{}", &url(hp, "/hz.bad")]).0, 0);
    // Idempotency-Key: a retried request is stored once.
    for _ in 0..3 {
        let (code, _) = post(
            &["-H", auth, "-H", "Idempotency-Key: 7c1e-42"],
            r#"[{"seq":1},{"seq":2}]"#,
            "/hz.idem",
        );
        assert_eq!(code, 204);
    }
    // The same key on another body is another request, not lost as a
    // retry; a key with a control character is refused.
    let (code, _) = post(
        &["-H", auth, "-H", "Idempotency-Key: 7c1e-42"],
        r#"[{"seq":3}]"#,
        "/hz.idem",
    );
    assert_eq!(code, 204);
    let (code, body) = post(
        &["-H", auth, "-H", "Idempotency-Key: a\tb"],
        r#"[{"seq":4}]"#,
        "/hz.idem",
    );
    assert_eq!(code, 400, "{body}");

    let m = scrape(weir.metrics_port);
    let rejected = |reason: &str| metric(&m, "weir_http_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("unauthorized"), 2.0);
    assert_eq!(rejected("too_large"), 3.0);
    assert_eq!(rejected("malformed"), 3.0);
    assert_eq!(rejected("bad_encoding"), 2.0);
    assert_eq!(rejected("invalid_time"), 1.0);
    assert_eq!(rejected("unsupported_type"), 1.0);
    assert_eq!(rejected("origin"), 1.0);
    assert_eq!(rejected("method"), 1.0);
    assert!(metric(&m, "weir_forward_duplicate_chunks_total", &[]) >= 2.0);
    assert!(weir.is_running());
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    let counts: BTreeMap<&str, usize> = by.iter().map(|(t, r)| (t.as_str(), r.len())).collect();
    assert_eq!(
        counts,
        [("hz.cors", 1), ("hz.idem", 3), ("hz.ok", 1)]
            .into_iter()
            .collect(),
        "only the accepted requests are stored, once"
    );
}

/// Slow and endless requests hold a connection for forward.request_timeout
/// at most; meanwhile other clients are served.
#[test]
fn slow_and_endless_http_requests_are_cut_at_the_request_timeout() {
    let hp = free_port();
    let weir = Weir::start_with(
        "request_timeout = \"2s\"\n",
        &format!("[http]\nlisten = \"127.0.0.1:{hp}\"\nkeepalive_timeout = \"1s\"\n"),
    );
    // An endless chunked body: one chunk, then nothing.
    let mut endless = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    endless
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    endless
        .write_all(b"POST /slow.a HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"seq\":1}\n      \r\n")
        .unwrap();
    // Headers that never end.
    let mut slow = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"POST /slow.b HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .unwrap();
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();

    // Others are served meanwhile.
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"seq":1}"#,
        &url(hp, "/slow.ok"),
    ]);
    assert_eq!(code, 200, "{body}");

    let (status, text) = read_response(&mut endless).expect("an answer to the endless body");
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || started.elapsed() < Duration::from_secs(10),
        "slow headers: {closed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow headers cut late"
    );
    let mut rest = Vec::new();
    assert!(
        idle.read_to_end(&mut rest).is_ok(),
        "idle connection closed"
    );
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_http_rejected_total", &[("reason", "timeout")]),
        1.0
    );
    assert_eq!(metric(&m, "weir_http_connections_active", &[]), 0.0);
}

/// While other requests hold the memory HTTP requests share, a request is
/// answered 503 with Retry-After (never buffered past the budget) and goes
/// through once the memory is back; a body larger than that memory could
/// ever be is 413, not a 503 a client would retry forever.
#[test]
fn http_answers_503_with_retry_after_when_the_memory_budget_is_spent() {
    let hp = free_port();
    // The pool HTTP requests share: 2 MiB less the 1 MiB reserve.
    let mut weir = Weir::start_with(
        "max_inflight_bytes = \"2MiB\"\nmax_buffer_bytes = \"512KiB\"\nmax_decompressed_bytes = \"512KiB\"\nrequest_timeout = \"60s\"\n",
        &format!("[http]\nlisten = \"127.0.0.1:{hp}\"\nmax_body_bytes = \"4MiB\"\n"),
    );
    assert!(
        weir.log().contains("http.max_body_bytes"),
        "the start warns:\n{}",
        weir.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let post = |name: &str, body: &[u8], tag: &str| {
        let f = write_file(dir.path(), name, body);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-i",
                "--max-time",
                "30",
                "-H",
                "Content-Type: application/x-ndjson",
                "--data-binary",
                &f,
                &url(hp, tag),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let big = ndjson("busy", 80_000);
    assert!(big.len() > 1 << 20);
    let head = post("big.ndjson", &big, "/busy.big");
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("forward.max_inflight_bytes"), "{head}");

    // Another client holds 900 kB of the pool: it sent 900 kB of a 1 MB
    // body and stalls. (Declaring a length alone takes no memory.)
    let mut hold = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    hold.write_all(
        b"POST /busy.hold HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    hold.write_all(&vec![b' '; 900_000]).unwrap();
    let held = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_inflight_bytes",
            &[],
        ) >= 900_000.0
    });
    assert!(held, "the slow request never took its memory");
    let small = ndjson("busy", 15_000);
    assert!(small.len() > 200_000);
    let head = post("small.ndjson", &small, "/busy.small");
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");

    // The slow client goes away: its memory is back, the retry is stored.
    drop(hold);
    let freed = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_inflight_bytes",
            &[],
        ) == 0.0
    });
    assert!(freed, "{}", weir.log());
    let head = post("small.ndjson", &small, "/busy.small");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_http_rejected_total", &[("reason", "busy")]),
        1.0
    );
    assert_eq!(
        metric(&m, "weir_http_rejected_total", &[("reason", "too_large")]),
        1.0
    );
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    assert_eq!(by.keys().collect::<Vec<_>>(), vec!["busy.small"]);
    assert_eq!(by["busy.small"].len(), 15_000);
}

/// What weir adds to every record (headers, the address) counts against
/// the memory for requests in flight as the batch is built: 20,000 tiny
/// records with a 60 kB header would make a 2.4 GB batch; weir answers 413
/// within its memory bound and goes on.
#[test]
fn fields_added_to_every_record_cannot_grow_a_batch_past_the_memory_bound() {
    let hp = free_port();
    let mut weir = Weir::start_with(
        "max_inflight_bytes = \"96MiB\"\nmax_buffer_bytes = \"8MiB\"\nmax_decompressed_bytes = \"8MiB\"\n",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{hp}\"\nadd_remote_addr = true\nadd_http_headers = true\n"
        ),
    );
    let body = "{}\n".repeat(20_000);
    let forwarded = "10.0.0.1, ".repeat(6_000);
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", hp)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(
            format!(
                "POST /amp.big HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nX-Forwarded-For: {forwarded}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("fields weir adds"), "{answer}");
    }
    let peak_mib = weir.peak_rss_kib() / 1024;
    println!("added fields: peak RSS {peak_mib} MiB for 3 requests of a would-be 2.4 GB batch");
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        "{\"ok\":1}",
        &url(hp, "/amp.small"),
    ]);
    assert_eq!(code, 200, "{body}");
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    assert_eq!(by.keys().collect::<Vec<_>>(), vec!["amp.small"]);
    assert_eq!(by["amp.small"].len(), 1);
}

/// A compressed body that expands past what the memory for requests in
/// flight could ever hold (an HTTP request never waits for the reserve) is
/// 413, not a 503 a client would retry forever; a smaller one is stored.
#[test]
fn a_body_expanding_past_the_request_memory_is_413_not_a_retry() {
    let hp = free_port();
    let mut weir = Weir::start_with(
        "max_inflight_bytes = \"4MiB\"\nmax_buffer_bytes = \"512KiB\"\nmax_decompressed_bytes = \"3MiB\"\n",
        &format!("[http]\nlisten = \"127.0.0.1:{hp}\"\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB expanded: within max_decompressed_bytes, past the 512 KiB pool.
    let big = gzip(format!("{{\"a\":\"{}\"}}", "0".repeat(2 << 20)).as_bytes());
    for _ in 0..2 {
        let (code, body) = curl(&[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &write_file(dir.path(), "big.gz", &big),
            &url(hp, "/pool.big"),
        ]);
        assert_eq!(code, 413, "{body}");
        assert!(body.contains("forward.max_inflight_bytes"), "{body}");
    }
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &write_file(
            dir.path(),
            "small.gz",
            &gzip(format!("{{\"a\":\"{}\"}}", "0".repeat(128 << 10)).as_bytes()),
        ),
        &url(hp, "/pool.small"),
    ]);
    assert_eq!(code, 200, "{body}");
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    assert_eq!(by.keys().collect::<Vec<_>>(), vec!["pool.small"]);
    assert_eq!(by["pool.small"].len(), 1);
}

/// One POST on a fresh connection: the status, or None when the request
/// got no answer (refused, reset, timed out).
fn post_once(port: u16, path: &str, body: &[u8], key: Option<&str>) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let key = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n{key}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    read_response(&mut s).ok().map(|(status, _)| status)
}

/// kill -9 while clients post and retry whatever got no 2xx: every event
/// answered 2xx is stored; clients sending an Idempotency-Key see none
/// twice; clients without one may see a retried batch twice (counted and
/// reported, as a forward client without acks would).
#[test]
fn kill_9_while_http_clients_post_loses_nothing_answered_2xx() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let hp = free_port();
    let mut weir = Weir::start(&format!("[http]\nlisten = \"127.0.0.1:{hp}\"\n"));
    let stop = Arc::new(AtomicBool::new(false));
    const BATCH: u64 = 50;
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let keyed = c < 2;
                let tag = format!("/kh.c{c}");
                let (mut acked, mut retried) = (0u64, 0u64);
                let mut b = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..BATCH)
                        .map(|i| format!("{{\"seq\":{}}}\n", b * BATCH + i))
                        .collect();
                    let key = keyed.then(|| format!("c{c}-b{b}"));
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        match post_once(hp, &tag, body.as_bytes(), key.as_deref()) {
                            Some(200) => break,
                            Some(s) if s != 503 => panic!("client {c}: status {s}"),
                            _ => std::thread::sleep(Duration::from_millis(50)),
                        }
                        assert!(tries < 2000, "client {c}: batch {b} never answered 2xx");
                    }
                    if tries > 1 {
                        retried += 1;
                    }
                    acked = b + 1;
                    b += 1;
                }
                (keyed, acked, retried)
            })
        })
        .collect();
    for _ in 0..5 {
        let before = metric(&scrape(weir.metrics_port), "weir_http_events_total", &[]);
        assert!(
            wait_until(Duration::from_secs(30), || {
                metric(&scrape(weir.metrics_port), "weir_http_events_total", &[]) >= before + 2000.0
            }),
            "traffic flows\n{}",
            weir.log()
        );
        weir.kill9();
        std::thread::sleep(Duration::from_millis(300));
        weir.spawn();
    }
    assert!(wait_until(Duration::from_secs(30), || {
        metric(&scrape(weir.metrics_port), "weir_http_events_total", &[]) >= 2000.0
    }));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(bool, u64, u64)> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    weir.drain_and_stop();
    let by = rows_by_tag(&weir.out_dir());
    let mut report = Vec::new();
    for (c, (keyed, batches, retried)) in results.iter().enumerate() {
        let tag = format!("kh.c{c}");
        let mut seqs: Vec<u64> = by
            .get(&tag)
            .map(|rows| {
                rows.iter()
                    .map(|r| r.record["seq"].as_u64().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        seqs.sort_unstable();
        let stored = seqs.len() as u64;
        seqs.dedup();
        let dupes = stored - seqs.len() as u64;
        // Every batch answered 200 is there (the last one may be partly
        // answered only when stopped: count whole acked batches).
        for s in 0..batches * BATCH {
            assert!(
                seqs.binary_search(&s).is_ok(),
                "{tag}: acked event {s} missing"
            );
        }
        if *keyed {
            assert_eq!(dupes, 0, "{tag}: Idempotency-Key retries stored twice");
        }
        assert!(
            dupes <= retried * BATCH,
            "{tag}: {dupes} duplicates from {retried} retried batches"
        );
        report.push(format!(
            "{tag}: keyed={keyed} batches={batches} retried={retried} duplicates={dupes}"
        ));
    }
    eprintln!("kill -9 under HTTP load:\n{}", report.join("\n"));
}

/// A stop does not wait out an HTTP body that stalls (the default
/// `forward.request_timeout` is 60 s, past Kubernetes' 30 s grace): the
/// connection gets at most 5 s, unanswered, and weir exits.
#[test]
fn a_stop_does_not_wait_for_a_stalled_http_body() {
    let hp = free_port();
    let mut weir = Weir::start(&format!("[http]\nlisten = \"127.0.0.1:{hp}\"\n"));
    assert_eq!(post_once(hp, "/stall.ok", b"{\"n\":1}", None), Some(200));
    // Headers and 5 of the 100 body bytes announced, then nothing.
    let mut s = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    s.write_all(
        b"POST /stall.t HTTP/1.1\r\nHost: weir\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
    )
    .unwrap();
    let open = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_http_connections_active",
            &[],
        ) >= 1.0
    });
    assert!(open, "{}\nthe stalled connection is not open", weir.log());
    let asked = Instant::now();
    weir.sigterm();
    let exited = weir.wait_exit(Duration::from_secs(50));
    let took = asked.elapsed();
    assert!(
        exited && took < Duration::from_secs(25),
        "{}\nweir took {took:?} to stop (exited: {exited}); a stalled body held it",
        weir.log()
    );
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        !String::from_utf8_lossy(&reply).contains(" 200 "),
        "the stalled request was not answered 2xx"
    );
}
