//! Load tools: `weir loadgen` now; capture and replay build on the same
//! client and report (issue 5).

pub mod client;
pub mod loadgen;
pub mod report;
