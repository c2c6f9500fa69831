//! Mutation fuzzing of everything that reads network bytes: the frame
//! scanner, the request decoder (all modes, gzip/zstd), the record → JSON
//! and TD-part encoders downstream, and the handshake's PING check. Inputs
//! are the protocol vectors, randomly flipped, cut, spliced, duplicated and
//! extended; nothing may panic, and a decoded batch must read back intact.
//!
//! The normal suite runs a bounded count (WEIR_FUZZ_ITERS, default 200000).
//! A long run: `WEIR_FUZZ_ITERS=5000000 cargo test --release --test fuzz_decoder -- --nocapture`
//! (WEIR_FUZZ_SEED picks the sequence; a failure prints the seed and input).

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::config::SecurityConfig;
use weir::event::EventBatch;
use weir::input::forward::decode::{decode_request, DecodeLimits, Request};
use weir::input::forward::handshake::{check_ping, Challenge};
use weir::msgpack::{Cursor, FrameScanner};
use weir::roll::json::write_value;

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/vectors");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    // A PING, so mutations reach the handshake's parser too.
    let mut ping = Vec::new();
    rmp::encode::write_array_len(&mut ping, 6).unwrap();
    for f in [
        "PING",
        "host",
        "salt",
        &"a".repeat(128),
        "user",
        &"b".repeat(128),
    ] {
        rmp::encode::write_str(&mut ping, f).unwrap();
    }
    v.push(ping);
    v.sort();
    v
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut d = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..6) {
        match rng.random_range(0..7) {
            0 if !d.is_empty() => {
                let i = rng.random_range(0..d.len());
                d[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !d.is_empty() => {
                let i = rng.random_range(0..d.len());
                d[i] = rng.random();
            }
            2 if !d.is_empty() => {
                let cut = rng.random_range(0..d.len());
                d.truncate(cut);
            }
            3 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let at = rng.random_range(0..=d.len());
                let from = rng.random_range(0..=other.len());
                d.splice(at..at, other[from..].iter().copied());
            }
            4 => {
                let at = rng.random_range(0..=d.len());
                // Interesting bytes: markers for big lengths, ext, nil, 0xc1.
                let b = [
                    0xdb, 0xdd, 0xdf, 0xc6, 0xc7, 0xd7, 0xc0, 0xc1, 0xff, 0x00, 0x7f,
                ];
                d.insert(at, b[rng.random_range(0..b.len())]);
            }
            5 if d.len() > 1 => {
                let i = rng.random_range(0..d.len() - 1);
                d.swap(i, i + 1);
            }
            _ => {
                let n = rng.random_range(0..8);
                d.extend((0..n).map(|_| rng.random::<u8>()));
            }
        }
    }
    d
}

fn exercise(input: &[u8], limits: &DecodeLimits, sec: &SecurityConfig, challenge: &Challenge) {
    // Framing, fed in random-sized pieces, must agree with whole-buffer framing.
    let whole = FrameScanner::new().scan(input);
    let mut s = FrameScanner::new();
    let mut piecewise = Ok(None);
    for end in [input.len() / 3, input.len() / 2, input.len()] {
        piecewise = s.scan(&input[..end]);
        if piecewise.is_err() || matches!(piecewise, Ok(Some(_))) {
            break;
        }
    }
    if let (Ok(Some(a)), Ok(Some(b))) = (&whole, &piecewise) {
        assert_eq!(a, b, "framing differs when fed in pieces");
    }
    let frame = match whole {
        Ok(Some(n)) => &input[..n],
        _ => input,
    };
    if let Ok(Request::Events(d)) = decode_request(frame, limits, 1) {
        if let Some(batch) = d.batch {
            let back = EventBatch::from_bytes(batch.as_bytes().clone()).expect("batch reads back");
            assert_eq!(back.len(), batch.len());
            for ev in back.events() {
                let mut json = String::new();
                write_value(&mut json, &mut Cursor::new(ev.record)).expect("record is valid");
                assert!(json.starts_with('{') && json.ends_with('}'));
            }
        }
    }
    let _ = check_ping(frame, "127.0.0.1".parse().unwrap(), challenge, sec);
}

#[test]
fn mutated_protocol_input_never_panics() {
    let iters: u64 = std::env::var("WEIR_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("WEIR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let corpus = corpus();
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
    };
    let sec: SecurityConfig = toml::from_str(
        "self_hostname='w'\nshared_key='k'\nuser_auth=true\nusers=[{username='user',password='p'}]",
    )
    .unwrap();
    let challenge = Challenge::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut decoded = 0u64;
    for i in 0..iters {
        let input = mutate(&mut rng, &corpus);
        let r = std::panic::catch_unwind(|| exercise(&input, &limits, &sec, &challenge));
        if r.is_err() {
            panic!("seed {seed}, iteration {i}: panicked on input {input:02x?}");
        }
        if matches!(decode_request(&input, &limits, 1), Ok(Request::Events(_))) {
            decoded += 1;
        }
    }
    println!("fuzz: {iters} inputs (seed {seed}), {decoded} decoded as event requests, no panic");
    assert!(
        decoded > iters / 50,
        "mutations too destructive: only {decoded} decoded"
    );
}
