//! The forward-protocol listener (forward-protocol.md).
//!
//! - [`decode`]: one complete request → an [`EventBatch`](crate::event::EventBatch), no I/O;
//! - [`time`], [`decompress`]: the value forms inside a request;
//! - [`handshake`]: the optional shared-key HELO/PING/PONG;
//! - [`connection`]: one client's read loop: frame, decode, append to the WAL,
//!   then ack;
//! - [`listener`]: the accept loop; [`heartbeat`]: UDP heartbeat replies;
//! - [`budget`]: the memory all connections' requests in flight share.
//!
//! A connection's errors stay in its task: the process and other
//! connections carry on (invariant 5).

pub mod budget;
pub mod connection;
pub mod decode;
pub mod decompress;
pub mod handshake;
pub mod heartbeat;
pub mod listener;
mod pipeline;
pub mod time;
pub mod tls;

pub use connection::ConnectionSettings;
