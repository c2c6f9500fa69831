//! Forward decoding: PackedForward (1000 × ~200 B events) from complete
//! bytes to an EventBatch, plus framing the same bytes from a stream.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use weir::input::forward::decode::{decode_request, DecodeLimits};
use weir::msgpack::FrameScanner;

#[path = "support.rs"]
mod support;

fn decode(c: &mut Criterion) {
    let req = support::packed_forward(
        "app.access",
        support::EVENTS_PER_REQUEST,
        1_764_090_000,
        Some("abc"),
    );
    let limits = DecodeLimits {
        max_decompressed_bytes: 256 << 20,
    };
    let mut g = c.benchmark_group("decode_packed_forward");
    g.throughput(Throughput::Elements(support::EVENTS_PER_REQUEST as u64));
    g.bench_function("events", |b| {
        b.iter(|| decode_request(black_box(&req), &limits, 0).unwrap())
    });
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("bytes", |b| {
        b.iter(|| decode_request(black_box(&req), &limits, 0).unwrap())
    });
    g.bench_function("frame_scan", |b| {
        b.iter(|| FrameScanner::new().scan(black_box(&req)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
