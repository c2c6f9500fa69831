//! The GCS sink, through object_store's GCS client.

use std::sync::Arc;

use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::StaticCredentialProvider;

use super::object::ObjectStoreSink;
use crate::sink::stores::GcsSinkConfig;

/// Builds the sink. Without a service account or token in the config,
/// application default credentials are used.
pub(super) fn build(c: &GcsSinkConfig) -> Result<ObjectStoreSink, String> {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&c.bucket)
        .with_retry(super::object::quick_retry());
    if let Some(p) = &c.service_account_path {
        b = b.with_service_account_path(p.to_string_lossy());
    }
    if let Some(k) = &c.service_account_key {
        b = b.with_service_account_key(k);
    }
    if let Some(t) = &c.bearer_token {
        b = b.with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
            bearer: t.clone(),
        })));
    }
    let store = b.build().map_err(|e| e.to_string())?;
    Ok(ObjectStoreSink::new(
        Arc::new(store),
        super::object::cloud_attributes(c.storage_class.as_ref()),
    )
    .for_bucket(&c.bucket, &c.prefix))
}

impl crate::sink::kind::ObjectSinkKind for GcsSinkConfig {
    fn validate(&self, name: &str) -> Result<(), crate::config::invalid::Invalid> {
        use crate::config::invalid::Invalid;
        super::object::require_bucket(name, &self.bucket)?;
        if self.service_account_path.is_some() && self.service_account_key.is_some() {
            return Err(Invalid::new(
                format!("sinks.{name}.service_account_key"),
                "give service_account_path or service_account_key, not both".into(),
            ));
        }
        Ok(())
    }

    fn build(&self) -> Result<Arc<dyn crate::sink::Sink>, String> {
        build(self).map(|s| Arc::new(s) as Arc<dyn crate::sink::Sink>)
    }
}
