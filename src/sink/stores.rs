//! Where object sinks write: a local folder, S3 or GCS (`[sinks.NAME]` of
//! type local, s3 or gcs, and an Iceberg warehouse's store), and how keys
//! are laid out in them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::fields::{default_true, redact_opt};

/// How a file's group (its tag, or its route's name) appears in its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Layout {
    /// `{group}/dt=…`: a folder per tag (or per route).
    #[default]
    Folders,
    /// `tag={tag}/dt=…` (`route={route}/dt=…` for a per-route file): every
    /// folder under the prefix is a Hive partition.
    Hive,
}

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

/// Where in its store an object sink's files go: the settings every store
/// has, read the same way for each.
pub(crate) trait ObjectPlace {
    /// Key prefix inside the store.
    fn prefix(&self) -> &str;
    fn layout(&self) -> Layout;
    /// Whether previews go there too (`fresh = true`).
    fn fresh(&self) -> bool;
}

macro_rules! object_place {
    ($($store:ty),+) => {$(
        impl ObjectPlace for $store {
            fn prefix(&self) -> &str {
                &self.prefix
            }

            fn layout(&self) -> Layout {
                self.layout
            }

            fn fresh(&self) -> bool {
                self.fresh
            }
        }
    )+};
}

object_place!(LocalSinkConfig, S3SinkConfig, GcsSinkConfig);
