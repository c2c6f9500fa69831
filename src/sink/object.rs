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
pub(super) fn quick_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(20),
    }
}

/// Attributes for cloud stores: the Parquet content type and, if given, a
/// storage class.
pub(super) fn cloud_attributes(storage_class: Option<&String>) -> Attributes {
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

pub(crate) struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    /// The bucket, for errors that name it ("" for the local folder).
    bucket: String,
    /// Where the probe writes and removes a small object.
    probe_key: String,
    /// Content type, storage class … (empty for the local folder, which
    /// cannot store them).
    attributes: Attributes,
    /// For the local folder: its root, so deleting the last file of a
    /// folder removes the folder too (object stores have none to remove).
    local_root: Option<std::path::PathBuf>,
}

impl ObjectStoreSink {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, attributes: Attributes) -> Self {
        Self {
            store,
            bucket: String::new(),
            probe_key: PROBE.to_string(),
            attributes,
            local_root: None,
        }
    }

    /// Names the bucket in errors, and probes under the sink's prefix.
    pub(crate) fn for_bucket(mut self, bucket: &str, prefix: &str) -> Self {
        self.bucket = bucket.to_string();
        self.probe_key = super::join_prefix(prefix, PROBE);
        self
    }

    /// What a store's error means: a missing bucket, refused credentials
    /// (counted as such), or the store's words on one line.
    fn classify(&self, e: SinkError) -> SinkError {
        let text = e.to_string();
        let lower = text.to_lowercase();
        if lower.contains("nosuchbucket") || lower.contains("the specified bucket does not exist") {
            return SinkError::NoBucket {
                bucket: self.bucket.clone(),
            };
        }
        let status = if lower.contains("401") || lower.contains("unauthenticated") {
            Some(401)
        } else if lower.contains("403")
            || lower.contains("permission denied")
            || lower.contains("accessdenied")
            || lower.contains("invalidaccesskeyid")
            || lower.contains("signaturedoesnotmatch")
        {
            Some(403)
        } else {
            None
        };
        match (status, &e) {
            // A local folder's permission error is the file system's, not
            // a credential: it names the path.
            (Some(status), _) if self.local_root.is_none() => SinkError::Unauthorized {
                status,
                detail: text,
            },
            _ => e,
        }
    }

    /// The store's client (the Iceberg sink's metadata goes through it).
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub(crate) fn with_local_root(mut self, root: std::path::PathBuf) -> Self {
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

/// The probe's object, under the sink's prefix (Hive readers skip `_`).
/// A bucket sink's `bucket` must be named.
pub(super) fn require_bucket(
    sink: &str,
    bucket: &str,
) -> Result<(), crate::config::invalid::Invalid> {
    if bucket.is_empty() {
        return Err(crate::config::invalid::Invalid::new(
            format!("sinks.{sink}.bucket"),
            "must not be empty".into(),
        ));
    }
    Ok(())
}

const PROBE: &str = "_weir_probe";

impl Sink for ObjectStoreSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        Box::pin(async move { self.upload(key, path).await.map_err(|e| self.classify(e)) })
    }

    /// Writes and removes `{prefix}/_weir_probe`: the bucket is there and
    /// takes writes with these credentials.
    fn probe(&self) -> SinkFuture<'_> {
        Box::pin(async move {
            use object_store::ObjectStoreExt;
            let location = location(&self.probe_key)?;
            let put = self
                .store
                .put(
                    &location,
                    object_store::PutPayload::from_static(b"weir probe\n"),
                )
                .await;
            put.map_err(|e| self.classify(e.into()))?;
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.classify(e.into())),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> ListFuture<'a> {
        Box::pin(async move {
            use futures_util::TryStreamExt;
            let location = location(prefix)?;
            let prefix = (!prefix.is_empty()).then_some(&location);
            let metas: Vec<_> = self
                .store
                .list(prefix)
                .try_collect()
                .await
                .map_err(|e| self.classify(e.into()))?;
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
                Err(e) => Err(self.classify(e.into())),
            }
        })
    }
}
