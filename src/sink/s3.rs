//! The S3 sink: Amazon S3 or any S3-compatible store, through object_store.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::object::ObjectStoreSink;
use crate::sink::stores::{S3Encryption, S3SinkConfig};

/// Builds the sink. Credentials not in the config come from the standard
/// chain (AWS_* variables, web identity / IRSA, instance metadata).
pub(super) fn build(c: &S3SinkConfig) -> Result<ObjectStoreSink, String> {
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
    } else if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The shared credentials file, as the AWS CLI reads it; web
        // identity and instance metadata come after it in the chain.
        if let Some(p) = profile_credentials(c.profile.as_deref())? {
            b = b
                .with_access_key_id(p.access_key_id)
                .with_secret_access_key(p.secret_access_key);
            if let Some(t) = p.session_token {
                b = b.with_token(t);
            }
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
    Ok(ObjectStoreSink::new(
        Arc::new(store),
        super::object::cloud_attributes(c.storage_class.as_ref()),
    )
    .for_bucket(&c.bucket, &c.prefix))
}

/// Keys from one profile of the shared credentials file.
#[derive(Debug, PartialEq)]
struct ProfileKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Reads `profile` (else `AWS_PROFILE`, else "default") from
/// `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`. `Ok(None)` when
/// there is no file or no such profile (the chain goes on); an error when
/// the profile was named explicitly and is missing.
fn profile_credentials(profile: Option<&str>) -> Result<Option<ProfileKeys>, String> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::Path::new(&h).join(".aws/credentials"),
            None => return Ok(None),
        },
    };
    let name = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".to_string());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if profile.is_none() => return Ok(None),
        Err(e) => return Err(format!("profile: cannot read {}: {e}", path.display())),
    };
    let keys = parse_profile(&text, &name);
    if keys.is_none() && profile.is_some() {
        return Err(format!("profile: {name:?} not found in {}", path.display()));
    }
    Ok(keys)
}

fn parse_profile(text: &str, name: &str) -> Option<ProfileKeys> {
    let mut in_section = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            let section = line[1..line.len() - 1].trim();
            in_section = section == name || section == format!("profile {name}");
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().to_string();
                match k.trim() {
                    "aws_access_key_id" => id = Some(v),
                    "aws_secret_access_key" => secret = Some(v),
                    "aws_session_token" => token = Some(v),
                    _ => {}
                }
            }
        }
    }
    Some(ProfileKeys {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

impl crate::sink::kind::ObjectSinkKind for S3SinkConfig {
    fn validate(&self, name: &str) -> Result<(), crate::config::invalid::Invalid> {
        use crate::config::invalid::Invalid;
        super::object::require_bucket(name, &self.bucket)?;
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Invalid::new(
                format!("sinks.{name}.secret_access_key"),
                "access_key_id and secret_access_key go together".into(),
            ));
        }
        if self.server_side_encryption == Some(S3Encryption::Kms) && self.kms_key_id.is_none() {
            return Err(Invalid::new(
                format!("sinks.{name}.kms_key_id"),
                "server_side_encryption = \"aws:kms\" needs kms_key_id".into(),
            ));
        }
        Ok(())
    }

    fn build(&self) -> Result<Arc<dyn crate::sink::Sink>, String> {
        build(self).map(|s| Arc::new(s) as Arc<dyn crate::sink::Sink>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_like_the_aws_cli() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[prod]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        assert_eq!(
            parse_profile(text, "prod"),
            Some(ProfileKeys {
                access_key_id: "C".into(),
                secret_access_key: "D".into(),
                session_token: Some("E".into())
            })
        );
        assert_eq!(parse_profile(text, "default").unwrap().access_key_id, "A");
        assert_eq!(parse_profile(text, "nope"), None);
    }
}
