//! `type = "iceberg"`: one Apache Iceberg table per route, in a warehouse on
//! any store weir writes, registered in a SQL catalog (SQLite or PostgreSQL).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::fields::redact_url_password;
use crate::config::units::HumanDuration;
use crate::sink::stores::{GcsSinkConfig, LocalSinkConfig, S3SinkConfig};

fn default_catalog_name() -> String {
    "weir".to_string()
}

fn default_namespace() -> String {
    "weir".to_string()
}

fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_commit_max_files() -> usize {
    500
}

fn default_snapshot_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 86_400))
}

fn default_snapshot_min_keep() -> usize {
    100
}

/// `[sinks.NAME]` with `type = "iceberg"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergSinkConfig {
    /// Where the tables' files go: a local folder (`"/var/lib/weir/lake"`),
    /// or a table with an object store's settings, exactly as its own sink
    /// takes them (`{ type = "s3", bucket = "lake", prefix = "warehouse", … }`).
    pub(crate) warehouse: Warehouse,
    /// The SQL catalog: `sqlite:/path/catalog.db` or
    /// `postgres://user:password@host:5432/db`. Default for a local
    /// warehouse: `sqlite:{warehouse}/catalog.db`, nothing to run.
    #[serde(default, serialize_with = "redact_url_password")]
    pub(crate) catalog_uri: Option<String>,
    /// The catalog's name: the tables' rows are keyed by it (pyiceberg's
    /// `SqlCatalog(name, …)`, Spark's `spark.sql.catalog.NAME`).
    #[serde(default = "default_catalog_name")]
    pub(crate) catalog_name: String,
    /// The namespace (database) of the tables.
    #[serde(default = "default_namespace")]
    pub(crate) namespace: String,
    /// Files finished since the last commit are committed together this
    /// often (one snapshot per commit) …
    #[serde(default = "default_commit_interval")]
    pub(crate) commit_interval: HumanDuration,
    /// … or as soon as this many wait.
    #[serde(default = "default_commit_max_files")]
    pub(crate) commit_max_files: usize,
    /// Snapshots this node made that are older than this are expired (the
    /// table keeps its data; time travel reaches back this far) …
    #[serde(default = "default_snapshot_max_age")]
    pub(crate) snapshot_max_age: HumanDuration,
    /// … but the newest this many snapshots of the table are always kept.
    #[serde(default = "default_snapshot_min_keep")]
    pub(crate) snapshot_min_keep: usize,
}

/// Where an Iceberg sink's tables live.
// Built once from the config; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Warehouse {
    /// A local folder.
    Local(PathBuf),
    /// An object store, configured as its sink is.
    Store(WarehouseStore),
}

/// An object store holding a warehouse, with the keys of its sink type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum WarehouseStore {
    Local(LocalSinkConfig),
    S3(S3SinkConfig),
    Gcs(GcsSinkConfig),
}

impl<'de> Deserialize<'de> for Warehouse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Warehouse;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a folder path, or a table with `type = \"s3\" | \"gcs\" | \"local\"` and that sink's keys")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Warehouse, E> {
                Ok(Warehouse::Local(PathBuf::from(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<Warehouse, A::Error> {
                WarehouseStore::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(Warehouse::Store)
            }
        }
        d.deserialize_any(V)
    }
}

impl Warehouse {
    /// The local folder of a local warehouse.
    pub(crate) fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            Warehouse::Local(p) => Some(p),
            Warehouse::Store(WarehouseStore::Local(c)) => Some(&c.path),
            Warehouse::Store(_) => None,
        }
    }
}

impl IcebergSinkConfig {
    /// The catalog URI in force (the SQLite default for a local warehouse).
    pub(crate) fn catalog_uri(&self) -> Option<String> {
        self.catalog_uri.clone().or_else(|| {
            let dir = self.warehouse.local_path()?;
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            Some(format!("sqlite:{}", dir.join("catalog.db").display()))
        })
    }
}

/// A plain identifier: what table, namespace and catalog names may be, so
/// every engine takes them unquoted.
pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
