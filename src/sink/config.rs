//! `[sinks.NAME]`: each sink type's settings.

use serde::{Deserialize, Serialize};

use crate::config::fields::{dotted, first_line};
use crate::sink::stores::{GcsSinkConfig, LocalSinkConfig, S3SinkConfig};

/// `[sinks.NAME]`: a destination for finished files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// A local folder.
    Local(LocalSinkConfig),
    /// Amazon S3 or an S3-compatible store.
    S3(S3SinkConfig),
    /// Google Cloud Storage.
    Gcs(GcsSinkConfig),
    /// Treasure Data's import API (records, not Parquet files).
    Td(crate::sink::td::config::TdSinkConfig),
    /// An Apache Iceberg table per route (the route's files, committed).
    Iceberg(crate::sink::iceberg::config::IcebergSinkConfig),
    /// Forward servers: Fluentd, Fluent Bit, another weir (records).
    Forward(crate::sink::forward::config::ForwardSinkConfig),
}

/// What a sink takes and can do. The roller, outbox, redeliver and the
/// preview sweeper ask this, never the sink's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// Takes the records routed to it (as parts it formats: a
    /// [`RecordSink`](crate::sink::records::RecordSink)), not Parquet files.
    pub(crate) records: bool,
    /// Files become visible only when committed (a table).
    pub(crate) commits: bool,
    /// Keys can be listed and deleted, so previews can be swept.
    pub(crate) lists: bool,
}

/// What an object sink (local, S3, GCS) can do.
pub(crate) const OBJECT_SINK: Capabilities = Capabilities {
    records: false,
    commits: false,
    lists: true,
};

/// What a record sink (Treasure Data, forward) can do.
pub(crate) const RECORD_SINK: Capabilities = Capabilities {
    records: true,
    commits: false,
    lists: false,
};

/// Why a sink's table does not read as its `type`, with the key inside the
/// table it concerns ("" for the table itself); `None` if it reads.
pub(crate) fn explain(table: &toml::Value) -> Option<(String, String)> {
    let Some(ty) = table.get("type").and_then(toml::Value::as_str) else {
        return Some((
            "type".into(),
            "missing: one of \"local\", \"s3\", \"gcs\", \"td\", \"iceberg\", \"forward\"".into(),
        ));
    };
    let mut rest = table.as_table()?.clone();
    rest.remove("type");
    let rest = toml::Value::Table(rest);
    fn check<T: serde::de::DeserializeOwned>(v: toml::Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(v)
            .err()
            .map(|e| (dotted(e.path()), first_line(e.inner())))
    }
    match ty {
        "local" => check::<LocalSinkConfig>(rest),
        "s3" => check::<S3SinkConfig>(rest),
        "gcs" => check::<GcsSinkConfig>(rest),
        "td" => check::<crate::sink::td::config::TdSinkConfig>(rest),
        "iceberg" => check::<crate::sink::iceberg::config::IcebergSinkConfig>(rest),
        "forward" => check::<crate::sink::forward::config::ForwardSinkConfig>(rest),
        other => Some((
            "type".into(),
            format!("unknown sink type {other:?}: one of \"local\", \"s3\", \"gcs\", \"td\", \"iceberg\", \"forward\""),
        )),
    }
}
