//! `[sinks.NAME]`: each sink type's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::config::{default_true, redact_opt};
use crate::sink::key::{FileParts, Layout};
use crate::sink::kind::SinkKind;

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

impl SinkConfig {
    /// The sink's type, behind which everything about it is asked. The one
    /// place that lists the types (with the enum and [`explain`]).
    pub(crate) fn kind(&self) -> &dyn SinkKind {
        match self {
            SinkConfig::Local(c) => c,
            SinkConfig::S3(c) => c,
            SinkConfig::Gcs(c) => c,
            SinkConfig::Td(c) => c,
            SinkConfig::Iceberg(c) => c,
            SinkConfig::Forward(c) => c,
        }
    }

    /// Key prefix inside the destination.
    pub(crate) fn prefix(&self) -> &str {
        self.kind().prefix()
    }

    /// What the sink takes and can do.
    pub(crate) fn capabilities(&self) -> Capabilities {
        self.kind().capabilities()
    }

    /// The roller's side of a sink that takes records (`name` is its
    /// `[sinks.NAME]`); `None` for a sink that takes files.
    pub(crate) fn record_sink(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<dyn crate::sink::records::RecordSink>> {
        self.kind().record_sink(name)
    }

    /// The key this sink gives a file of `route` named by `parts`; `None`
    /// for a sink that takes records, not files.
    pub(crate) fn file_key(
        &self,
        route: &crate::router::Route,
        parts: &FileParts<'_>,
    ) -> Option<String> {
        self.kind().file_key(route, parts)
    }

    /// Whether the sink takes preview files (`fresh = true`).
    pub(crate) fn fresh(&self) -> bool {
        self.kind().fresh()
    }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSinkConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub(crate) prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub(crate) fresh: bool,
    /// `"folders"` (default: `{tag}/dt=…`) or `"hive"` (`tag={tag}/dt=…`,
    /// so Spark, Hive and Athena read the sink's root as one table).
    #[serde(default)]
    pub(crate) layout: Layout,
}

/// Server-side encryption for S3 objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum S3Encryption {
    /// SSE-S3.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS; needs `kms_key_id`.
    #[serde(rename = "aws:kms")]
    Kms,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    pub(crate) bucket: String,
    #[serde(default)]
    pub(crate) prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub(crate) fresh: bool,
    /// `"folders"` (default: `{tag}/dt=…`) or `"hive"` (`tag={tag}/dt=…`,
    /// so Spark, Hive and Athena read the sink's root as one table).
    #[serde(default)]
    pub(crate) layout: Layout,
    /// Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1.
    pub(crate) region: Option<String>,
    /// For S3-compatible stores (MinIO, Ceph, R2 …): their URL.
    pub(crate) endpoint: Option<String>,
    /// Address buckets as `https://host/bucket` (default) or, when false,
    /// `https://bucket.host`.
    #[serde(default = "default_true")]
    pub(crate) path_style: bool,
    /// Allow plain http endpoints (test stores, in-cluster gateways).
    #[serde(default)]
    pub(crate) allow_http: bool,
    /// Static credentials; without them the standard chain is used
    /// (AWS_* variables, shared credentials profile, web identity / IRSA,
    /// instance metadata).
    pub(crate) access_key_id: Option<String>,
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) secret_access_key: Option<String>,
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) session_token: Option<String>,
    /// Profile of the shared credentials file (`~/.aws/credentials`);
    /// default `AWS_PROFILE`, else "default".
    pub(crate) profile: Option<String>,
    pub(crate) server_side_encryption: Option<S3Encryption>,
    pub(crate) kms_key_id: Option<String>,
    /// e.g. "STANDARD_IA", "INTELLIGENT_TIERING".
    pub(crate) storage_class: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcsSinkConfig {
    pub(crate) bucket: String,
    #[serde(default)]
    pub(crate) prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub(crate) fresh: bool,
    /// `"folders"` (default: `{tag}/dt=…`) or `"hive"` (`tag={tag}/dt=…`,
    /// so Spark, Hive and Athena read the sink's root as one table).
    #[serde(default)]
    pub(crate) layout: Layout,
    /// Service-account JSON file; without it application default
    /// credentials are used (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file,
    /// or the metadata server / Workload Identity).
    pub(crate) service_account_path: Option<PathBuf>,
    /// Service-account JSON given inline (e.g. `"${GCS_SERVICE_ACCOUNT}"`).
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) service_account_key: Option<String>,
    /// A fixed OAuth bearer token (tokens refreshed outside weir, or a local
    /// GCS endpoint named by the service account's `gcs_base_url`).
    #[serde(default, serialize_with = "redact_opt")]
    pub(crate) bearer_token: Option<String>,
    /// e.g. "NEARLINE".
    pub(crate) storage_class: Option<String>,
}

impl SinkConfig {
    /// Checks one sink's settings (`name` for the keys).
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self, name: &str) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid::new(key, message);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            return Err(invalid(
                &format!("sinks.{name}"),
                "sink names must be letters, digits, '_' or '-'".into(),
            ));
        }
        crate::sink::key::validate_prefix(self.prefix())
            .map_err(|m| invalid(&format!("sinks.{name}.prefix"), m))?;
        self.kind().validate(name)
    }
}

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
        serde_path_to_error::deserialize::<_, T>(v).err().map(|e| {
            (
                crate::config::dotted(e.path()),
                crate::config::first_line(e.inner()),
            )
        })
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
