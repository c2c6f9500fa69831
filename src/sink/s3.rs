//! The S3 sink: Amazon S3 or any S3-compatible store, through object_store.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{Attribute, Attributes};

use super::object::ObjectStoreSink;
use super::PARQUET_CONTENT_TYPE;
use crate::config::{S3Encryption, S3SinkConfig};

/// Builds the sink. Credentials not in the config come from the standard
/// chain (AWS_* variables, web identity / IRSA, instance metadata).
pub fn build(c: &S3SinkConfig) -> Result<ObjectStoreSink, String> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_allow_http(c.allow_http)
        .with_virtual_hosted_style_request(!c.path_style)
        .with_retry(super::object::quick_retry());
    if let Some(r) = &c.region {
        b = b.with_region(r);
    } else if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region("us-east-1");
    }
    if let Some(e) = &c.endpoint {
        b = b.with_endpoint(e);
    }
    if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = &c.session_token {
            b = b.with_token(t);
        }
    }
    match c.server_side_encryption {
        Some(S3Encryption::Kms) => {
            b = b.with_sse_kms_encryption(c.kms_key_id.clone().unwrap_or_default());
        }
        Some(S3Encryption::Aes256) => {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                .parse()
                .map_err(|e: object_store::Error| e.to_string())?;
            b = b.with_config(key, "AES256");
        }
        None => {}
    }
    let store = b.build().map_err(|e| e.to_string())?;
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, PARQUET_CONTENT_TYPE.into());
    if let Some(class) = &c.storage_class {
        attributes.insert(Attribute::StorageClass, class.clone().into());
    }
    Ok(ObjectStoreSink::new(Arc::new(store), attributes))
}
