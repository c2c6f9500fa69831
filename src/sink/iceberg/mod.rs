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
        let files = super::local::build(&crate::config::LocalSinkConfig {
            path: dir.clone(),
            prefix: String::new(),
            fresh: false,
            layout: Default::default(),
        })
        .map_err(|e| format!("warehouse.{e}"))?;
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

impl IcebergSink {
    /// `weir check`: what starting would do to each table, changing nothing.
    ///
    /// # Errors
    /// The catalog cannot be reached, or a table refuses its route.
    pub(crate) async fn check(&self) -> Result<Vec<String>, super::SinkError> {
        self.committer.lock().await.check().await
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
