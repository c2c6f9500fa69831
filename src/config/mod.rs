//! Configuration: TOML with `${ENV}` substitution, validated into a resolved
//! [`Config`] before any socket opens.
//!
//! Each TOML section is one struct; unknown keys are rejected; defaults are
//! named functions so `weir check` can print what is in force. Errors name the
//! key and, where the TOML parser knows it, the line.

mod env;
pub(crate) mod fields;
pub(crate) mod invalid;
mod position;
pub(crate) mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::router::TagPattern;
pub(crate) use invalid::Invalid;
pub use units::{ByteSize, HumanDuration};

// Each section's types live beside the stage that uses them, in files that
// import only this folder's leaves, so the stages below never reach back here.
pub(crate) use crate::http::config::MetricsConfig;
pub use crate::input::forward::config::{ClientRule, ForwardConfig, SecurityConfig, UserConfig};
pub(crate) use crate::input::http::config::HttpConfig;
use crate::input::tls::server_config;
pub(crate) use crate::logging::config::LogConfig;
pub(crate) use crate::outbox::config::OutboxConfig;
pub use crate::roll::config::{ColumnType, RollConfig, TimeUnit};
pub use crate::router::{FileGrouping, Route, RouteConfig, Unmatched};
use crate::sink::config::explain;
pub use crate::sink::config::SinkConfig;
use crate::sink::iceberg::config::is_identifier;
use crate::sink::key::validate_prefix;
pub use crate::sink::stores::{GcsSinkConfig, LocalSinkConfig, S3Encryption, S3SinkConfig};
pub use crate::wal::config::{Durability, WalConfig};
use fields::{dotted, first_line};

/// A configuration problem, with the key (and file position) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message and deliberately not a `source`: weir
    // prints error chains, and it would appear twice.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Env { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("weir-data")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    data_dir: Option<PathBuf>,
    /// "drop" (default) or the name of the route unmatched events go to.
    #[serde(default)]
    unmatched: Option<Unmatched>,
    #[serde(default)]
    forward: ForwardConfig,
    /// The HTTP input; on when the section is present.
    #[serde(default)]
    http: Option<HttpConfig>,
    #[serde(default)]
    wal: WalConfig,
    #[serde(default)]
    roll: RollConfig,
    #[serde(default)]
    route: Vec<RouteConfig>,
    #[serde(default)]
    sinks: BTreeMap<String, SinkConfig>,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    outbox: OutboxConfig,
    #[serde(default)]
    log: LogConfig,
}

/// The whole validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub(crate) forward: ForwardConfig,
    pub(crate) http: Option<HttpConfig>,
    pub(crate) wal: WalConfig,
    pub roll: RollConfig,
    pub routes: Vec<Route>,
    /// Route index for events no route matches; `None` drops them.
    pub(crate) unmatched_route: Option<usize>,
    /// What is valid but probably not meant (`weir check` prints them,
    /// `weir serve` logs them at start).
    #[serde(skip)]
    pub warnings: Vec<String>,
    pub sinks: BTreeMap<String, SinkConfig>,
    pub(crate) metrics: MetricsConfig,
    pub(crate) outbox: OutboxConfig,
    pub(crate) log: LogConfig,
    /// `forward.tls`, loaded and checked once at validation (certificates
    /// read, key matched), used as it is by the listener.
    #[serde(skip)]
    pub(crate) tls_server: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Config {
    /// Loads a config file (or the embedded default) with command-line
    /// overrides applied before validation.
    pub(crate) fn load_with(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?,
                path.display().to_string(),
            ),
            None => (String::new(), "<embedded default>".to_string()),
        };
        let overridden = overrides.period.is_some() || overrides.grace.is_some();
        Self::from_str_with(&text, &origin, overrides).map_err(|e| match e {
            // `weir.toml:9: key …: … (with --period/--grace …)`: the file
            // and line first, where an editor or a reader looks.
            ConfigError::Invalid { path, key, message } if overridden => ConfigError::Invalid {
                path,
                key,
                message: format!("{message} (with --period/--grace from the command line)"),
            },
            e => e,
        })
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_str_with(text, origin, &Overrides::default())
    }

    fn from_str_with(text: &str, origin: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        // Syntax errors come from the plain parse (with lines); then
        // variables are substituted in the parsed string values.
        toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let text = env::substitute_values(text, |k| std::env::var(k).ok()).map_err(
            |(line, message)| ConfigError::Env {
                path: match line {
                    Some(line) => format!("{origin}:{line}"),
                    None => origin.to_string(),
                },
                message,
            },
        )?;
        let mut file = parse_file(&text, origin)?;
        if let Some(p) = overrides.period {
            file.roll.period = HumanDuration(p);
        }
        if let Some(g) = overrides.grace {
            file.roll.grace = HumanDuration(g);
        }
        resolve(file, origin).map_err(|e| match e {
            // Name the line too, as the parser does for its errors.
            ConfigError::Invalid { path, key, message } => ConfigError::Invalid {
                path: match position::line_of(&text, &key) {
                    Some(line) => format!("{path}:{line}"),
                    None => path,
                },
                key,
                message,
            },
            e => e,
        })
    }

    /// Whether `route` goes to an Iceberg table (its files then carry the
    /// `period` column the table is partitioned by).
    pub(crate) fn route_has_table(&self, route: &Route) -> bool {
        route
            .sinks
            .iter()
            .any(|s| self.sinks.get(s).is_some_and(|c| c.capabilities().commits))
    }

    /// The route index for an event's tag; routes are matched in order.
    pub(crate) fn route_for(&self, tag: &[u8]) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.patterns.iter().any(|p| p.matches(tag)))
            .or(self.unmatched_route)
    }
}

/// The file's sections, or an error naming the key that is wrong (unknown,
/// or of the wrong type), however deep in tables and arrays of tables, and
/// its line.
fn parse_file(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    let value = toml::Value::Table(table);
    let e = match serde_path_to_error::deserialize::<_, FileConfig>(value.clone()) {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    let (mut key, mut message) = (dotted(e.path()), first_line(e.inner()));
    // A sink's table is read whole to find its `type` first, which hides
    // the key inside it: read that sink's table again, alone.
    if let Some(name) = key
        .strip_prefix("sinks.")
        .map(|n| n.split('.').next().unwrap_or(n).to_string())
    {
        if let Some(sink) = value.get("sinks").and_then(|s| s.get(&name)) {
            if let Some((inner, why)) = explain(sink) {
                key = if inner.is_empty() {
                    format!("sinks.{name}")
                } else {
                    format!("sinks.{name}.{inner}")
                };
                message = why;
            }
        }
    }
    // An unknown key is named in the message; make it the key.
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        if !key.ends_with(field) {
            key = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
        }
    }
    let path = match position::line_of(text, &key) {
        Some(line) => format!("{origin}:{line}"),
        None => origin.to_string(),
    };
    Err(ConfigError::Invalid { path, key, message })
}

/// Settings given on the command line, over the file's (`weir serve
/// --period 1m --grace 5s` to see a file within a minute).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `roll.period`.
    pub period: Option<Duration>,
    /// `roll.grace`.
    pub grace: Option<Duration>,
}

/// The host name, with characters a node id cannot hold replaced by '-'.
fn host_node_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let id: String = host
        .trim_start_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "weir".to_string()
    } else {
        id
    }
}

fn resolve(file: FileConfig, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: origin.to_string(),
        key: key.to_string(),
        message,
    };
    // What a section's own validate() found.
    let stage = |e: Invalid| invalid(&e.key, e.message);
    let node_id = match file.node_id {
        Some(n) => n,
        None => host_node_id(),
    };
    if node_id.is_empty()
        || node_id.len() > 64
        || node_id.starts_with('.')
        || !node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            "node_id",
            format!("{node_id:?} must be 1 to 64 letters, digits, '.', '_' or '-' and not start with '.'"),
        ));
    }
    // File names are `{node}.parquet`, `{node}.part-{seq}.parquet`, …: a
    // node named like another's part file would replace its previews.
    for reserved in [".part-", ".late-", ".outside-", ".f-"] {
        if let Some(at) = node_id.find(reserved) {
            if node_id[at + reserved.len()..].starts_with(|c: char| c.is_ascii_digit()) {
                return Err(invalid(
                    "node_id",
                    format!("{node_id:?} must not contain {reserved:?} followed by a digit (file names use it)"),
                ));
            }
        }
    }
    let data_dir = file.data_dir.unwrap_or_else(default_data_dir);

    let period = file.roll.period.0;
    file.roll.validate().map_err(&stage)?;
    file.wal.validate().map_err(&stage)?;
    let tls_server = match &file.forward.tls {
        Some(tls) => {
            Some(server_config(tls, "forward.tls").map_err(|e| invalid(&e.key, e.message))?)
        }
        None => None,
    };
    file.forward.validate().map_err(&stage)?;
    if let Some(http) = &file.http {
        http.validate().map_err(&stage)?;
        if let Some(tls) = &http.tls {
            server_config(tls, "http.tls").map_err(|e| invalid(&e.key, e.message))?;
        }
    }

    let mut sinks = file.sinks;
    if sinks.is_empty() {
        sinks.insert(
            "local".to_string(),
            SinkConfig::Local(LocalSinkConfig {
                path: data_dir.join("files"),
                prefix: String::new(),
                fresh: false,
                layout: Default::default(),
            }),
        );
    }
    for (name, sink) in &sinks {
        sink.validate(name).map_err(&stage)?;
    }

    match file.roll.freshness.map(|f| f.0) {
        Some(f) => {
            if f < Duration::from_secs(1) || f >= period {
                return Err(invalid(
                    "roll.freshness",
                    format!(
                        "must be from 1s to less than roll.period ({})",
                        humantime::format_duration(period)
                    ),
                ));
            }
            if !sinks.values().any(SinkConfig::fresh) {
                return Err(invalid(
                    "roll.freshness",
                    "no sink takes preview files: set fresh = true on the object sinks that should"
                        .into(),
                ));
            }
        }
        None => {
            if let Some((name, _)) = sinks.iter().find(|(_, s)| s.fresh()) {
                return Err(invalid(
                    &format!("sinks.{name}.fresh"),
                    "needs roll.freshness, how often preview files are written (e.g. \"1m\")"
                        .into(),
                ));
            }
        }
    }

    let mut raw_routes = file.route;
    let implicit_route = raw_routes.is_empty();
    if raw_routes.is_empty() {
        raw_routes.push(RouteConfig {
            name: None,
            pattern: "**".to_string(),
            prefix: String::new(),
            sinks: None,
            columns: BTreeMap::new(),
            files: FileGrouping::PerTag,
            table: None,
        });
    }
    let mut routes = Vec::new();
    for (i, r) in raw_routes.into_iter().enumerate() {
        let key = format!("route[{i}]");
        let patterns =
            TagPattern::parse_list(&r.pattern).map_err(|m| invalid(&format!("{key}.match"), m))?;
        let route_sinks = r.sinks.unwrap_or_else(|| sinks.keys().cloned().collect());
        for s in &route_sinks {
            if !sinks.contains_key(s) {
                return Err(invalid(
                    &format!("{key}.sinks"),
                    format!(
                        "unknown sink {s:?}; defined: {}",
                        sinks.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        for c in r.columns.keys() {
            if matches!(c.as_str(), "time" | "tag" | "record") || c.is_empty() {
                return Err(invalid(
                    &format!("{key}.columns.{c}"),
                    "`time`, `tag` and `record` are built-in columns".into(),
                ));
            }
        }
        validate_prefix(&r.prefix).map_err(|m| invalid(&format!("{key}.prefix"), m))?;
        if r.files == FileGrouping::PerRoute && r.name.is_none() {
            return Err(invalid(
                &format!("{key}.files"),
                "\"per_route\" files are named after the route: give the route a `name`".into(),
            ));
        }
        let name = r.name.unwrap_or_else(|| key.clone());
        if routes.iter().any(|x: &Route| x.name == name) {
            return Err(invalid(
                &format!("{key}.name"),
                format!("{name:?} is used by another route"),
            ));
        }
        let tables: Vec<&String> = route_sinks
            .iter()
            .filter(|s| sinks.get(*s).is_some_and(|c| c.capabilities().commits))
            .collect();
        // The table: `table`, else the route's name; the one implicit route
        // of a config without routes writes table `logs`.
        let table = match (&r.table, implicit_route) {
            (Some(t), _) => t.clone(),
            (None, true) => "logs".to_string(),
            (None, false) => name.clone(),
        };
        if let Some(sink) = tables.first() {
            if !is_identifier(&table) {
                let key = if r.table.is_some() {
                    format!("{key}.table")
                } else {
                    format!("{key}.name")
                };
                return Err(invalid(
                    &key,
                    format!("{table:?} names the route's table in sink {sink:?}: it must be 1 to 128 letters, digits or '_', not starting with a digit (set `table`)"),
                ));
            }
            if let Some(other) = routes
                .iter()
                .find(|x: &&Route| x.table == table && x.sinks.iter().any(|s| tables.contains(&s)))
            {
                return Err(invalid(
                    &format!("{key}.table"),
                    format!("table {table:?} is already route {:?}'s: each route has its own table (set `table`)", other.name),
                ));
            }
            if file.roll.time_unit != TimeUnit::Us {
                return Err(invalid(
                    "roll.time_unit",
                    format!("Iceberg tables (sink {sink:?}) hold microseconds: \"ns\" needs Iceberg format v3, which weir does not write yet"),
                ));
            }
        }
        routes.push(Route {
            name,
            prefix: r.prefix,
            pattern: r.pattern,
            patterns,
            sinks: route_sinks,
            columns: r.columns.into_iter().collect(),
            files: r.files,
            table,
        });
    }
    let mut warnings = Vec::new();
    // A route matching `**` takes every tag: nothing can be unmatched.
    let catch_all = routes
        .iter()
        .any(|r| r.pattern.split_whitespace().any(|p| p == "**"));
    if !implicit_route && file.unmatched.is_none() && !catch_all {
        warnings.push(
            "unmatched: routes are configured and `unmatched` is not set, so events whose tag matches no route are dropped (each new tag is logged, weir_roll_unrouted_events_total counts them); set unmatched = \"drop\" to say so, or the name of a route to keep them".to_string(),
        );
    }
    if let Some(http) = &file.http {
        // HTTP requests never wait for memory: one that needs more than the
        // shared pool (the budget past forward's reserve) is always 413.
        let f = &file.forward;
        let pool = f
            .max_inflight_bytes
            .0
            .saturating_sub(f.max_buffer_bytes.0 + f.max_decompressed_bytes.0);
        if http.max_body_bytes.0 > pool {
            warnings.push(format!(
                "http.max_body_bytes ({}) is more than the memory HTTP requests share ({} = forward.max_inflight_bytes less forward.max_buffer_bytes and forward.max_decompressed_bytes); larger bodies are answered 413",
                http.max_body_bytes, ByteSize(pool)
            ));
        }
    }
    let unmatched_route = match file.unmatched.as_ref().unwrap_or(&Unmatched::Drop) {
        Unmatched::Drop => None,
        Unmatched::Route(name) => {
            Some(routes.iter().position(|r| &r.name == name).ok_or_else(|| {
                invalid(
                    "unmatched",
                    format!("{name:?} is neither \"drop\" nor the name of a route"),
                )
            })?)
        }
    };
    Ok(Config {
        unmatched_route,
        warnings,
        node_id,
        data_dir,
        forward: file.forward,
        http: file.http,
        wal: file.wal,
        roll: file.roll,
        routes,
        sinks,
        metrics: file.metrics,
        outbox: file.outbox,
        log: file.log,
        tls_server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_matching_everything_leaves_nothing_unmatched_to_warn_of() {
        let warned = |m: &str| {
            let text = format!(
                "data_dir = \"/tmp/x\"\n[[route]]\nmatch = \"{m}\"\nsinks = [\"s\"]\n[sinks.s]\ntype = \"local\"\npath = \"/tmp/s\"\n"
            );
            Config::from_str(&text, "test")
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.starts_with("unmatched:"))
        };
        assert!(warned("app.**"));
        assert!(!warned("**"));
        assert!(!warned("app.** **"));
    }

    fn err(text: &str) -> String {
        Config::from_str(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::from_str("node_id = \"n1\"", "t").unwrap();
        assert_eq!(
            c.forward.listen,
            "127.0.0.1:24224".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.roll.period.0, Duration::from_secs(3600));
        assert_eq!(c.wal.durability, Durability::Fsync);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].sinks, vec!["local".to_string()]);
    }

    #[test]
    fn the_issue_example_parses() {
        let c = Config::from_str(
            r#"
node_id  = "n1"
data_dir = "/var/lib/weir"
[forward]
listen = "127.0.0.1:24224"
[wal]
durability = "fsync"
[roll]
period = "1h"
grace  = "10m"
[sinks.local]
type = "local"
path = "/srv/lake"
prefix = "logs"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/weir"));
    }

    #[test]
    fn freshness_needs_a_fresh_sink_and_a_fresh_sink_needs_freshness() {
        let sink = "[sinks.lake]\ntype = 'local'\npath = '/tmp/x'\nfresh = true\n";
        let e = err(&format!("node_id='n'\n{sink}"));
        assert!(
            e.contains("sinks.lake.fresh") && e.contains("roll.freshness"),
            "{e}"
        );
        let e = err("node_id='n'\n[roll]\nfreshness = '1m'\n");
        assert!(
            e.contains("roll.freshness") && e.contains("fresh = true"),
            "{e}"
        );
        let e = err(&format!(
            "node_id='n'\n[roll]\nperiod = '5m'\nfreshness = '5m'\n{sink}"
        ));
        assert!(
            e.contains("roll.freshness") && e.contains("less than roll.period"),
            "{e}"
        );
        let e = err("node_id='n'\n[sinks.t]\ntype = 'td'\napikey = 'k'\nfresh = true\n");
        assert!(e.contains("fresh"), "{e}");
        let c = Config::from_str(
            &format!("node_id='n'\n[roll]\nfreshness = '1m'\n{sink}"),
            "t",
        )
        .unwrap();
        assert!(c.sinks["lake"].fresh());
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("node_id='n'\n[roll]\nperiod = \"30s\"").contains("roll.period"));
        assert!(err("node_id='web.part-1'").contains("node_id"));
        assert!(Config::from_str("node_id='web.partner-1'", "t").is_ok());
        assert!(err("node_id='n'\n[roll]\nperiod = \"7m\"").contains("roll.period"));
        let e = err("node_id='n'\n[wal]\ndurability = \"sometimes\"");
        assert!(e.contains("t.toml:3: key `wal.durability`"), "{e}");
        // Inside a sink's table and in arrays of tables: the key and its
        // own line, for wrong types and unknown keys alike.
        let e = err("node_id='n'\n[sinks.s3]\ntype = 's3'\nbucket = 'b'\nallow_http = 'yes'");
        assert!(
            e.contains("t.toml:5: key `sinks.s3.allow_http`: invalid type"),
            "{e}"
        );
        let e = err("node_id='n'\n[sinks.s3]\ntype = 's3'\nbucket = 'b'\nalow_http = true");
        assert!(
            e.contains("t.toml:5: key `sinks.s3.alow_http`: unknown field"),
            "{e}"
        );
        let e = err("node_id='n'\n[[route]]\nmatch = 'a'\n[[route]]\nmatch = 'b'\nsinks = 'x'");
        assert!(
            e.contains("t.toml:6: key `route[1].sinks`: invalid type"),
            "{e}"
        );
        let e = err("node_id='n'\n[forward.security]\nshared_key = 'k'\nself_hostname = 'h'\nclients = [{ network = '10.0.0.0/8', shard_key = 'x' }]");
        assert!(
            e.contains("t.toml:5: key `forward.security.clients[0].shard_key`"),
            "{e}"
        );
        let e = err("node_id='n'\n[sinks.x]\ntype = 's4'");
        assert!(
            e.contains("t.toml:3: key `sinks.x.type`: unknown sink type"),
            "{e}"
        );
        let e = err("node_id='n'\n[forward]\nlisten = \"nowhere\"");
        assert!(e.contains("listen"), "{e}");
        let e = err("node_id='n'\n[forward]\nlisen = \"x\"");
        assert!(e.contains("lisen"), "{e}");
        let e = err("node_id='n'\n[[route]]\nmatch='a.**'\nsinks=['s3']");
        assert!(e.contains("route[0].sinks") && e.contains("s3"), "{e}");
        let e = err("node_id='n'\n[[route]]\nmatch='a.**'\ncolumns={status='int16'}");
        assert!(e.contains("int16"), "{e}");
        assert!(err("node_id='../x'").contains("node_id"));
        let e = err("node_id='n'\n[roll]\ngrace = \"ten\"");
        assert!(e.contains("grace"), "{e}");
    }

    #[test]
    fn sinks_routes_and_unmatched() {
        let c = Config::from_str(
            r#"
node_id = "n1"
unmatched = "teams"
[[route]]
match = "app.**"
sinks = ["lake", "td"]
[[route]]
name = "teams"
match = "dev.**"
prefix = "teams"
sinks = ["sandbox"]
[sinks.lake]
type = "s3"
bucket = "logs"
server_side_encryption = "AES256"
[sinks.sandbox]
type = "gcs"
bucket = "sb"
[sinks.td]
type = "td"
apikey = "k"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.route_for(b"app.x"), Some(0));
        assert_eq!(
            c.route_for(b"other"),
            Some(1),
            "unmatched goes to the named route"
        );
        assert_eq!(c.routes[1].prefix, "teams");
        let e = err("node_id='n'\nunmatched='nowhere'");
        assert!(e.contains("unmatched") && e.contains("nowhere"), "{e}");
        let e =
            err("node_id='n'\n[sinks.s]\ntype='s3'\nbucket='b'\nserver_side_encryption='aws:kms'");
        assert!(e.contains("kms_key_id"), "{e}");
        let e = err("node_id='n'\n[sinks.s]\ntype='s3'\nbucket='b'\naccess_key_id='a'");
        assert!(e.contains("secret_access_key"), "{e}");
        let e = err("node_id='n'\n[sinks.t]\ntype='td'\napikey=' '");
        assert!(e.contains("sinks.t.apikey"), "{e}");
        let e = err("node_id='n'\n[sinks.s]\ntype='ftp'");
        assert!(e.contains("ftp"), "{e}");
        let e = err("node_id='n'\n[sinks.s]\ntype='gcs'\nbucket='b'\nbukcet='c'");
        assert!(e.contains("bukcet"), "{e}");
    }

    #[test]
    fn env_substitution() {
        std::env::set_var("WEIR_TEST_NODE", "from-env");
        let c = Config::from_str("node_id = \"${WEIR_TEST_NODE}\"", "t").unwrap();
        assert_eq!(c.node_id, "from-env");
        assert!(err("node_id = \"${WEIR_TEST_UNSET_VAR}\"").contains("WEIR_TEST_UNSET_VAR"));
    }
}
