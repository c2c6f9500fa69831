//! The Treasure Data sink: TD's import API, as fluent-plugin-td uses it.
//!
//! A part is a gzip of msgpack record maps (each with an integer `time`),
//! uploaded with `PUT {endpoint}/v3/table/import_with_id/{db}/{table}/{unique_id}/msgpack.gz`
//! and `Authorization: TD1 {apikey}`. The unique id is derived from the
//! node, tag and WAL position, so an upload retried after a crash carries
//! the same id and TD keeps one copy.
//!
//! TD takes records, not Parquet files: the roller writes its parts through
//! the [record sink](crate::sink::records) interface ([`records`]: grouping
//! and keys, [`part`]: the part format); this file uploads finished parts.

pub(crate) mod config;
mod part;
mod records;

pub(crate) use records::TdRecords;

use std::path::Path;
use std::time::Duration;

use crate::sink::{one_line, Sink, SinkError, SinkFuture};
use config::TdSinkConfig;

pub(crate) struct TdSink {
    client: reqwest::Client,
    endpoint: String,
    auth: String,
    auto_create_table: bool,
}

/// Normalises a database or table name as TD does: lower case,
/// `[a-z0-9_]` only, at least 3 characters (padded with `_`), at most 256.
pub(crate) fn normalize_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.len() < 3 {
        s.push('_');
    }
    s.truncate(256);
    s
}

/// Database and table for a tag: configured names win, else the tag's
/// second-to-last and last parts (`app.web.access` → `web`, `access`).
pub(crate) fn names_for(tag: &[u8], cfg: &TdSinkConfig) -> (String, String) {
    let tag = String::from_utf8_lossy(tag);
    let parts: Vec<&str> = tag.split('.').collect();
    let last = parts.last().copied().unwrap_or("");
    let second = if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        "default"
    };
    (
        normalize_name(cfg.database.as_deref().unwrap_or(second)),
        normalize_name(cfg.table.as_deref().unwrap_or(last)),
    )
}

impl TdSink {
    pub(crate) fn build(cfg: &TdSinkConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            endpoint: cfg.endpoint.trim_end_matches('/').to_string(),
            auth: format!("TD1 {}", cfg.apikey),
            auto_create_table: cfg.auto_create_table,
        })
    }

    async fn import(
        &self,
        db: &str,
        table: &str,
        uid: &str,
        body: Vec<u8>,
    ) -> Result<u16, SinkError> {
        let url = format!(
            "{}/v3/table/import_with_id/{db}/{table}/{uid}/msgpack.gz",
            self.endpoint
        );
        let resp = self
            .client
            .put(url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Http(e.to_string()))?;
        Ok(resp.status().as_u16())
    }

    /// Creates the database and the table; "already exists" is fine.
    async fn create(&self, db: &str, table: &str) -> Result<(), SinkError> {
        for url in [
            format!("{}/v3/database/create/{db}", self.endpoint),
            format!("{}/v3/table/create/{db}/{table}/log", self.endpoint),
        ] {
            let status = self
                .client
                .post(&url)
                .header("Authorization", &self.auth)
                .send()
                .await
                .map_err(|e| SinkError::Http(e.to_string()))?
                .status()
                .as_u16();
            if !(200..300).contains(&status) && status != 409 {
                return Err(SinkError::Http(format!("{url}: HTTP {status}")));
            }
        }
        Ok(())
    }

    async fn upload(&self, key: &str, path: &Path) -> Result<(), SinkError> {
        let mut parts = key.splitn(3, '/');
        let (Some(db), Some(table), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SinkError::Key {
                key: key.to_string(),
                message: "expected db/table/unique_id".into(),
            });
        };
        let body = tokio::fs::read(path).await?;
        let mut status = self.import(db, table, uid, body.clone()).await?;
        if status == 404 && self.auto_create_table {
            tracing::info!(db, table, "creating missing Treasure Data table");
            self.create(db, table).await?;
            status = self.import(db, table, uid, body).await?;
        }
        match status {
            200..=299 => Ok(()),
            429 | 500..=599 => Err(SinkError::Http(format!("HTTP {status} (will retry)"))),
            401 | 403 => Err(SinkError::Unauthorized {
                status,
                detail: format!("{db}.{table} import"),
            }),
            _ => Err(SinkError::Rejected {
                status,
                what: format!("{db}.{table} part {uid}"),
            }),
        }
    }
}

impl Sink for TdSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        Box::pin(self.upload(key, path))
    }

    /// The API key is valid: `GET /v3/database/list` answers 200.
    fn probe(&self) -> SinkFuture<'_> {
        Box::pin(async move {
            let url = format!("{}/v3/database/list", self.endpoint);
            let status = self
                .client
                .get(&url)
                .header("Authorization", &self.auth)
                .send()
                .await
                .map_err(|e| SinkError::Http(format!("{url}: {}", one_line(&e))))?
                .status()
                .as_u16();
            match status {
                200..=299 => Ok(()),
                401 | 403 => Err(SinkError::Unauthorized {
                    status,
                    detail: "the API key (apikey) was refused".into(),
                }),
                _ => Err(SinkError::Http(format!("{url}: HTTP {status}"))),
            }
        })
    }
}

impl crate::sink::kind::SinkKind for TdSinkConfig {
    fn capabilities(&self) -> crate::sink::config::Capabilities {
        crate::sink::config::RECORD_SINK
    }

    fn validate(&self, name: &str) -> Result<(), crate::config::invalid::Invalid> {
        use crate::config::invalid::Invalid;
        if self.apikey.trim().is_empty() {
            return Err(Invalid::new(
                format!("sinks.{name}.apikey"),
                "must not be empty".into(),
            ));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(Invalid::new(
                format!("sinks.{name}.endpoint"),
                "must be an http(s) URL".into(),
            ));
        }
        if self.max_part_bytes.0 < 1024 || self.max_part_bytes.0 > 256 << 20 {
            return Err(Invalid::new(
                format!("sinks.{name}.max_part_bytes"),
                "must be from 1KiB to 256MiB".into(),
            ));
        }
        Ok(())
    }

    fn record_sink(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<dyn crate::sink::records::RecordSink>> {
        Some(std::sync::Arc::new(TdRecords::new(name, self)))
    }

    fn build(
        &self,
        _name: &str,
        _ctx: &crate::sink::BuildContext<'_>,
    ) -> Result<crate::sink::kind::BuiltSink, String> {
        TdSink::build(self).map(crate::sink::kind::BuiltSink::plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_td() {
        assert_eq!(normalize_name("Web-Access"), "web_access");
        assert_eq!(normalize_name("a"), "a__");
        assert_eq!(normalize_name(&"x".repeat(300)).len(), 256);
        let cfg: TdSinkConfig = toml::from_str("apikey = 'k'").unwrap();
        assert_eq!(
            names_for(b"td.App.Web.Access", &cfg),
            ("web".into(), "access".into())
        );
        assert_eq!(names_for(b"solo", &cfg), ("default".into(), "solo".into()));
        let fixed: TdSinkConfig = toml::from_str("apikey = 'k'\ndatabase = 'logs'").unwrap();
        assert_eq!(names_for(b"a.b", &fixed), ("logs".into(), "b__".into()));
    }
}
