//! `type = "iceberg"`: one Apache Iceberg table per route, in a warehouse on
//! any store weir writes, registered in a SQL catalog (SQLite or PostgreSQL).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::redact_url_password;
use crate::config::HumanDuration;
use crate::config::Invalid;
use crate::sink::config::{GcsSinkConfig, LocalSinkConfig, S3SinkConfig};

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

    /// Checks the sink's settings (`name` for the keys).
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self, name: &str) -> Result<(), Invalid> {
        let key = |k: &str| format!("sinks.{name}.{k}");
        match &self.warehouse {
            Warehouse::Local(p) if p.as_os_str().is_empty() => {
                return Err(Invalid::new(key("warehouse"), "must not be empty".into()));
            }
            Warehouse::Store(store) => {
                let as_sink = match store {
                    WarehouseStore::S3(c) => crate::sink::config::SinkConfig::S3(c.clone()),
                    WarehouseStore::Gcs(c) => crate::sink::config::SinkConfig::Gcs(c.clone()),
                    WarehouseStore::Local(c) => crate::sink::config::SinkConfig::Local(c.clone()),
                };
                // The store's own checks, its keys named under `warehouse.`.
                as_sink.validate(name).map_err(|e| {
                    Invalid::new(
                        e.key
                            .replacen(&format!("sinks.{name}."), &key("warehouse."), 1),
                        e.message,
                    )
                })?;
            }
            _ => {}
        }
        if let Warehouse::Store(
            WarehouseStore::S3(S3SinkConfig { fresh: true, .. })
            | WarehouseStore::Gcs(GcsSinkConfig { fresh: true, .. })
            | WarehouseStore::Local(LocalSinkConfig { fresh: true, .. }),
        ) = &self.warehouse
        {
            return Err(Invalid::new(
                key("warehouse.fresh"),
                "a table is fresh by its commits (commit_interval); previews are for file sinks"
                    .into(),
            ));
        }
        match self.catalog_uri() {
            None => {
                return Err(Invalid::new(key("catalog_uri"),
                    "required for a warehouse on an object store: the tier's shared catalog, e.g. \"postgres://weir:${PG_PASSWORD}@pg:5432/iceberg\"".into(),
                ))
            }
            Some(uri) => {
                let known = ["sqlite:", "postgres://", "postgresql://"];
                if !known.iter().any(|p| uri.starts_with(p)) {
                    return Err(Invalid::new(key("catalog_uri"),
                        format!("{:?}: expected sqlite:/path/catalog.db or postgres://user:password@host:port/database", redact_uri(&uri)),
                    ));
                }
            }
        }
        for (k, v) in [
            ("catalog_name", &self.catalog_name),
            ("namespace", &self.namespace),
        ] {
            if !is_identifier(v) {
                return Err(Invalid::new(
                    key(k),
                    format!(
                        "{v:?}: must be 1 to 128 letters, digits or '_', not starting with a digit"
                    ),
                ));
            }
        }
        if self.commit_interval.0 < Duration::from_secs(1) {
            return Err(Invalid::new(
                key("commit_interval"),
                "must be at least 1s".into(),
            ));
        }
        if self.commit_max_files == 0 || self.commit_max_files > 100_000 {
            return Err(Invalid::new(
                key("commit_max_files"),
                "must be from 1 to 100000".into(),
            ));
        }
        if self.snapshot_min_keep == 0 {
            return Err(Invalid::new(
                key("snapshot_min_keep"),
                "must be at least 1".into(),
            ));
        }
        if self.snapshot_max_age.0 < Duration::from_secs(60) {
            return Err(Invalid::new(
                key("snapshot_max_age"),
                "must be at least 1m".into(),
            ));
        }
        Ok(())
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

/// A URI with its password replaced by `***`, for logs and errors.
pub(crate) fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &uri[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..s + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

impl IcebergSinkConfig {
    /// The key a file of `route` gets: in its table's `data/` folder under
    /// the warehouse (relative to the warehouse folder for a local one, to
    /// the bucket for an object store).
    pub(crate) fn file_key(
        &self,
        route: &crate::router::Route,
        parts: &crate::sink::key::FileParts<'_>,
    ) -> Option<String> {
        use crate::sink::key::{object_key, FileName, GroupIn};
        if matches!(parts.name, FileName::Preview { .. }) {
            return None;
        }
        let store_prefix = match &self.warehouse {
            Warehouse::Store(WarehouseStore::S3(c)) => c.prefix.as_str(),
            Warehouse::Store(WarehouseStore::Gcs(c)) => c.prefix.as_str(),
            _ => "",
        };
        let table = format!("{}/{}/data", self.namespace, route.table);
        let prefix = crate::sink::join_prefix(store_prefix, &table);
        let group_in = GroupIn::Table {
            per_route: route.files == crate::router::FileGrouping::PerRoute,
        };
        Some(object_key(&prefix, group_in, parts))
    }
}

impl crate::sink::kind::SinkKind for IcebergSinkConfig {
    fn capabilities(&self) -> crate::sink::config::Capabilities {
        crate::sink::config::Capabilities {
            records: false,
            commits: true,
            lists: false,
        }
    }

    fn file_key(
        &self,
        route: &crate::router::Route,
        parts: &crate::sink::key::FileParts<'_>,
    ) -> Option<String> {
        IcebergSinkConfig::file_key(self, route, parts)
    }

    fn validate(&self, name: &str) -> Result<(), crate::config::Invalid> {
        IcebergSinkConfig::validate(self, name)
    }

    fn build(
        &self,
        name: &str,
        ctx: &crate::sink::BuildContext<'_>,
    ) -> Result<crate::sink::kind::BuiltSink, String> {
        let sink = std::sync::Arc::new(super::IcebergSink::build(name, self, ctx)?);
        Ok(crate::sink::kind::BuiltSink {
            sink: sink.clone(),
            table: Some(sink),
        })
    }
}
