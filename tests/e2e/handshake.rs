//! The shared-key handshake against a real client (@fluent-org/logger with
//! its `security` options) and a raw client that checks each PONG reason.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use weir::input::forward::handshake::sha512_hex;
use weir::msgpack::{Cursor, Head};

use crate::common::*;

const SECURITY: &str = "[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"s3cret\"\nuser_auth = true\nusers = [{ username = \"alice\", password = \"pw\" }]\n";

/// Reads one complete msgpack object from the socket.
fn read_obj(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut scanner = weir::msgpack::FrameScanner::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(n) = scanner.scan(&buf).unwrap() {
            return buf[..n].to_vec();
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a whole message");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads HELO and returns (nonce, auth salt).
fn read_helo(s: &mut std::net::TcpStream) -> (Vec<u8>, Vec<u8>) {
    let helo = read_obj(s);
    let mut c = Cursor::new(&helo);
    assert_eq!(c.head().unwrap(), Head::Array(2));
    assert_eq!(c.bytes().unwrap().unwrap(), b"HELO");
    let Head::Map(n) = c.head().unwrap() else {
        panic!("HELO options")
    };
    let (mut nonce, mut auth) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let k = c.bytes().unwrap().unwrap().to_vec();
        match k.as_slice() {
            b"nonce" => nonce = c.bytes().unwrap().unwrap().to_vec(),
            b"auth" => auth = c.bytes().unwrap().unwrap().to_vec(),
            _ => {
                c.skip().unwrap();
            }
        }
    }
    assert_eq!((nonce.len(), auth.len()), (16, 16));
    (nonce, auth)
}

/// Sends PING with `key`/`user`/`password`; returns (ok, reason, server host, digest).
fn ping(
    port: u16,
    key: &str,
    user: &str,
    password: &str,
) -> (bool, String, String, String, std::net::TcpStream) {
    let mut s = connect(port).unwrap();
    let (nonce, auth) = read_helo(&mut s);
    let salt = b"0123456789abcdef0123456789abcdef";
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 6).unwrap();
    for f in [
        "PING".to_string(),
        "raw.client".to_string(),
        String::from_utf8(salt.to_vec()).unwrap(),
        sha512_hex(&[salt, b"raw.client", &nonce, key.as_bytes()]),
        user.to_string(),
        sha512_hex(&[&auth, user.as_bytes(), password.as_bytes()]),
    ] {
        mp_str(&mut b, &f);
    }
    s.write_all(&b).unwrap();
    let pong = read_obj(&mut s);
    let mut c = Cursor::new(&pong);
    assert_eq!(c.head().unwrap(), Head::Array(5));
    assert_eq!(c.bytes().unwrap().unwrap(), b"PONG");
    let ok = c.head().unwrap() == Head::Bool(true);
    let mut text = || String::from_utf8(c.bytes().unwrap().unwrap().to_vec()).unwrap();
    let (reason, host, digest) = (text(), text(), text());
    if ok {
        // The server proves it knows the key too.
        assert_eq!(
            digest,
            sha512_hex(&[salt, host.as_bytes(), &nonce, key.as_bytes()])
        );
    }
    (ok, reason, host, digest, s)
}

fn closed(mut s: std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn shared_key_and_users_are_checked_and_good_clients_keep_flowing() {
    let weir = Weir::start(SECURITY);
    let port = weir.port;

    // Wrong key and wrong password: PONG false with Fluentd's reasons, then close.
    let (ok, reason, _, _, s) = ping(port, "wrong", "alice", "pw");
    assert!(!ok);
    assert_eq!(reason, "shared_key mismatch");
    assert!(closed(s));
    let (ok, reason, _, _, s) = ping(port, "s3cret", "alice", "nope");
    assert!(!ok);
    assert_eq!(reason, "username/password mismatch");
    assert!(closed(s));
    // Events before the handshake are not accepted.
    let mut early = connect(port).unwrap();
    read_helo(&mut early);
    let _ = early.write_all(&forward_request(
        "hs.early",
        &[(now_secs(), "early".into())],
        Some("e"),
        0,
    ));
    let pong = read_obj(&mut early);
    let mut c = Cursor::new(&pong);
    assert_eq!(c.head().unwrap(), Head::Array(5));
    assert_eq!(c.bytes().unwrap().unwrap(), b"PONG");
    assert_eq!(c.head().unwrap(), Head::Bool(false));
    assert_eq!(c.bytes().unwrap().unwrap(), b"invalid ping message");
    assert!(closed(early));

    // The right key and user: acked events from a raw client…
    let (ok, reason, host, _, mut s) = ping(port, "s3cret", "alice", "pw");
    assert!(ok, "{reason}");
    assert_eq!(host, "weir-server");
    let t = now_secs();
    send_acked(
        &mut s,
        &forward_request("hs.raw", &[(t, "raw-1".into())], Some("r1"), 0),
        "r1",
    )
    .unwrap();

    // …and from @fluent-org/logger with its security options.
    let out = Command::new("node")
        .env("NODE_PATH", node_path())
        .env("WEIR_SHARED_KEY", "s3cret")
        .env("WEIR_USERNAME", "alice")
        .env("WEIR_PASSWORD", "pw")
        .arg(support("fluent_org_client.js"))
        .args([
            &port.to_string(),
            "PackedForward",
            "hs",
            "node",
            "50",
            &t.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", weir.log());

    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(
            &m,
            "weir_forward_handshake_failures_total",
            &[("reason", "shared_key_mismatch")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "weir_forward_handshake_failures_total",
            &[("reason", "user_mismatch")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "weir_forward_handshake_failures_total",
            &[("reason", "invalid_ping")]
        ),
        1.0
    );
    assert!(!weir.log().contains("s3cret"), "secrets never logged");

    let ok = wait_until(Duration::from_secs(150), || weir.output_files().len() == 2);
    assert!(ok, "{:?}", weir.output_files());
    let rows = read_rows(&weir.out_dir());
    let tags: BTreeSet<&str> = rows.iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(tags, BTreeSet::from(["hs.node", "hs.raw"]));
    assert_eq!(rows.len(), 51);
}

#[test]
fn anonymous_sources_can_be_denied_by_network() {
    let weir = Weir::start(
        "[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"k\"\nallow_anonymous_source = false\nclients = [{ network = \"10.0.0.0/8\" }]\n",
    );
    let (ok, reason, _, _, s) = ping(weir.port, "k", "", "");
    assert!(!ok);
    assert_eq!(reason, "anonymous source host '127.0.0.1' denied");
    assert!(closed(s));
    // A rule for this host lets it in, with its own key.
    let weir2 = Weir::start(
        "[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"k\"\nallow_anonymous_source = false\nclients = [{ host = \"127.0.0.1\", shared_key = \"local-key\" }]\n",
    );
    let (ok, reason, ..) = ping(weir2.port, "local-key", "", "");
    assert!(ok, "{reason}");
}

#[test]
fn udp_heartbeats_are_answered_with_a_zero_byte() {
    let weir = Weir::start("");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for payload in [&b"\0"[..], b"ping", &[0u8; 200]] {
        sock.send_to(payload, ("127.0.0.1", weir.port)).unwrap();
        let mut buf = [9u8; 8];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0u8]);
        assert_eq!(from.port(), weir.port);
    }
}

#[test]
fn a_thousand_connect_only_heartbeats_leak_nothing() {
    // Fluentd's default heartbeat is a bare TCP connect, once a second per
    // client, with a handshake when one is configured.
    let weir = Weir::start(SECURITY);
    let before = weir.fd_count();
    for _ in 0..1000 {
        drop(std::net::TcpStream::connect(("127.0.0.1", weir.port)).unwrap());
    }
    let settled = wait_until(Duration::from_secs(20), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_connections_active",
            &[],
        ) == 0.0
    });
    assert!(settled, "connections still open");
    let after = weir.fd_count();
    assert!(after <= before + 2, "fds: {before} before, {after} after");
    let m = scrape(weir.metrics_port);
    assert!(metric(&m, "weir_forward_connections_accepted_total", &[]) >= 1000.0);
    assert!(
        !weir.log().contains("WARN"),
        "heartbeats must not log warnings:\n{}",
        weir.log()
    );
}

#[test]
fn slow_requests_keepalive_and_tag_prefix_settings() {
    let weir = Weir::start_with(
        "request_timeout = \"1s\"\ndeny_keepalive = true\nlinger_zero = true\ntag_prefix = \"edge\"\nsource_address_key = \"src_ip\"\nsource_hostname_key = \"src_host\"\nchunk_size_warn_limit = 40",
        "",
    );
    // Slowloris: half a request, then nothing; closed after request_timeout,
    // long before the idle timeout, while others carry on.
    let req = forward_request("slow", &[(now_secs(), "s".into())], Some("s"), 0);
    let mut slow = connect(weir.port).unwrap();
    slow.write_all(&req[..req.len() / 2]).unwrap();
    let started = std::time::Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(slow.read(&mut b).unwrap_or(0), 0, "slow request closed");
    assert!(started.elapsed() < Duration::from_secs(10));
    // deny_keepalive: one request per connection, acked, then closed.
    let mut s = connect(weir.port).unwrap();
    let t = now_secs();
    send_acked(
        &mut s,
        &forward_request("app", &[(t, "k1".into())], Some("k1"), 0),
        "k1",
    )
    .unwrap();
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "closed after one request");
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(
            &m,
            "weir_forward_connections_closed_total",
            &[("reason", "request_timeout")]
        ),
        1.0
    );
    assert!(
        metric(
            &m,
            "weir_forward_connections_closed_total",
            &[("reason", "no_keepalive")]
        ) >= 1.0
    );
    // tag_prefix: the file is under the prefixed tag.
    let ok = wait_until(Duration::from_secs(150), || !weir.output_files().is_empty());
    assert!(ok);
    assert_eq!(weir.output_files(), vec![minute_key("edge.app", t)]);
}
