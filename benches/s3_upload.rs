//! Upload throughput of the S3 sink (multipart, 8 MiB parts) to a local
//! s3s-fs server, which `scripts/test` installs under target/testinfra. The
//! bench is skipped, with a message, when that server is not installed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::config::Config;

#[path = "support.rs"]
mod support;

const FILE_BYTES: usize = 64 << 20;

fn upload(c: &mut Criterion) {
    let bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testinfra/s3s/bin/s3s-fs");
    if !bin.exists() {
        eprintln!(
            "s3_upload: {} not installed (run scripts/test once); skipped",
            bin.display()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("logs")).unwrap();
    let port = support::free_port();
    let mut server = Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "testing",
            "--secret-key",
            "testing",
        ])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for_port(port, "s3s-fs", || {
        server
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("exited with {status}"))
    });
    let config = Config::from_str(
        &format!(
            "node_id='b'\n[sinks.lake]\ntype='s3'\nbucket='logs'\nendpoint='http://127.0.0.1:{port}'\nallow_http=true\nregion='us-east-1'\naccess_key_id='testing'\nsecret_access_key='testing'\n"
        ),
        "bench",
    )
    .unwrap();
    let ctx = weir::sink::BuildContext {
        node_id: &config.node_id,
        data_dir: &config.data_dir,
        routes: &config.routes,
        metrics: weir::metrics::Metrics::new(),
    };
    let built = weir::sink::build_all(&config.sinks, &ctx).unwrap();
    let sink = built.sinks["lake"].clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.parquet");
    let mut f = std::fs::File::create(&file).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(FILE_BYTES);
    while buf.len() < FILE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    f.write_all(&buf).unwrap();
    drop(f);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("s3_upload");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(FILE_BYTES as u64));
    g.bench_function("64MiB_multipart", |b| {
        b.iter(|| rt.block_on(sink.put("bench/f.parquet", &file)).unwrap())
    });
    g.finish();
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, upload);
criterion_main!(benches);
