//! The forward-protocol listener (forward-protocol.md).
//!
//! - [`decode`]: one complete request → an [`EventBatch`](crate::event::EventBatch), no I/O;
//! - `json`: requests sent as JSON (Fluentd's in_forward accepts them), turned
//!   into the msgpack `decode` reads, and JSON acks;
//! - `time`, `decompress`: the value forms inside a request;
//! - [`handshake`]: the optional shared-key HELO/PING/PONG;
//! - `connection`: one client's read loop: frame, decode, append to the WAL,
//!   then ack;
//! - `listener`: the accept loop; `heartbeat`: UDP heartbeat replies;
//! - `budget`: the memory all connections' requests in flight share.
//!
//! A connection's errors stay in its task: the process and other
//! connections carry on (invariant 5).

pub(crate) mod budget;
pub(crate) mod config;
pub(crate) mod connection;
pub mod decode;
pub(crate) mod decompress;
pub mod handshake;
pub(crate) mod heartbeat;
pub(crate) mod json;
pub(crate) mod listener;
pub(crate) mod messages;
mod pipeline;
pub(crate) mod server;
pub(crate) mod settings;
pub(crate) mod time;

pub(crate) use settings::ConnectionSettings;
