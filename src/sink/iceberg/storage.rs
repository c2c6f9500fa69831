//! Iceberg's file I/O over object_store: a table's metadata, manifests and
//! data files go through the same clients, settings and credentials as the
//! file sinks' uploads (local folder, S3, GCS).
//!
//! Locations are URIs: `file:///abs/path/…` for a local warehouse,
//! `s3://bucket/…` and `gs://bucket/…` for object stores. The store is
//! rooted at `/` (local) or at the bucket, so a location maps to a store
//! path by dropping its scheme and bucket.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

/// An object store seen as Iceberg storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoreStorage {
    /// What every location starts with: `file:///`, `s3://bucket/`, `gs://bucket/`.
    base: String,
    /// The client (not serialised: storage built from a config is never
    /// sent anywhere by weir).
    #[serde(skip)]
    store: Option<Arc<dyn ObjectStore>>,
}

impl StoreStorage {
    pub(crate) fn new(base: String, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            base,
            store: Some(store),
        }
    }

    fn store(&self) -> Result<&Arc<dyn ObjectStore>> {
        self.store
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "storage has no client"))
    }

    /// The store path of a location; an error for a location elsewhere.
    pub(crate) fn path(&self, location: &str) -> Result<StorePath> {
        let rest = match location.strip_prefix(&self.base) {
            Some(rest) => rest,
            // A local warehouse also answers to `/abs` and `file:/abs`.
            None if self.base == "file:///" => location
                .strip_prefix("file:/")
                .or_else(|| location.strip_prefix('/'))
                .map(|r| r.trim_start_matches('/'))
                .ok_or_else(|| outside(location, &self.base))?,
            None => return Err(outside(location, &self.base)),
        };
        StorePath::parse(rest).map_err(|e| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("invalid location {location}: {e}"),
            )
        })
    }
}

fn outside(location: &str, base: &str) -> Error {
    Error::new(
        ErrorKind::DataInvalid,
        format!("location {location} is not in this warehouse ({base}…)"),
    )
}

/// object_store's errors as Iceberg's, keeping the message on one line.
fn store_error(what: &str, location: &str, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    let message = e.to_string().replace(['\n', '\r'], " ");
    Error::new(kind, format!("cannot {what} {location}: {message}"))
}

#[async_trait]
#[typetag::serde]
impl Storage for StoreStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.store()?.head(&self.path(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("look up", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let meta = self
            .store()?
            .head(&self.path(path)?)
            .await
            .map_err(|e| store_error("look up", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let got = self
            .store()?
            .get(&self.path(path)?)
            .await
            .map_err(|e| store_error("read", path, e))?;
        got.bytes().await.map_err(|e| store_error("read", path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(Reader {
            store: self.store()?.clone(),
            path: self.path(path)?,
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        self.store()?
            .put(&self.path(path)?, PutPayload::from_bytes(bs))
            .await
            .map(|_| ())
            .map_err(|e| store_error("write", path, e))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(Writer {
            store: self.store()?.clone(),
            path: self.path(path)?,
            location: path.to_string(),
            parts: Vec::new(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.store()?.delete(&self.path(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let store = self.store()?.clone();
        let prefix = self.path(path)?;
        let found: Vec<_> = store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| store_error("list", path, e))?;
        for p in found {
            match store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error("delete", p.as_ref(), e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(p) = paths.next().await {
            self.delete(&p).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        self.path(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        self.path(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
struct Reader {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    location: String,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| store_error("read", &self.location, e))
    }
}

/// Collects what is written and puts it whole on close: the files Iceberg
/// writes through this (metadata, manifests, manifest lists) are small.
///
/// # Memory
/// One metadata file (kilobytes to a few megabytes for a large table).
struct Writer {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    location: String,
    parts: Vec<Bytes>,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.parts.push(bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        let payload: PutPayload = std::mem::take(&mut self.parts).into_iter().collect();
        self.store
            .put(&self.path, payload)
            .await
            .map(|_| ())
            .map_err(|e| store_error("write", &self.location, e))
    }
}

/// Hands the one storage to whoever asks (the catalog's FileIO).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoreStorageFactory {
    pub(crate) storage: StoreStorage,
}

#[typetag::serde]
impl StorageFactory for StoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_map_to_store_paths_and_nothing_escapes() {
        let local = StoreStorage::new(
            "file:///".into(),
            Arc::new(object_store::local::LocalFileSystem::new()),
        );
        assert_eq!(
            local.path("file:///tmp/wh/a/b.json").unwrap().as_ref(),
            "tmp/wh/a/b.json"
        );
        assert_eq!(local.path("/tmp/wh/x").unwrap().as_ref(), "tmp/wh/x");
        assert_eq!(local.path("file:/tmp/wh/x").unwrap().as_ref(), "tmp/wh/x");
        assert!(local.path("s3://b/x").is_err());
        assert!(local.path("file:///tmp/../etc/passwd").is_err());
        let s3 = StoreStorage::new(
            "s3://lake/".into(),
            Arc::new(object_store::memory::InMemory::new()),
        );
        assert_eq!(
            s3.path("s3://lake/wh/t/metadata/v1.json").unwrap().as_ref(),
            "wh/t/metadata/v1.json"
        );
        assert!(s3.path("s3://other/wh").is_err());
    }
}
