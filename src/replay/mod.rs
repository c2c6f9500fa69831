//! Load tools: `weir loadgen` (synthetic traffic) and `weir replay`
//! (captured traffic, see [`crate::capture`]), sharing one forward client
//! and one report.

pub mod loadgen;
pub mod options;
pub mod playback;
pub mod report;
pub(crate) mod rewrite;
pub mod wire;
