//! weir: a log aggregator that speaks the Fluentd forward protocol and rolls
//! events into uniform hourly Parquet files.
//!
//! Stages, in data-flow order, and what each owns under `data_dir`:
//! - [`forward`]: TCP listener; decodes the four forward modes, acks only
//!   after the WAL says the request is durable. Owns nothing on disk.
//! - [`wal`]: write-ahead log with group commit. Owns `wal/`.
//! - [`roll`]: groups events by (route, tag, period) and encodes Parquet row
//!   groups continuously; finishes one file per group. Owns `roll/open/`.
//! - [`outbox`]: finished files and per-sink delivery marks. Owns `outbox/`.
//! - [`sink`]: destinations (local folder; S3, GCS, TD to come).
//!
//! Around them: [`config`] (TOML → validated [`config::Config`]), [`router`]
//! (fluentd tag patterns), [`metrics`] (one Prometheus registry), [`serve`]
//! (wiring and shutdown), [`event`] (the batch type stages pass) and
//! [`msgpack`] (zero-copy reading).

pub mod cli;
pub mod config;
pub mod event;
pub mod failpoint;
pub mod forward;
pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod msgpack;
pub mod outbox;
pub mod roll;
pub mod router;
pub mod serve;
pub mod sink;
pub mod wal;
