//! The upload path shared by every `object_store` sink (local folder, S3,
//! GCS): stream the outbox file up in parts, so memory stays at one part
//! however large the hour's file is.

use std::path::Path;
use std::sync::Arc;

use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{Attributes, ObjectStore};
use tokio::io::AsyncWriteExt;

use super::{ListFuture, Sink, SinkError, SinkFuture};

/// Uploads in parts of this size (S3 needs ≥ 5 MiB for all but the last);
/// smaller files go up in one request.
pub const PART_BYTES: usize = 8 << 20;

/// object_store's own retries for one attempt: few and short, so a failing
/// store surfaces quickly to the outbox, whose retry loop (with backoff,
/// metrics and logs) keeps trying for as long as it takes.
pub fn quick_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(20),
    }
}

/// Attributes for cloud stores: the Parquet content type and, if given, a
/// storage class.
pub fn cloud_attributes(storage_class: Option<&String>) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        object_store::Attribute::ContentType,
        super::PARQUET_CONTENT_TYPE.into(),
    );
    if let Some(class) = storage_class {
        attributes.insert(object_store::Attribute::StorageClass, class.clone().into());
    }
    attributes
}

/// A key as an object_store path; a key it refuses is rejected for good.
fn location(key: &str) -> Result<ObjectPath, SinkError> {
    ObjectPath::parse(key).map_err(|e| SinkError::Key {
        key: key.to_string(),
        message: e.to_string(),
    })
}

pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    /// Content type, storage class … (empty for the local folder, which
    /// cannot store them).
    attributes: Attributes,
    /// For the local folder: its root, so deleting the last file of a
    /// folder removes the folder too (object stores have none to remove).
    local_root: Option<std::path::PathBuf>,
}

impl ObjectStoreSink {
    pub fn new(store: Arc<dyn ObjectStore>, attributes: Attributes) -> Self {
        Self {
            store,
            attributes,
            local_root: None,
        }
    }

    /// The store's client (the Iceberg sink's metadata goes through it).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn with_local_root(mut self, root: std::path::PathBuf) -> Self {
        self.local_root = Some(root);
        self
    }

    /// Removes the now empty folders above a deleted local file.
    fn remove_empty_folders(&self, key: &str) {
        let Some(root) = &self.local_root else {
            return;
        };
        let mut dir = std::path::Path::new(key).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if std::fs::remove_dir(root.join(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    async fn upload(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let location = location(key)?;
        let mut file = tokio::fs::File::open(path).await?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), location, PART_BYTES)
            .with_attributes(self.attributes.clone());
        match tokio::io::copy(&mut file, &mut writer).await {
            Ok(_) => {
                writer.shutdown().await?;
                Ok(())
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e.into())
            }
        }
    }
}

impl Sink for ObjectStoreSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        Box::pin(self.upload(key, path))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> ListFuture<'a> {
        Box::pin(async move {
            use futures_util::TryStreamExt;
            let location = location(prefix)?;
            let prefix = (!prefix.is_empty()).then_some(&location);
            let metas: Vec<_> = self.store.list(prefix).try_collect().await?;
            Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> SinkFuture<'a> {
        Box::pin(async move {
            let location = location(key)?;
            use object_store::ObjectStoreExt;
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.remove_empty_folders(key);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}
