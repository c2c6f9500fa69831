//! weir: a log aggregator that speaks the Fluentd forward protocol and rolls
//! events into uniform hourly Parquet files.
//!
//! Stages, in data-flow order, and what each owns under `data_dir`:
//! - [`input`]: forward (TCP, TLS, Unix socket, msgpack or JSON) and HTTP;
//!   each acks only after the WAL says the request is durable. Owns nothing
//!   on disk.
//! - [`wal`]: write-ahead log with group commit. Owns `wal/`.
//! - [`roll`]: groups events by (route, tag, period) and encodes Parquet row
//!   groups continuously; finishes one file per group. Owns `roll/open/`.
//!   Also writes record sinks' parts (Treasure Data, forward) from the same
//!   records.
//! - [`outbox`]: finished files, per-sink delivery marks, the backlog limit.
//!   Owns `outbox/` and `deadletter/`.
//! - [`sink`]: destinations, one per type: local folder, S3, GCS, Iceberg,
//!   Treasure Data's import API, forward servers; the object-key function.
//!
//! Around them: [`config`] (TOML → validated [`config::Config`]; each
//! section's types live in its stage's `config.rs`), `backoff` (the one
//! retry policy), [`backpressure`], `router`
//! (fluentd tag patterns), [`metrics`] (one Prometheus registry), `http`
//! and `health` (`/metrics`, `/healthz`, `/readyz`; what stages report for them in `status`), [`logging`] (text or
//! JSON, rate-limited warnings), [`serve`] (wiring and shutdown), [`event`]
//! (the batch type stages pass), [`msgpack`] (zero-copy reading) and
//! `failpoint` (crash injection for tests). [`tools`] holds the load
//! tools (`weir loadgen`, `weir replay`, the `weir capture` proxy), apart
//! from the pipeline; they share `client` with forward output, and read
//! the [`capture`] files that the forward input's tee
//! (`[forward] capture_dir`) writes.

#![warn(unreachable_pub)]

pub(crate) mod backoff;
pub mod backpressure;
pub mod capture;
pub mod cli;
pub(crate) mod client;
pub mod config;
pub mod event;
pub(crate) mod failpoint;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod ids;
pub mod input;
pub(crate) mod lock;
pub mod logging;
pub mod metrics;
pub mod msgpack;
pub mod outbox;
pub(crate) mod priority;
pub mod roll;
pub(crate) mod router;
pub mod serve;
pub mod signals;
pub mod sink;
pub(crate) mod status;
pub mod tools;
pub mod wal;
