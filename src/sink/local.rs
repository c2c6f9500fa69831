//! The local-folder sink.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::Attributes;

use super::object::ObjectStoreSink;
use crate::config::LocalSinkConfig;

/// A folder on this machine; created if missing. Writes are fsynced and land
/// by rename, so a reader never sees half a file.
pub fn build(c: &LocalSinkConfig) -> Result<ObjectStoreSink, String> {
    std::fs::create_dir_all(&c.path)
        .map_err(|e| format!("path: cannot create {}: {e}", c.path.display()))?;
    let store = LocalFileSystem::new_with_prefix(&c.path)
        .map_err(|e| format!("path: {e}"))?
        .with_fsync(true);
    Ok(ObjectStoreSink::new(Arc::new(store), Attributes::new()).with_local_root(c.path.clone()))
}
