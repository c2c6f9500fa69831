//! The load tools, apart from the pipeline: `weir loadgen` (synthetic
//! traffic), `weir replay` (captured traffic, files in the
//! [`crate::capture`] format) and `weir capture` (a proxy that records what
//! clients send to any forward server). They share one forward client
//! ([`crate::client`], the one forward output uses) and one report.

pub mod capture;
pub mod loadgen;
pub(crate) mod options;
pub mod playback;
pub mod report;
pub(crate) mod rewrite;
pub(crate) mod wire;
pub(crate) use capture::CaptureArgs;
pub(crate) use loadgen::LoadgenArgs;
pub(crate) use playback::ReplayArgs;
