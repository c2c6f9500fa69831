//! Configuration: TOML with `${ENV}` substitution, validated into a resolved
//! [`Config`] before any socket opens.
//!
//! Each TOML section is one struct; unknown keys are rejected; defaults are
//! named functions so `weir check` can print what is in force. Errors name the
//! key and, where the TOML parser knows it, the line.

mod env;
mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::router::TagPattern;
pub use units::{ByteSize, HumanDuration};

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

/// Prints secrets as "***" in `weir check` (they must never be logged).
fn redact<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() { "" } else { "***" })
}

fn redact_opt<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => redact(v, s),
        None => s.serialize_none(),
    }
}

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A user for the handshake's user authentication.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    #[serde(serialize_with = "redact")]
    pub password: String,
}

/// A rule for clients from one address or network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRule {
    /// One address, e.g. "10.1.2.3".
    pub host: Option<std::net::IpAddr>,
    /// A CIDR network, e.g. "10.0.0.0/8" (parsed once, with the file).
    pub network: Option<ipnet::IpNet>,
    /// This client's shared key instead of the global one.
    #[serde(default, serialize_with = "redact_opt")]
    pub shared_key: Option<String>,
    /// Users allowed from here (default: all).
    pub users: Option<Vec<String>>,
}

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

fn default_tls_version() -> TlsVersion {
    TlsVersion::V1_2
}

/// `[forward.tls]`: TLS on the forward port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mTLS).
    pub ca_path: Option<PathBuf>,
    #[serde(default = "default_tls_version")]
    pub min_version: TlsVersion,
    /// A client must finish the TLS handshake within this time.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

/// `[forward.security]`: the shared-key handshake (HELO/PING/PONG).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Sent in PONG; must differ from every client's own host name.
    pub self_hostname: String,
    #[serde(serialize_with = "redact")]
    pub shared_key: String,
    /// Also check a username/password digest.
    #[serde(default)]
    pub user_auth: bool,
    /// Accept clients that match no `clients` rule.
    #[serde(default = "default_true")]
    pub allow_anonymous_source: bool,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub clients: Vec<ClientRule>,
    /// A client must complete the handshake within this time.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 24224))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("weir-data")
}
fn default_max_buffer() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_decompressed() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_max_inflight() -> ByteSize {
    ByteSize(512 << 20)
}
fn default_max_connections() -> usize {
    10_000
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 24231))
}
fn default_backpressure_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_segment_bytes() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_group_bytes() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_roll_buffer() -> ByteSize {
    ByteSize(128 << 20)
}
fn default_zstd_level() -> i32 {
    3
}
fn default_row_group_rows() -> usize {
    1 << 20
}

/// `[forward]`: the forward-protocol listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// TCP address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Per-connection cap on buffered, not yet decoded bytes (one request
    /// can be at most this large). Enforced as bytes arrive.
    #[serde(default = "default_max_buffer")]
    pub max_buffer_bytes: ByteSize,
    /// Cap on a compressed request's entries once expanded (gzip/zstd bombs).
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: ByteSize,
    /// Memory all connections' requests in flight share: read buffers
    /// (beyond 16 KiB each), decompressed entries and decoded batches
    /// waiting for the WAL. When it is spent connections wait, unread.
    #[serde(default = "default_max_inflight")]
    pub max_inflight_bytes: ByteSize,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Connections served at once; more are accepted and closed at once
    /// (counted in `weir_forward_connections_refused_total`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Shared-key handshake; without it clients connect without one.
    pub security: Option<SecurityConfig>,
    /// TLS; without it the port speaks plain TCP.
    pub tls: Option<TlsConfig>,
    /// A request that has begun arriving must be complete within this time
    /// (a client trickling bytes forever is closed: slowloris).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Close each connection after its first request (Fluentd's
    /// `deny_keepalive`); HELO then advertises `keepalive: false`.
    #[serde(default)]
    pub deny_keepalive: bool,
    /// Close connections with RST instead of FIN (SO_LINGER 0), so clients
    /// that reconnect often leave no TIME_WAIT sockets behind.
    #[serde(default)]
    pub linger_zero: bool,
    /// Prepended to every tag as `"{tag_prefix}.{tag}"`.
    #[serde(default)]
    pub tag_prefix: String,
    /// How many recent chunk ids to remember, so a client that resends a
    /// chunk whose ack it missed gets an ack without a second copy being
    /// written (kept in the WAL, so this survives a restart). 0 turns it off.
    #[serde(default = "default_dedupe_window")]
    pub dedupe_window: usize,
    /// Adds the client's IP address to every record under this key.
    pub source_address_key: Option<String>,
    /// Adds the client's host name (reverse DNS, once per connection) to
    /// every record under this key.
    pub source_hostname_key: Option<String>,
    /// Logs (rate-limited) and counts requests larger than this.
    pub chunk_size_warn_limit: Option<ByteSize>,
    /// Copies every request weir decodes into capture files here (replay them
    /// with `weir replay`). Off without it. Capture never slows ingestion:
    /// when the disk cannot keep up, records are dropped and counted in
    /// `weir_capture_dropped_total`.
    pub capture_dir: Option<PathBuf>,
    /// Start a new capture file once the current one reaches this size.
    #[serde(default = "default_capture_file_bytes")]
    pub capture_max_file_bytes: ByteSize,
    /// Keep only this many capture files; the oldest are deleted.
    #[serde(default = "default_capture_files")]
    pub capture_max_files: usize,
}

fn default_capture_file_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_capture_files() -> usize {
    8
}

fn default_dedupe_window() -> usize {
    100_000
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_buffer_bytes: default_max_buffer(),
            max_decompressed_bytes: default_max_decompressed(),
            max_inflight_bytes: default_max_inflight(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            security: None,
            tls: None,
            request_timeout: default_request_timeout(),
            deny_keepalive: false,
            linger_zero: false,
            tag_prefix: String::new(),
            dedupe_window: default_dedupe_window(),
            source_address_key: None,
            source_hostname_key: None,
            chunk_size_warn_limit: None,
            capture_dir: None,
            capture_max_file_bytes: default_capture_file_bytes(),
            capture_max_files: default_capture_files(),
        }
    }
}

fn default_backlog() -> ByteSize {
    ByteSize(10 << 30)
}

/// `[outbox]`: finished files waiting for their sinks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Disk the outbox may use for files some sink has not taken yet. Past
    /// it weir stops finishing files (and so, soon, reading sockets) until a
    /// sink catches up: backpressure instead of a full disk.
    #[serde(default = "default_backlog")]
    pub max_backlog_bytes: ByteSize,
    /// On SIGTERM, keep delivering finished files for up to this long
    /// before exiting (keep it under Kubernetes'
    /// terminationGracePeriodSeconds). What is left goes at the next start.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// Keep delivered files in `data_dir/retained/` this long after their
    /// period ends, for restore ("0s", the default: delete on delivery).
    #[serde(default = "default_retain")]
    pub retain: HumanDuration,
    /// Most disk retained files may use; the oldest periods go first.
    #[serde(default = "default_retain_bytes")]
    pub retain_bytes: ByteSize,
}

fn default_retain() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

fn default_retain_bytes() -> ByteSize {
    ByteSize(10 << 30)
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(20))
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_backlog_bytes: default_backlog(),
            shutdown_timeout: default_shutdown_timeout(),
            retain: default_retain(),
            retain_bytes: default_retain_bytes(),
        }
    }
}

/// `[metrics]`: the HTTP endpoint for Prometheus and probes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serves `/metrics`, `/healthz` and `/readyz`. 24231 is the port
    /// Fluentd's prometheus plugin uses.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// `/readyz` fails once backpressure (the roller not keeping up) has
    /// lasted this long, so a load balancer can send traffic elsewhere.
    #[serde(default = "default_backpressure_grace")]
    pub backpressure_grace: HumanDuration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
            backpressure_grace: default_backpressure_grace(),
        }
    }
}

/// How hard the WAL works to make an acknowledged request survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fdatasync before every ack (group commit shares one sync across
    /// connections). Survives power loss.
    Fsync,
    /// Write to the OS only: survives a process crash, not a power loss.
    /// For benchmarks.
    None,
}

/// `[wal]`: the write-ahead log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    #[serde(default = "default_durability")]
    pub durability: Durability,
    /// A segment file is closed and a new one started past this size.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: ByteSize,
    /// Most bytes written under one group commit.
    #[serde(default = "default_group_bytes")]
    pub max_group_bytes: ByteSize,
    /// WAL bytes the roller may be behind (a burst, or the roller slower
    /// than ingestion for a while). Past it appends wait and connections
    /// stop reading (backpressure). Acks never wait for the roller before.
    #[serde(default = "default_wal_backlog")]
    pub max_backlog_bytes: ByteSize,
}

fn default_wal_backlog() -> ByteSize {
    ByteSize(4 << 30)
}

fn default_durability() -> Durability {
    Durability::Fsync
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            durability: default_durability(),
            segment_bytes: default_segment_bytes(),
            max_group_bytes: default_group_bytes(),
            max_backlog_bytes: default_wal_backlog(),
        }
    }
}

/// Unit of the Parquet `time` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Microseconds: what Athena, BigQuery, DuckDB and Spark all read.
    Us,
    /// Nanoseconds: lossless for EventTime, not read by every engine.
    Ns,
}

fn default_time_unit() -> TimeUnit {
    TimeUnit::Us
}

/// `[roll]`: how events become Parquet files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Length of one file's time window: "1h" (default) down to "1m".
    #[serde(default = "default_period")]
    pub period: HumanDuration,
    /// How long after a period ends its file stays open for stragglers.
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    #[serde(default = "default_time_unit")]
    pub time_unit: TimeUnit,
    /// Memory for rows not yet written to disk, across all open files. Past
    /// it the largest open file writes a row group.
    #[serde(default = "default_roll_buffer")]
    pub max_buffer_bytes: ByteSize,
    /// Most rows in one row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level for Parquet pages (1 fastest … 22 smallest).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// An event dated more than this after its arrival (a client clock that
    /// runs fast) does not open its own period's file, which would stay open
    /// until that period ends: it goes to a short-lived `outside` file.
    #[serde(default = "default_max_future")]
    pub max_future: HumanDuration,
    /// A late event (its period's file already finished) dated less than
    /// this before its arrival goes to a `late` file beside its period's
    /// file; older ones go to the short-lived `outside` file, so a request
    /// spanning years cannot open a file per period.
    #[serde(default = "default_max_past")]
    pub max_past: HumanDuration,
    /// Files (Parquet and Treasure Data parts) open at once. Past it the
    /// least recently written file is finished early.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Off by default. How often the rows of open files are also written
    /// as small preview files for the sinks with `fresh = true`, so recent
    /// data is queryable before its period's file is finished (README,
    /// "Freshness").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<HumanDuration>,
}

fn default_max_future() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_max_past() -> HumanDuration {
    HumanDuration(Duration::from_secs(86_400))
}
fn default_max_open_files() -> usize {
    512
}

impl Default for RollConfig {
    fn default() -> Self {
        Self {
            period: default_period(),
            grace: default_grace(),
            time_unit: default_time_unit(),
            max_buffer_bytes: default_roll_buffer(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            max_future: default_max_future(),
            max_past: default_max_past(),
            max_open_files: default_max_open_files(),
            freshness: None,
        }
    }
}

/// Type of a declared column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
}

/// `[[route]]`: which events go where, with which columns.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name for logs, metrics and `unmatched`; default `route[N]`.
    pub name: Option<String>,
    /// fluentd `<match>` patterns, space separated (`app.**`, `*.access`, `{a,b}.x`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Key prefix after the sink's own prefix (e.g. a team folder).
    #[serde(default)]
    pub prefix: String,
    /// Sinks that receive this route's files; default all.
    #[serde(default)]
    pub sinks: Option<Vec<String>>,
    /// Typed columns taken out of the record.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
    /// One file per tag (default) or one per route with the tag as a column.
    #[serde(default)]
    pub files: FileGrouping,
}

/// What one Parquet file of a route holds (per period and node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileGrouping {
    /// One file per tag: `{prefix}/{tag}/dt=…/hour=…/{node}.parquet`.
    #[default]
    PerTag,
    /// One file for all the route's tags, named by the route:
    /// `{prefix}/{route}/dt=…/hour=…/{node}.parquet`; the `tag` column
    /// tells them apart. For tags made per container or per pod.
    PerRoute,
}

/// `[sinks.NAME]`: a destination for finished files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// A local folder.
    Local(LocalSinkConfig),
    /// Amazon S3 or an S3-compatible store.
    S3(S3SinkConfig),
    /// Google Cloud Storage.
    Gcs(GcsSinkConfig),
    /// Treasure Data's import API (records, not Parquet files).
    Td(TdSinkConfig),
}

impl SinkConfig {
    /// Key prefix inside the destination.
    pub fn prefix(&self) -> &str {
        match self {
            SinkConfig::Local(c) => &c.prefix,
            SinkConfig::S3(c) => &c.prefix,
            SinkConfig::Gcs(c) => &c.prefix,
            SinkConfig::Td(_) => "",
        }
    }

    /// Whether the sink takes preview files (`fresh = true`).
    pub fn fresh(&self) -> bool {
        match self {
            SinkConfig::Local(c) => c.fresh,
            SinkConfig::S3(c) => c.fresh,
            SinkConfig::Gcs(c) => c.fresh,
            SinkConfig::Td(_) => false,
        }
    }
}

fn default_td_endpoint() -> String {
    "https://api.treasuredata.com".to_string()
}
fn default_td_flush() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_td_part() -> ByteSize {
    ByteSize(32 << 20)
}

/// `type = "td"`: uploads records to Treasure Data as fluent-plugin-td does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TdSinkConfig {
    #[serde(serialize_with = "redact")]
    pub apikey: String,
    #[serde(default = "default_td_endpoint")]
    pub endpoint: String,
    /// Default: the tag's second-to-last part (normalised as TD does).
    pub database: Option<String>,
    /// Default: the tag's last part.
    pub table: Option<String>,
    /// A part is uploaded this long after its first event.
    #[serde(default = "default_td_flush")]
    pub flush_interval: HumanDuration,
    /// Largest part (msgpack bytes before gzip).
    #[serde(default = "default_td_part")]
    pub max_part_bytes: ByteSize,
    /// Create a missing database/table on 404 instead of dead-lettering.
    #[serde(default = "default_true")]
    pub auto_create_table: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSinkConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub fresh: bool,
}

/// Server-side encryption for S3 objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum S3Encryption {
    /// SSE-S3.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS; needs `kms_key_id`.
    #[serde(rename = "aws:kms")]
    Kms,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub fresh: bool,
    /// Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1.
    pub region: Option<String>,
    /// For S3-compatible stores (MinIO, Ceph, R2 …): their URL.
    pub endpoint: Option<String>,
    /// Address buckets as `https://host/bucket` (default) or, when false,
    /// `https://bucket.host`.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Allow plain http endpoints (test stores, in-cluster gateways).
    #[serde(default)]
    pub allow_http: bool,
    /// Static credentials; without them the standard chain is used
    /// (AWS_* variables, shared credentials profile, web identity / IRSA,
    /// instance metadata).
    pub access_key_id: Option<String>,
    #[serde(default, serialize_with = "redact_opt")]
    pub secret_access_key: Option<String>,
    #[serde(default, serialize_with = "redact_opt")]
    pub session_token: Option<String>,
    /// Profile of the shared credentials file (`~/.aws/credentials`);
    /// default `AWS_PROFILE`, else "default".
    pub profile: Option<String>,
    pub server_side_encryption: Option<S3Encryption>,
    pub kms_key_id: Option<String>,
    /// e.g. "STANDARD_IA", "INTELLIGENT_TIERING".
    pub storage_class: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcsSinkConfig {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// Also take preview files every `roll.freshness` (under `_fresh/`).
    #[serde(default)]
    pub fresh: bool,
    /// Service-account JSON file; without it application default
    /// credentials are used (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file,
    /// or the metadata server / Workload Identity).
    pub service_account_path: Option<PathBuf>,
    /// Service-account JSON given inline (e.g. `"${GCS_SERVICE_ACCOUNT}"`).
    #[serde(default, serialize_with = "redact_opt")]
    pub service_account_key: Option<String>,
    /// A fixed OAuth bearer token (tokens refreshed outside weir, or a local
    /// GCS endpoint named by the service account's `gcs_base_url`).
    #[serde(default, serialize_with = "redact_opt")]
    pub bearer_token: Option<String>,
    /// e.g. "NEARLINE".
    pub storage_class: Option<String>,
}

/// What happens to an event whose tag matches no route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Unmatched {
    /// Counted in `weir_roll_unrouted_events_total` and dropped.
    Drop,
    /// Sent to the route with this name.
    Route(String),
}

impl<'de> Deserialize<'de> for Unmatched {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "drop" {
            Unmatched::Drop
        } else {
            Unmatched::Route(s)
        })
    }
}

fn default_unmatched() -> Unmatched {
    Unmatched::Drop
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    data_dir: Option<PathBuf>,
    /// "drop" (default) or the name of the route unmatched events go to.
    #[serde(default = "default_unmatched")]
    unmatched: Unmatched,
    #[serde(default)]
    forward: ForwardConfig,
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
}

/// A route after validation.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// The route's name (`route[N]` unless configured).
    pub name: String,
    /// Key prefix after the sink's prefix.
    pub prefix: String,
    pub pattern: String,
    #[serde(skip)]
    pub patterns: Vec<TagPattern>,
    pub sinks: Vec<String>,
    pub columns: Vec<(String, ColumnType)>,
    pub files: FileGrouping,
}

/// The whole validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub forward: ForwardConfig,
    pub wal: WalConfig,
    pub roll: RollConfig,
    pub routes: Vec<Route>,
    /// Route index for events no route matches; `None` drops them.
    pub unmatched_route: Option<usize>,
    pub sinks: BTreeMap<String, SinkConfig>,
    pub metrics: MetricsConfig,
    pub outbox: OutboxConfig,
    /// `forward.tls`, loaded and checked once at validation (certificates
    /// read, key matched), used as it is by the listener.
    #[serde(skip)]
    pub tls_server: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Config {
    /// The embedded default: listen on 127.0.0.1:24224, write under ./weir-data.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_str("", "<embedded default>")
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(Some(path), &Overrides::default())
    }

    /// Loads a config file (or the embedded default) with command-line
    /// overrides applied before validation.
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
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
        let origin = if overrides.period.is_some() || overrides.grace.is_some() {
            format!("{origin} with --period/--grace from the command line")
        } else {
            origin
        };
        Self::from_str_with(&text, &origin, overrides)
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
        let text = env::substitute_values(text, |k| std::env::var(k).ok()).map_err(|message| {
            ConfigError::Env {
                path: origin.to_string(),
                message,
            }
        })?;
        let mut file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        if let Some(p) = overrides.period {
            file.roll.period = HumanDuration(p);
        }
        if let Some(g) = overrides.grace {
            file.roll.grace = HumanDuration(g);
        }
        resolve(file, origin)
    }

    /// The route index for an event's tag; routes are matched in order.
    pub fn route_for(&self, tag: &[u8]) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.patterns.iter().any(|p| p.matches(tag)))
            .or(self.unmatched_route)
    }
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
    if period < Duration::from_secs(60) || period > Duration::from_secs(86_400) {
        return Err(invalid("roll.period", "must be from 1m to 24h".into()));
    }
    if !period.as_secs().is_multiple_of(60)
        || period.subsec_nanos() != 0
        || 86_400 % period.as_secs() != 0
    {
        return Err(invalid(
            "roll.period",
            "must be whole minutes that divide a day evenly (1m, 5m, 15m, 1h, …)".into(),
        ));
    }
    if !(1..=22).contains(&file.roll.zstd_level) {
        return Err(invalid("roll.zstd_level", "must be from 1 to 22".into()));
    }
    if file.roll.max_open_files < 2 {
        return Err(invalid("roll.max_open_files", "must be at least 2".into()));
    }
    if file.roll.row_group_rows == 0 {
        return Err(invalid("roll.row_group_rows", "must be at least 1".into()));
    }
    if file.wal.segment_bytes.0 < 4096 {
        return Err(invalid("wal.segment_bytes", "must be at least 4KiB".into()));
    }
    let tls_server = match &file.forward.tls {
        Some(tls) => {
            Some(crate::forward::tls::server_config(tls).map_err(|e| invalid(e.key, e.message))?)
        }
        None => None,
    };
    if let Some(sec) = &file.forward.security {
        if sec.self_hostname.trim().is_empty() {
            return Err(invalid(
                "forward.security.self_hostname",
                "must not be empty".into(),
            ));
        }
        if sec.user_auth && sec.users.is_empty() {
            return Err(invalid(
                "forward.security.users",
                "user_auth = true needs at least one user".into(),
            ));
        }
        for (i, c) in sec.clients.iter().enumerate() {
            let key = format!("forward.security.clients[{i}]");
            if c.host.is_some() == c.network.is_some() {
                return Err(invalid(&key, "give exactly one of host or network".into()));
            }
            for u in c.users.iter().flatten() {
                if !sec.users.iter().any(|x| &x.username == u) {
                    return Err(invalid(
                        &format!("{key}.users"),
                        format!("unknown user {u:?}"),
                    ));
                }
            }
        }
    }
    if file.forward.tag_prefix.len() > 256 || file.forward.tag_prefix.contains(char::is_whitespace)
    {
        return Err(invalid(
            "forward.tag_prefix",
            "must be at most 256 characters without spaces".into(),
        ));
    }
    if file.forward.source_address_key.as_deref() == Some("") {
        return Err(invalid(
            "forward.source_address_key",
            "must not be empty".into(),
        ));
    }
    if file.forward.capture_max_files == 0 {
        return Err(invalid(
            "forward.capture_max_files",
            "must be at least 1".into(),
        ));
    }
    if file.forward.capture_max_file_bytes.0 < 4096 {
        return Err(invalid(
            "forward.capture_max_file_bytes",
            "must be at least 4KiB".into(),
        ));
    }
    if file.forward.max_connections == 0 {
        return Err(invalid(
            "forward.max_connections",
            "must be at least 1".into(),
        ));
    }
    if file.forward.max_buffer_bytes.0 < 1024 {
        return Err(invalid(
            "forward.max_buffer_bytes",
            "must be at least 1KiB".into(),
        ));
    }
    // The budget keeps one largest request's worth in reserve (so partly
    // read requests cannot deadlock), so one must fit in it.
    let (buffer, expanded, inflight) = (
        file.forward.max_buffer_bytes,
        file.forward.max_decompressed_bytes,
        file.forward.max_inflight_bytes,
    );
    if expanded.0 < buffer.0 {
        return Err(invalid(
            "forward.max_decompressed_bytes",
            format!("{expanded} is less than forward.max_buffer_bytes ({buffer}); it also caps a request's decoded events, which are about as large as the request"),
        ));
    }
    if buffer.0 + expanded.0 > inflight.0 {
        return Err(invalid(
            "forward.max_inflight_bytes",
            format!("{inflight} is less than forward.max_buffer_bytes ({buffer}) + forward.max_decompressed_bytes ({expanded}): one largest request must fit the budget all connections share"),
        ));
    }
    if file.forward.max_decompressed_bytes.0 > 512 << 20 {
        return Err(invalid(
            "forward.max_decompressed_bytes",
            "must be at most 512MiB (a request must fit one WAL record)".into(),
        ));
    }

    let mut sinks = file.sinks;
    if sinks.is_empty() {
        sinks.insert(
            "local".to_string(),
            SinkConfig::Local(LocalSinkConfig {
                path: data_dir.join("files"),
                prefix: String::new(),
                fresh: false,
            }),
        );
    }
    for (name, sink) in &sinks {
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
        crate::sink::key::validate_prefix(sink.prefix())
            .map_err(|m| invalid(&format!("sinks.{name}.prefix"), m))?;
        match sink {
            SinkConfig::S3(c) => {
                if c.bucket.is_empty() {
                    return Err(invalid(
                        &format!("sinks.{name}.bucket"),
                        "must not be empty".into(),
                    ));
                }
                if c.access_key_id.is_some() != c.secret_access_key.is_some() {
                    return Err(invalid(
                        &format!("sinks.{name}.secret_access_key"),
                        "access_key_id and secret_access_key go together".into(),
                    ));
                }
                if c.server_side_encryption == Some(S3Encryption::Kms) && c.kms_key_id.is_none() {
                    return Err(invalid(
                        &format!("sinks.{name}.kms_key_id"),
                        "server_side_encryption = \"aws:kms\" needs kms_key_id".into(),
                    ));
                }
            }
            SinkConfig::Gcs(c) => {
                if c.bucket.is_empty() {
                    return Err(invalid(
                        &format!("sinks.{name}.bucket"),
                        "must not be empty".into(),
                    ));
                }
                if c.service_account_path.is_some() && c.service_account_key.is_some() {
                    return Err(invalid(
                        &format!("sinks.{name}.service_account_key"),
                        "give service_account_path or service_account_key, not both".into(),
                    ));
                }
            }
            SinkConfig::Td(c) => {
                if c.apikey.trim().is_empty() {
                    return Err(invalid(
                        &format!("sinks.{name}.apikey"),
                        "must not be empty".into(),
                    ));
                }
                if !(c.endpoint.starts_with("http://") || c.endpoint.starts_with("https://")) {
                    return Err(invalid(
                        &format!("sinks.{name}.endpoint"),
                        "must be an http(s) URL".into(),
                    ));
                }
                if c.max_part_bytes.0 < 1024 || c.max_part_bytes.0 > 256 << 20 {
                    return Err(invalid(
                        &format!("sinks.{name}.max_part_bytes"),
                        "must be from 1KiB to 256MiB".into(),
                    ));
                }
            }
            SinkConfig::Local(_) => {}
        }
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
    if raw_routes.is_empty() {
        raw_routes.push(RouteConfig {
            name: None,
            pattern: "**".to_string(),
            prefix: String::new(),
            sinks: None,
            columns: BTreeMap::new(),
            files: FileGrouping::PerTag,
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
        crate::sink::key::validate_prefix(&r.prefix)
            .map_err(|m| invalid(&format!("{key}.prefix"), m))?;
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
        routes.push(Route {
            name,
            prefix: r.prefix,
            pattern: r.pattern,
            patterns,
            sinks: route_sinks,
            columns: r.columns.into_iter().collect(),
            files: r.files,
        });
    }
    let unmatched_route = match &file.unmatched {
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
        node_id,
        data_dir,
        forward: file.forward,
        wal: file.wal,
        roll: file.roll,
        routes,
        sinks,
        metrics: file.metrics,
        outbox: file.outbox,
        tls_server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_str(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::from_str("node_id = \"n1\"", "t").unwrap();
        assert_eq!(c.forward.listen, default_listen());
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
        assert!(e.contains("durability") && e.contains("line 3"), "{e}");
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
