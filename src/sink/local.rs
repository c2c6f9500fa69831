//! Sinks backed by `object_store`: the local folder now; S3 and GCS use the
//! same upload path with another store.

use std::path::Path;
use std::sync::Arc;

use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::{Sink, SinkError, SinkFuture};

/// Uploads in parts of this size; smaller files go up in one request.
const PART_BYTES: usize = 8 << 20;

pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreSink {
    /// A folder on this machine; created if missing. Writes are fsynced and
    /// land by rename, so a reader never sees half a file.
    pub fn local(root: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| e.to_string())?
            .with_fsync(true);
        Ok(Self {
            store: Arc::new(store),
        })
    }

    async fn upload(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let location = ObjectPath::parse(key).map_err(|e| SinkError::Key {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        let mut file = tokio::fs::File::open(path).await?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), location, PART_BYTES);
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
}
