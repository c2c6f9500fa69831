//! Where a tag's events go: its route (remembered per tag), the record
//! sinks of each route, whether a route has sinks that take Parquet files,
//! and which of them take previews. Built once from the config; the tag
//! cache is the only thing that changes.
//!
//! # Memory
//! The tag cache holds at most [`ROUTE_CACHE`] tags (then it starts over),
//! so the number of tags clients choose cannot grow it; the rest is one
//! entry per route and sink.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::sink::RecordSink;

/// Tags whose route is remembered; past it the cache starts over.
pub(super) const ROUTE_CACHE: usize = 65_536;

pub(super) struct Destinations {
    /// Tag → route index (`None`: no route takes it).
    routes: HashMap<Vec<u8>, Option<usize>>,
    /// Sinks that take records (parts) rather than Parquet files.
    record_sinks: Vec<Arc<dyn RecordSink>>,
    /// Record sinks of each route (indexes into `record_sinks`).
    route_records: Vec<Vec<usize>>,
    /// Whether each route has a sink that takes Parquet files.
    route_has_files: Vec<bool>,
    /// Sinks of each route that take previews (`fresh = true`).
    route_fresh: Vec<Vec<String>>,
}

impl Destinations {
    pub(super) fn new(config: &Config) -> Self {
        let record_sinks = crate::sink::record_sinks(&config.sinks);
        let is_record_sink = |s: &str| record_sinks.iter().any(|t| t.name() == s);
        let route_records = config
            .routes
            .iter()
            .map(|r| {
                record_sinks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| r.sinks.iter().any(|s| s == t.name()))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let route_has_files = config
            .routes
            .iter()
            .map(|r| r.sinks.iter().any(|s| !is_record_sink(s)))
            .collect();
        let route_fresh = config
            .routes
            .iter()
            .map(|r| {
                r.sinks
                    .iter()
                    .filter(|s| config.sinks.get(*s).is_some_and(|c| c.fresh()))
                    .cloned()
                    .collect()
            })
            .collect();
        Self {
            routes: HashMap::new(),
            record_sinks,
            route_records,
            route_has_files,
            route_fresh,
        }
    }

    /// The route of `tag`, remembered.
    pub(super) fn route_of(&mut self, tag: &[u8], config: &Config) -> Option<usize> {
        if let Some(r) = self.routes.get(tag) {
            return *r;
        }
        let r = config.route_for(tag);
        self.routes.insert(tag.to_vec(), r);
        r
    }

    /// Starts the tag cache over once it passes its bound.
    pub(super) fn trim(&mut self) {
        if self.routes.len() > ROUTE_CACHE {
            self.routes.clear();
        }
    }

    pub(super) fn record_sinks(&self) -> &[Arc<dyn RecordSink>] {
        &self.record_sinks
    }

    pub(super) fn record_sink(&self, i: usize) -> &Arc<dyn RecordSink> {
        &self.record_sinks[i]
    }

    /// The index of the record sink called `name`.
    pub(super) fn record_sink_named(&self, name: &str) -> Option<usize> {
        self.record_sinks.iter().position(|t| t.name() == name)
    }

    /// The record sinks `route` sends to.
    pub(super) fn records_of(&self, route: usize) -> &[usize] {
        &self.route_records[route]
    }

    /// Whether `route` has a sink that takes Parquet files.
    pub(super) fn has_files(&self, route: usize) -> bool {
        self.route_has_files[route]
    }

    /// The sinks of `route` that take previews.
    pub(super) fn fresh_sinks(&self, route: usize) -> &[String] {
        &self.route_fresh[route]
    }
}
