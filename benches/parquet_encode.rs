//! Parquet encoding: rows/s through the roller's file writer (msgpack record
//! → declared columns + JSON `record`, zstd), with and without declared
//! columns, and with the `period` column of a route that has an Iceberg table.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir::config::Config;
use weir::roll::{Encoder, PartitionWriter, RouteSchema};

#[path = "support.rs"]
mod support;

const ROWS: usize = 50_000;

fn encode(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..ROWS).map(support::record).collect();
    let dir = tempfile::tempdir().unwrap();
    let encoder = Encoder::start().unwrap();
    let mut g = c.benchmark_group("parquet_encode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    // `table`: the route has an Iceberg sink, so files carry `period`.
    for (name, toml, table) in [
        ("record_only", "node_id='b'\n", false),
        ("record_only_table", "node_id='b'\n", true),
        (
            "declared_columns",
            "node_id='b'\n[[route]]\nmatch='**'\ncolumns={status='int32', path='string', latency_ms='float64'}\n",
            false,
        ),
    ] {
        let config = Config::from_str(toml, "bench").unwrap();
        let schema = RouteSchema::new(&config.routes[0], &config.roll, table).unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(
                || PartitionWriter::create(&dir.path().join("f.parquet"), &schema, &encoder, 0).unwrap(),
                |mut w| {
                    w.set_tag(b"app.access");
                    for (i, r) in records.iter().enumerate() {
                        w.append(1_764_090_000_000_000_000 + i as i64, r).unwrap();
                    }
                    w.finish().unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
