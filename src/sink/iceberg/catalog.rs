//! The catalog a sink commits through: iceberg's SQL catalog on SQLite (one
//! file, nothing to run) or PostgreSQL (a tier shares it). Its rows are the
//! JDBC catalog's (`iceberg_tables`), so pyiceberg, Spark and Trino read the
//! same catalog weir writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit,
    TableCreation, TableIdent,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::storage::StoreStorageFactory;

/// Connects to the SQL catalog at `uri` (`sqlite:/path` or `postgres://…`),
/// creating the SQLite file and the catalog's tables if missing.
///
/// # Errors
/// The database cannot be reached or refuses us.
pub(crate) async fn connect(
    uri: &str,
    name: &str,
    warehouse: &str,
    factory: StoreStorageFactory,
) -> Result<Arc<dyn Catalog>> {
    let (uri, bind, pool) = if let Some(path) = uri.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // One connection: SQLite serialises writers anyway, and a second
        // would only meet "database is locked".
        (
            format!("sqlite://{path}?mode=rwc"),
            SqlBindStyle::QMark,
            "1",
        )
    } else {
        (uri.to_string(), SqlBindStyle::DollarNumeric, "4")
    };
    let props = HashMap::from([
        ("uri".to_string(), uri),
        ("warehouse".to_string(), warehouse.to_string()),
        ("pool.max-connections".to_string(), pool.to_string()),
    ]);
    let catalog = SqlCatalogBuilder::default()
        .sql_bind_style(bind)
        .with_storage_factory(Arc::new(factory))
        .load(name, props)
        .await?;
    Ok(Arc::new(catalog))
}

/// The namespace, created if missing (several nodes may race to create it).
///
/// # Errors
/// The catalog cannot be reached.
pub(crate) async fn ensure_namespace(
    catalog: &dyn Catalog,
    namespace: &NamespaceIdent,
) -> Result<()> {
    if catalog.namespace_exists(namespace).await? {
        return Ok(());
    }
    match catalog.create_namespace(namespace, HashMap::new()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A catalog that counts the commits another writer beat us to: iceberg
/// retries those itself (on the new table state), so this is where they are
/// seen.
#[derive(Debug)]
pub(crate) struct Counting {
    pub(crate) inner: Arc<dyn Catalog>,
    pub(crate) conflicts: AtomicU64,
}

impl Counting {
    pub(crate) fn new(inner: Arc<dyn Catalog>) -> Self {
        Self {
            inner,
            conflicts: AtomicU64::new(0),
        }
    }

    /// Conflicts since the last call.
    pub(crate) fn take_conflicts(&self) -> u64 {
        self.conflicts.swap(0, Ordering::Relaxed)
    }
}

#[async_trait]
impl Catalog for Counting {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        self.inner.load_table(table).await
    }
    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let r = self.inner.update_table(commit).await;
        if let Err(e) = &r {
            if e.kind() == ErrorKind::CatalogCommitConflicts {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}
