//! Shared traffic for the benchmarks: PackedForward requests of ~200-byte
//! records, the shape the targets are stated for.
#![allow(dead_code)]

use std::time::{Duration, Instant};

pub const EVENTS_PER_REQUEST: usize = 1000;

/// A port nothing listens on, below the kernel's ephemeral range (32768 and
/// up), so no outgoing connection takes it between this check and the
/// server's bind (a server that lost the race to another program would
/// leave the benchmark talking to that program).
pub fn free_port() -> u16 {
    let start = 20_000 + (std::process::id() % 5_000) as u16 * 2;
    (start..32_000)
        .chain(20_000..start)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or_else(|| panic!("no free port in 20000..32000"))
}

/// Waits up to a minute for `what` to accept on `port`; fails at once when
/// `gone` says the server ended (its reason), so a server that cannot start
/// never hangs the suite.
pub fn wait_for_port(port: u16, what: &str, mut gone: impl FnMut() -> Option<String>) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(why) = gone() {
            panic!("{what} ended before it listened on port {port}: {why}");
        }
        assert!(
            Instant::now() < give_up,
            "{what} did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn w_str(b: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(b, s).unwrap();
}

/// One ~200-byte access-log record as msgpack.
pub fn record(i: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    rmp::encode::write_map_len(&mut b, 7).unwrap();
    w_str(&mut b, "host");
    w_str(&mut b, &format!("web-{:02}", i % 32));
    w_str(&mut b, "method");
    w_str(&mut b, if i.is_multiple_of(5) { "POST" } else { "GET" });
    w_str(&mut b, "path");
    w_str(&mut b, &format!("/api/v1/items/{}", i * 7919 % 100_000));
    w_str(&mut b, "status");
    rmp::encode::write_uint(&mut b, if i.is_multiple_of(50) { 500 } else { 200 }).unwrap();
    w_str(&mut b, "latency_ms");
    rmp::encode::write_f64(&mut b, (i % 1000) as f64 * 0.25).unwrap();
    w_str(&mut b, "request_id");
    w_str(
        &mut b,
        &format!("{:032x}", (i as u128).wrapping_mul(0x9e3779b97f4a7c15)),
    );
    w_str(&mut b, "user_agent");
    w_str(&mut b, "Mozilla/5.0 (X11; Linux x86_64) weir-bench/1.0");
    b
}

/// The entries blob of a PackedForward request: `[EventTime, record]` × n.
pub fn entries(n: usize, time_sec: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..n {
        b.push(0x92);
        b.extend_from_slice(&[0xd7, 0x00]);
        b.extend_from_slice(&time_sec.to_be_bytes());
        b.extend_from_slice(&(i as u32 * 1000).to_be_bytes());
        b.extend(record(i));
    }
    b
}

/// `[tag, bin(entries), {"size": n, "chunk": chunk}]`
pub fn packed_forward(tag: &str, n: usize, time_sec: u32, chunk: Option<&str>) -> Vec<u8> {
    packed_forward_from(tag, &entries(n, time_sec), n, chunk)
}

/// The same, around an entries blob made once (chunk ids must differ per
/// request: weir acks a repeated id without storing it again).
pub fn packed_forward_from(tag: &str, e: &[u8], n: usize, chunk: Option<&str>) -> Vec<u8> {
    let mut b = Vec::with_capacity(e.len() + 64);
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    w_str(&mut b, tag);
    rmp::encode::write_bin(&mut b, e).unwrap();
    rmp::encode::write_map_len(&mut b, if chunk.is_some() { 2 } else { 1 }).unwrap();
    w_str(&mut b, "size");
    rmp::encode::write_uint(&mut b, n as u64).unwrap();
    if let Some(c) = chunk {
        w_str(&mut b, "chunk");
        w_str(&mut b, c);
    }
    b
}
