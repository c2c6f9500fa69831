//! End-to-end tests: the real `weir` binary as a child process, real clients,
//! real Parquet readers. They live in one test binary so their waits for
//! period ends overlap (run with several test threads; `scripts/test` does).
#![allow(dead_code)]

mod backpressure;
mod bad_input;
mod bounds;
mod capture_replay;
mod common;
mod crash;
mod dedupe;
mod drain;
mod fanout;
mod forward_out;
mod freshness;
mod full_disk;
mod granularity;
mod handshake;
mod hive_layout;
mod http_input;
mod iceberg;
mod iceberg_failures;
mod input_peers;
mod json_unix;
mod loadgen;
mod observability;
mod operations;
mod operator;
mod peers;
mod pipelining;
mod postgres;
mod real_clients;
mod reload;
mod restore;
mod retention;
mod servers;
mod shutdown;
mod td;
mod tls;
mod watchdog;
