//! One sink type, as the rest of weir sees it: what it takes and can do,
//! how its settings are checked, the key it gives a file, and how it is
//! built. Each type implements [`SinkKind`] on its config in its own file
//! or folder; [`crate::sink::config::SinkConfig::kind`] is the one place that
//! lists the types. The roller, outbox, redeliver and the preview sweeper
//! ask a sink's kind, never its type.

use std::sync::Arc;

use super::config::{Capabilities, SinkConfig};
use super::key::FileParts;
use super::records::RecordSink;
use super::stores::ObjectPlace;
use super::{Sink, SinkError, SinkFuture};
use crate::config::invalid::Invalid;

/// A sink built from its config.
pub(crate) struct BuiltSink {
    pub sink: Arc<dyn Sink>,
    /// A sink that keeps tables (Iceberg), prepared at start.
    pub(crate) table: Option<Arc<dyn TableSink>>,
}

/// A sink whose files land in tables of a catalog: the tables are brought
/// to their routes' shape before traffic, and `weir check` asks what that
/// would change.
pub(crate) trait TableSink: Send + Sync {
    /// Reaches the catalog and brings every table to its route's shape.
    fn prepare(&self) -> SinkFuture<'_>;
    /// What preparing would do to each table, changing nothing.
    fn check(&self) -> CheckFuture<'_>;
}

/// What [`TableSink::check`] answers: a note a table.
pub(crate) type CheckFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<String>, SinkError>> + Send + 'a>,
>;

impl BuiltSink {
    pub(crate) fn plain(sink: impl Sink + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
            table: None,
        }
    }
}

pub(crate) trait SinkKind: Send + Sync {
    /// What the sink takes and can do.
    fn capabilities(&self) -> Capabilities;

    /// Key prefix inside the destination ("" for sinks without keys).
    fn prefix(&self) -> &str {
        ""
    }

    /// The key this sink gives a file of `route` named by `parts`; `None`
    /// for a sink that takes records, not files.
    fn file_key(&self, route: &crate::router::Route, parts: &FileParts<'_>) -> Option<String> {
        let _ = (route, parts);
        None
    }

    /// Whether the sink takes preview files (`fresh = true`).
    fn fresh(&self) -> bool {
        false
    }

    /// Checks the settings of `[sinks.NAME]`.
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    fn validate(&self, name: &str) -> Result<(), Invalid> {
        let _ = name;
        Ok(())
    }

    /// The roller's side of a sink that takes records.
    fn record_sink(&self, name: &str) -> Option<Arc<dyn RecordSink>> {
        let _ = name;
        None
    }

    /// Builds the sink (nothing is contacted yet).
    ///
    /// # Errors
    /// What could not be set up, starting with the config key to blame.
    fn build(&self, name: &str, ctx: &BuildContext<'_>) -> Result<BuiltSink, String>;
}

/// What a sink is built with besides its own config: the node, its data
/// folder (an Iceberg sink keeps its catalog state there), the routes (a
/// table per route) and the metrics it reports to.
pub struct BuildContext<'a> {
    pub node_id: &'a str,
    pub data_dir: &'a std::path::Path,
    pub routes: &'a [crate::router::Route],
    pub metrics: crate::metrics::Metrics,
}

/// An object sink (local folder, S3, GCS): a [`SinkKind`] through the
/// settings every store has ([`ObjectPlace`]) and its own checks and build.
pub(crate) trait ObjectSinkKind: ObjectPlace + Send + Sync {
    /// Checks the store's own settings.
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    fn validate(&self, name: &str) -> Result<(), Invalid>;
    /// Builds the sink.
    ///
    /// # Errors
    /// What could not be set up.
    fn build(&self) -> Result<Arc<dyn Sink>, String>;
}

impl<T: ObjectSinkKind> SinkKind for T {
    fn capabilities(&self) -> Capabilities {
        super::config::OBJECT_SINK
    }

    fn prefix(&self) -> &str {
        ObjectPlace::prefix(self)
    }

    fn file_key(&self, route: &crate::router::Route, parts: &FileParts<'_>) -> Option<String> {
        let prefix = ObjectPlace::prefix(self);
        Some(super::key::sink_key(prefix, self.layout(), route, parts))
    }

    fn fresh(&self) -> bool {
        ObjectPlace::fresh(self)
    }

    fn validate(&self, name: &str) -> Result<(), Invalid> {
        ObjectSinkKind::validate(self, name)
    }

    fn build(&self, _name: &str, _ctx: &BuildContext<'_>) -> Result<BuiltSink, String> {
        Ok(BuiltSink {
            sink: ObjectSinkKind::build(self)?,
            table: None,
        })
    }
}

impl SinkConfig {
    /// The sink's type, behind which everything about it is asked. The one
    /// place that lists the types (with the enum and [`super::config::explain`]).
    pub(crate) fn kind(&self) -> &dyn SinkKind {
        match self {
            SinkConfig::Local(c) => c,
            SinkConfig::S3(c) => c,
            SinkConfig::Gcs(c) => c,
            SinkConfig::Td(c) => c,
            SinkConfig::Iceberg(c) => c,
            SinkConfig::Forward(c) => c,
        }
    }

    /// Key prefix inside the destination.
    pub(crate) fn prefix(&self) -> &str {
        self.kind().prefix()
    }

    /// What the sink takes and can do.
    pub(crate) fn capabilities(&self) -> Capabilities {
        self.kind().capabilities()
    }

    /// The roller's side of a sink that takes records (`name` is its
    /// `[sinks.NAME]`); `None` for a sink that takes files.
    pub(crate) fn record_sink(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<dyn crate::sink::records::RecordSink>> {
        self.kind().record_sink(name)
    }

    /// The key this sink gives a file of `route` named by `parts`; `None`
    /// for a sink that takes records, not files.
    pub(crate) fn file_key(
        &self,
        route: &crate::router::Route,
        parts: &FileParts<'_>,
    ) -> Option<String> {
        self.kind().file_key(route, parts)
    }

    /// Whether the sink takes preview files (`fresh = true`).
    pub(crate) fn fresh(&self) -> bool {
        self.kind().fresh()
    }
}

impl SinkConfig {
    /// Checks one sink's settings (`name` for the keys).
    ///
    /// # Errors
    /// The first setting that cannot be used, with its key.
    pub(crate) fn validate(&self, name: &str) -> Result<(), Invalid> {
        let invalid = |key: &str, message: String| Invalid::new(key, message);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            return Err(invalid(
                &format!("sinks.{name}"),
                "sink names must be letters, digits, '_' or '-'".into(),
            ));
        }
        crate::sink::key::validate_prefix(self.prefix())
            .map_err(|m| invalid(&format!("sinks.{name}.prefix"), m))?;
        self.kind().validate(name)
    }
}
