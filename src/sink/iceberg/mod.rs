//! The Iceberg sink: a route's finished Parquet files become data files of
//! one Iceberg table per route (format v2), shared by every node of a tier.
//!
//! A file is put into the table's `data/` folder under its deterministic
//! key (the same bytes every time), then committed with the files put since
//! the last commit (every `commit_interval`, or at `commit_max_files`). The
//! outbox marks it delivered only after its commit: "delivered" means "in
//! the table". How a commit stays exactly once through crashes and
//! conflicts: [`commit`]. Table shape and schema evolution: [`table`].

pub(crate) mod catalog;
mod commit;
pub(crate) mod config;
mod data_file;
pub(crate) mod storage;
mod table;
use std::time::Duration;

use crate::config::fields::redact_uri;
use crate::config::invalid::Invalid;
use crate::sink::config::SinkConfig;
use crate::sink::stores::{GcsSinkConfig, LocalSinkConfig, S3SinkConfig};
use config::is_identifier;

impl IcebergSinkConfig {
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
                    WarehouseStore::S3(c) => SinkConfig::S3(c.clone()),
                    WarehouseStore::Gcs(c) => SinkConfig::Gcs(c.clone()),
                    WarehouseStore::Local(c) => SinkConfig::Local(c.clone()),
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

    fn validate(&self, name: &str) -> Result<(), crate::config::invalid::Invalid> {
        IcebergSinkConfig::validate(self, name)
    }

    fn build(
        &self,
        name: &str,
        ctx: &crate::sink::BuildContext<'_>,
    ) -> Result<crate::sink::kind::BuiltSink, String> {
        let sink = std::sync::Arc::new(IcebergSink::build(name, self, ctx)?);
        Ok(crate::sink::kind::BuiltSink {
            sink: sink.clone(),
            table: Some(sink),
        })
    }
}

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use iceberg::{Catalog, NamespaceIdent};

use self::config::{IcebergSinkConfig, Warehouse, WarehouseStore};
use self::storage::{StoreStorage, StoreStorageFactory};
use super::{CommitFuture, CommitPolicy, Committed, Sink, SinkFuture, Staged};

/// Connects to a sink's catalog (again, after a failure).
pub(crate) type Connect =
    Box<dyn Fn() -> BoxFuture<'static, iceberg::Result<Arc<dyn Catalog>>> + Send + Sync>;

pub(crate) struct IcebergSink {
    /// Puts data files into the warehouse (the local or object sink's code).
    files: Arc<dyn Sink>,
    committer: tokio::sync::Mutex<commit::Committer>,
    policy: CommitPolicy,
}

/// The warehouse's stores: where data files are put (with the keys
/// [`IcebergSinkConfig::file_key`] gives), Iceberg's storage, the URI of
/// the warehouse root, and the URI prefix of file keys.
struct Stores {
    files: Arc<dyn Sink>,
    storage: StoreStorage,
    root: String,
    files_base: String,
}

fn stores(w: &Warehouse) -> Result<Stores, String> {
    let local = |dir: &Path| -> Result<Stores, String> {
        let dir = std::path::absolute(dir).map_err(|e| format!("warehouse: {e}"))?;
        let files = super::local::build(&crate::sink::stores::LocalSinkConfig {
            path: dir.clone(),
            prefix: String::new(),
            fresh: false,
            layout: Default::default(),
        });
        let root_store = object_store::local::LocalFileSystem::new().with_fsync(true);
        let root = format!("file://{}", dir.display());
        Ok(Stores {
            files: Arc::new(files),
            storage: StoreStorage::new("file:///".into(), Arc::new(root_store)),
            files_base: format!("{root}/"),
            root,
        })
    };
    match w {
        Warehouse::Local(dir) => local(dir),
        Warehouse::Store(WarehouseStore::Local(c)) => local(&c.path.join(&c.prefix)),
        Warehouse::Store(WarehouseStore::S3(c)) => bucket(
            super::s3::build(c).map_err(|e| format!("warehouse: {e}"))?,
            format!("s3://{}/", c.bucket),
            &c.prefix,
        ),
        Warehouse::Store(WarehouseStore::Gcs(c)) => bucket(
            super::gcs::build(c).map_err(|e| format!("warehouse: {e}"))?,
            format!("gs://{}/", c.bucket),
            &c.prefix,
        ),
    }
}

/// A warehouse in a bucket (`base`: `s3://bucket/` or `gs://bucket/`).
fn bucket(
    sink: super::object::ObjectStoreSink,
    base: String,
    prefix: &str,
) -> Result<Stores, String> {
    Ok(Stores {
        storage: StoreStorage::new(base.clone(), sink.store()),
        root: format!("{base}{prefix}").trim_end_matches('/').to_string(),
        files: Arc::new(sink),
        files_base: base,
    })
}

impl IcebergSink {
    /// Builds the sink; nothing is contacted yet (the catalog is reached at
    /// the first commit or [`IcebergSink::prepare`]).
    ///
    /// # Errors
    /// The warehouse's store cannot be set up.
    pub(crate) fn build(
        name: &str,
        c: &IcebergSinkConfig,
        ctx: &crate::sink::BuildContext<'_>,
    ) -> Result<Self, String> {
        let stores = stores(&c.warehouse)?;
        let uri = c
            .catalog_uri()
            .ok_or_else(|| "catalog_uri: required for this warehouse".to_string())?;
        let namespace = NamespaceIdent::new(c.namespace.clone());
        let mut shapes = HashMap::new();
        let mut locations = HashMap::new();
        for r in ctx
            .routes
            .iter()
            .filter(|r| r.sinks.iter().any(|s| s == name))
        {
            shapes.insert(r.name.clone(), table::Shape::of(r));
            ctx.metrics.iceberg.register_table(name, &r.table);
            locations.insert(
                r.table.clone(),
                format!("{}/{}/{}", stores.root, c.namespace, r.table),
            );
        }
        let connect: Connect = {
            let (uri, catalog_name, root) = (uri, c.catalog_name.clone(), stores.root.clone());
            let factory = StoreStorageFactory {
                storage: stores.storage.clone(),
            };
            Box::new(move || {
                let (uri, catalog_name, root, factory) = (
                    uri.clone(),
                    catalog_name.clone(),
                    root.clone(),
                    factory.clone(),
                );
                Box::pin(async move { catalog::connect(&uri, &catalog_name, &root, factory).await })
            })
        };
        let settings = commit::Settings {
            sink: name.to_string(),
            node: ctx.node_id.to_string(),
            namespace,
            locations,
            shapes,
            files_base: stores.files_base,
            state_dir: ctx.data_dir.join("iceberg").join(name),
            snapshot_max_age_ms: c.snapshot_max_age.0.as_millis() as i64,
            snapshot_min_keep: c.snapshot_min_keep,
        };
        ctx.metrics.iceberg.register_sink(name);
        Ok(Self {
            files: stores.files,
            committer: tokio::sync::Mutex::new(commit::Committer::new(
                settings,
                ctx.metrics.iceberg.clone(),
                connect,
            )),
            policy: CommitPolicy {
                interval: c.commit_interval.0,
                max_files: c.commit_max_files,
            },
        })
    }

    /// Reaches the catalog and brings every table to its route's shape:
    /// at start, and for `weir check --probe`.
    ///
    /// # Errors
    /// The catalog cannot be reached, or a table refuses its route (a
    /// changed column type, a removed column, a table altered by others).
    pub(crate) async fn prepare(&self) -> Result<(), super::SinkError> {
        self.committer.lock().await.prepare_all().await
    }
}

impl crate::sink::kind::TableSink for IcebergSink {
    fn prepare(&self) -> SinkFuture<'_> {
        Box::pin(IcebergSink::prepare(self))
    }

    /// `weir check`: what starting would do to each table, changing nothing.
    fn check(&self) -> crate::sink::kind::CheckFuture<'_> {
        Box::pin(async move { self.committer.lock().await.check().await })
    }
}

impl Sink for IcebergSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        self.files.put(key, path)
    }

    /// The warehouse takes files, and the catalog answers with every table
    /// in its route's shape.
    fn probe(&self) -> SinkFuture<'_> {
        Box::pin(async move {
            self.files.probe().await?;
            self.prepare().await
        })
    }

    fn commits(&self) -> Option<CommitPolicy> {
        Some(self.policy)
    }

    fn commit<'a>(&'a self, files: &'a [Staged], redelivered: bool) -> CommitFuture<'a> {
        Box::pin(async move {
            let (done, failed) = self.committer.lock().await.commit(files, redelivered).await;
            Committed { done, failed }
        })
    }
}
