//! Committing files into their tables exactly once.
//!
//! A commit is one fast-append per table, of the files put since the last
//! commit, with snapshot properties naming the node (`weir.node`) and what
//! it adds (`weir.files`, `weir.rows`). The outbox marks a file delivered
//! only after its commit, so after any crash (between upload and commit,
//! between commit and mark, during a retried commit) the file is put and
//! committed again; before adding anything, the committer reads what this
//! node's snapshots since the oldest file was finished added (one small
//! manifest each, found through `weir.node` and `added_snapshot_id`) and
//! leaves out the files already there. When snapshots of that span may have
//! been expired, or for `weir redeliver`, every manifest of the current
//! snapshot is read instead. A conflict with another node's commit is
//! retried by iceberg on the new table state (it cannot have landed); any
//! other failure is retried by the outbox and starts with that check.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use iceberg::spec::ManifestContentType;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent};

use super::catalog::Counting;
use super::data_file;
use super::table::{self, Moment, Shape, TableError};
use crate::metrics::IcebergMetrics;
use crate::sink::{SinkError, Staged};

/// Snapshots this much older than a file's finish time are not searched
/// for it (clock steps between finishing and committing).
const SLACK_MS: i64 = 10 * 60 * 1000;
/// How often this node's old snapshots are expired.
const EXPIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// What the committer needs to know, fixed at start.
pub(super) struct Settings {
    pub sink: String,
    pub(crate) node: String,
    pub(crate) namespace: NamespaceIdent,
    /// Table location by table name.
    pub(crate) locations: HashMap<String, String>,
    /// The shape of each route's table, by route name.
    pub(crate) shapes: HashMap<String, Shape>,
    /// URI prefix of file keys (`file:///wh/`, `s3://bucket/`).
    pub(crate) files_base: String,
    /// Where table uuids are remembered (`data_dir/iceberg/{sink}/`).
    pub(crate) state_dir: PathBuf,
    pub(crate) snapshot_max_age_ms: i64,
    pub(crate) snapshot_min_keep: usize,
}

/// One sink's committer: the catalog, and each table as last seen.
pub(super) struct Committer {
    pub(crate) settings: Settings,
    pub(crate) metrics: IcebergMetrics,
    catalog: Option<Arc<Counting>>,
    /// Connects to the catalog (again after a failure).
    pub(super) connect: super::Connect,
    tables: HashMap<String, Table>,
    expired_at: HashMap<String, Instant>,
    /// Manifest lists of expired snapshots, deleted one expiry later: a
    /// query that started on such a snapshot just before it expired can
    /// still finish.
    ///
    /// # Memory
    /// One path per snapshot expired in the last expiry interval.
    expired_lists: Vec<(Instant, String)>,
    /// The warnings last logged per table, so a state someone else left
    /// (a dropped column) is said once, not at every commit.
    ///
    /// # Memory
    /// One short list per table of this sink's routes.
    warned: HashMap<String, Vec<String>>,
}

impl Committer {
    pub(super) fn new(
        settings: Settings,
        metrics: IcebergMetrics,
        connect: super::Connect,
    ) -> Self {
        Self {
            settings,
            metrics,
            catalog: None,
            connect,
            tables: HashMap::new(),
            warned: HashMap::new(),
            expired_at: HashMap::new(),
            expired_lists: Vec::new(),
        }
    }

    async fn catalog(&mut self) -> Result<Arc<Counting>, SinkError> {
        if let Some(c) = &self.catalog {
            return Ok(c.clone());
        }
        let c = (self.connect)().await.map_err(|e| catalog_error(&e))?;
        let c = Arc::new(Counting::new(c));
        super::catalog::ensure_namespace(c.as_ref(), &self.settings.namespace)
            .await
            .map_err(|e| catalog_error(&e))?;
        self.catalog = Some(c.clone());
        Ok(c)
    }

    /// Logs `warnings` for `table` unless they are the ones logged last.
    fn warn_once(&mut self, table: &str, warnings: &[String]) {
        if self.warned.get(table).map(Vec::as_slice) == Some(warnings) {
            return;
        }
        for w in warnings {
            tracing::warn!(sink = %self.settings.sink, table, "{w}");
        }
        self.warned.insert(table.to_string(), warnings.to_vec());
    }

    /// The table of `shape`, brought to its shape the first time (and after
    /// a failure), then reloaded before each commit.
    async fn table(
        &mut self,
        catalog: &Arc<Counting>,
        shape: &Shape,
        moment: Moment,
    ) -> Result<Table, SinkError> {
        let name = &shape.table;
        if let Some(t) = self.tables.get(name) {
            match catalog.load_table(t.identifier()).await {
                // The same table, still of the route's shape: another
                // writer's change since (a column dropped, the spec
                // changed) is checked at every commit, not only at start.
                Ok(t)
                    if self.known_uuid(name).as_deref()
                        == Some(&t.metadata().uuid().to_string()) =>
                {
                    if let Ok(p) = table::plan(&t, shape, moment) {
                        if p.is_noop() {
                            self.warn_once(name, &p.warnings);
                            return Ok(t);
                        }
                    }
                    self.tables.remove(name);
                }
                Ok(_) | Err(_) => {
                    self.tables.remove(name);
                }
            }
        }
        let location = self
            .settings
            .locations
            .get(name)
            .cloned()
            .unwrap_or_default();
        let known = self.known_uuid(name);
        match table::prepare(
            catalog.as_ref(),
            &self.settings.namespace,
            &location,
            shape,
            known.as_deref(),
            moment,
        )
        .await
        {
            Ok((t, warnings)) => {
                self.warn_once(name, &warnings);
                self.remember_uuid(name, &t.metadata().uuid().to_string())?;
                self.metrics.table_ok(&self.settings.sink, name);
                self.tables.insert(name.clone(), t.clone());
                Ok(t)
            }
            Err(TableError::Catalog(e)) => Err(catalog_error(&e)),
            Err(e) => {
                self.metrics.table_refused(&self.settings.sink, name, &e);
                Err(match e {
                    TableError::Refused { .. } => SinkError::Refused(e.to_string()),
                    _ => SinkError::Table(e.to_string()),
                })
            }
        }
    }

    fn uuid_path(&self, table: &str) -> PathBuf {
        self.settings.state_dir.join(format!("{table}.uuid"))
    }

    fn known_uuid(&self, table: &str) -> Option<String> {
        std::fs::read_to_string(self.uuid_path(table))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn remember_uuid(&self, table: &str, uuid: &str) -> Result<(), SinkError> {
        if self.known_uuid(table).as_deref() == Some(uuid) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.settings.state_dir)?;
        let tmp = self.uuid_path(table).with_extension("uuid.tmp");
        crate::outbox::write_synced(&tmp, uuid.as_bytes())?;
        std::fs::rename(&tmp, self.uuid_path(table))?;
        crate::wal::sync_dir(&self.settings.state_dir)?;
        Ok(())
    }

    /// Checks each table of `routes` now (at start, and for `weir check`):
    /// created or brought to shape. Returns the first refusal.
    ///
    /// # Errors
    /// The catalog cannot be reached, or a table refuses its route.
    pub(super) async fn prepare_all(&mut self) -> Result<(), SinkError> {
        let catalog = self.catalog().await?;
        let shapes: Vec<Shape> = self.settings.shapes.values().cloned().collect();
        for shape in shapes {
            self.table(&catalog, &shape, Moment::Start).await?;
        }
        Ok(())
    }

    /// What `weir check` says of each table, changing nothing: "ready",
    /// "will be created", "will get columns …". Refusals are errors.
    ///
    /// # Errors
    /// The catalog cannot be reached, or a table refuses its route.
    pub(super) async fn check(&mut self) -> Result<Vec<String>, SinkError> {
        let catalog = self.catalog().await?;
        let mut notes = Vec::new();
        let mut shapes: Vec<Shape> = self.settings.shapes.values().cloned().collect();
        shapes.sort_by(|a, b| a.table.cmp(&b.table));
        for shape in shapes {
            let ident =
                iceberg::TableIdent::new(self.settings.namespace.clone(), shape.table.clone());
            let exists = catalog
                .table_exists(&ident)
                .await
                .map_err(|e| catalog_error(&e))?;
            if !exists {
                notes.push(format!(
                    "table {ident} (route {}): will be created",
                    shape.route
                ));
                continue;
            }
            let t = catalog
                .load_table(&ident)
                .await
                .map_err(|e| catalog_error(&e))?;
            let plan = table::plan(&t, &shape, Moment::Start);
            if let Ok(p) = &plan {
                notes.extend(p.warnings.iter().map(|w| format!("warning: {w}")));
            }
            match plan {
                Ok(p) if p.add.is_empty() => {
                    notes.push(format!("table {ident} (route {}): ready", shape.route))
                }
                Ok(p) => notes.push(format!(
                    "table {ident} (route {}): will get the optional columns {}",
                    shape.route,
                    p.add
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(TableError::Refused { .. }) | Err(TableError::Altered { .. }) => {
                    let e = table::plan(&t, &shape, Moment::Start)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    return Err(SinkError::Refused(e));
                }
                Err(TableError::Catalog(e)) => return Err(catalog_error(&e)),
            }
        }
        Ok(notes)
    }

    /// Commits `files` (all put) into their tables. Returns the keys now in
    /// their tables (committed now or found there already) and, if some
    /// could not be committed, why.
    pub(super) async fn commit(
        &mut self,
        files: &[Staged],
        full_check: bool,
    ) -> (Vec<String>, Option<SinkError>) {
        let mut by_route: HashMap<&str, Vec<&Staged>> = HashMap::new();
        for f in files {
            by_route
                .entry(f.manifest.route.as_str())
                .or_default()
                .push(f);
        }
        let mut done = Vec::new();
        let mut failed = None;
        let catalog = match self.catalog().await {
            Ok(c) => c,
            Err(e) => {
                self.catalog = None;
                return (done, Some(e));
            }
        };
        for (route, group) in by_route {
            let Some(shape) = self.settings.shapes.get(route).cloned() else {
                failed = Some(SinkError::Rejected {
                    status: 0,
                    what: format!("route {route} has no table in this sink (the route changed since the file was made)"),
                });
                continue;
            };
            match self
                .commit_table(&catalog, &shape, &group, full_check)
                .await
            {
                Ok(()) => done.extend(group.iter().map(|f| f.key.clone())),
                Err(e) => {
                    if matches!(e, SinkError::Catalog(_)) {
                        // The catalog connection may be the trouble.
                        self.catalog = None;
                    }
                    self.tables.remove(&shape.table);
                    failed = Some(e);
                }
            }
        }
        (done, failed)
    }

    async fn commit_table(
        &mut self,
        catalog: &Arc<Counting>,
        shape: &Shape,
        files: &[&Staged],
        full_check: bool,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        let table = self.table(catalog, shape, Moment::Commit).await?;
        let locations: Vec<String> = files
            .iter()
            .map(|f| format!("{}{}", self.settings.files_base, f.key))
            .collect();
        let since = files
            .iter()
            .map(|f| f.manifest.finished_at_ms)
            .min()
            .unwrap_or(0)
            - SLACK_MS;
        let present = self
            .already_in(&table, &locations, since, full_check)
            .await
            .map_err(|e| catalog_error(&e))?;
        let schema = table.metadata().current_schema().clone();
        let spec_id = table.metadata().default_partition_spec_id();
        let mut add = Vec::new();
        let mut rows = 0u64;
        for (f, location) in files.iter().zip(&locations) {
            if present.contains(location) {
                continue;
            }
            let df = data_file::describe(
                &f.path,
                location,
                &f.manifest,
                &schema,
                shape.per_route,
                spec_id,
            )
            .map_err(|e| SinkError::Rejected {
                status: 0,
                what: e.to_string(),
            })?;
            rows += df.record_count();
            add.push(df);
        }
        if !present.is_empty() {
            tracing::info!(sink = self.settings.sink, table = %table.identifier(), files = present.len(),
                "files already in the table (an earlier commit landed); not added again");
        }
        if add.is_empty() {
            return Ok(());
        }
        let count = add.len();
        let props = HashMap::from([
            ("weir.node".to_string(), self.settings.node.clone()),
            ("weir.files".to_string(), count.to_string()),
            ("weir.rows".to_string(), rows.to_string()),
            (
                "weir.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]);
        let before: HashSet<String> = metadata_files(&table);
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(add)
            .set_snapshot_properties(props)
            .apply(tx)
            .map_err(|e| catalog_error(&e))?;
        crate::failpoint::hit("iceberg.before_commit");
        let committed = tx.commit(catalog.as_ref()).await;
        let conflicts = catalog.take_conflicts();
        let table = committed.map_err(|e| catalog_error(&e))?;
        crate::failpoint::hit("iceberg.after_commit");
        self.metrics.committed(
            &self.settings.sink,
            &shape.table,
            count as u64,
            rows,
            conflicts,
            started.elapsed(),
        );
        self.drop_old_metadata(&table, &before).await;
        self.tables.insert(shape.table.clone(), table.clone());
        self.expire(catalog, &table).await;
        Ok(())
    }

    /// Which of `locations` a commit of this node already added: read from
    /// the manifests this node's snapshots since `since_ms` wrote, each
    /// through that snapshot's own manifest list, so what another writer
    /// did since (a manifest merge or rewrite, compaction, a delete) cannot
    /// hide an earlier commit and bring its rows in twice. When `full`, or
    /// when snapshots of that span are gone (expired), every manifest of
    /// the current snapshot is read for the files alive in the table.
    async fn already_in(
        &self,
        table: &Table,
        locations: &[String],
        since_ms: i64,
        full: bool,
    ) -> iceberg::Result<HashSet<String>> {
        let meta = table.metadata();
        let Some(current) = meta.current_snapshot() else {
            return Ok(HashSet::new());
        };
        let oldest = meta
            .snapshots()
            .map(|s| s.timestamp_ms())
            .min()
            .unwrap_or(i64::MAX);
        let wanted: HashSet<&str> = locations.iter().map(String::as_str).collect();
        let mut found = HashSet::new();
        if full || oldest > since_ms {
            let list = table.manifest_list_reader(current).load().await?;
            for mf in list.entries() {
                if mf.content != ManifestContentType::Data {
                    continue;
                }
                let manifest = mf.load_manifest(table.file_io()).await?;
                for e in manifest.entries() {
                    if e.is_alive() && wanted.contains(e.file_path()) {
                        found.insert(e.file_path().to_string());
                    }
                }
            }
            return Ok(found);
        }
        let mine = meta
            .snapshots()
            .filter(|s| s.timestamp_ms() >= since_ms)
            .filter(|s| {
                s.summary().additional_properties.get("weir.node") == Some(&self.settings.node)
            });
        for snapshot in mine {
            let list = table.manifest_list_reader(snapshot).load().await?;
            for mf in list.entries() {
                if mf.content != ManifestContentType::Data
                    || mf.added_snapshot_id != snapshot.snapshot_id()
                {
                    continue;
                }
                let manifest = mf.load_manifest(table.file_io()).await?;
                for e in manifest.entries() {
                    if wanted.contains(e.file_path()) {
                        found.insert(e.file_path().to_string());
                    }
                }
            }
        }
        Ok(found)
    }

    /// Deletes the metadata files this commit dropped from the table's
    /// metadata log (`write.metadata.previous-versions-max`, 100): they are
    /// no longer part of any table state a reader can reach.
    async fn drop_old_metadata(&self, table: &Table, before: &HashSet<String>) {
        let now = metadata_files(table);
        for gone in before.difference(&now) {
            if let Err(e) = table.file_io().delete(gone).await {
                tracing::debug!(file = gone, error = %e, "cannot delete an old metadata file");
            }
        }
    }

    /// How often expiry runs: every ten minutes, or half the snapshot age
    /// when that is shorter.
    fn expire_every(&self) -> std::time::Duration {
        let half = (self.settings.snapshot_max_age_ms / 2).max(1000) as u64;
        EXPIRE_EVERY.min(std::time::Duration::from_millis(half))
    }

    /// Expires this node's snapshots older than `snapshot_max_age` (never the
    /// newest `snapshot_min_keep` of the table, nor another writer's), at
    /// most every ten minutes per table, and deletes their manifest lists.
    /// Data files and manifests stay: later snapshots still hold them.
    async fn expire(&mut self, catalog: &Arc<Counting>, table: &Table) {
        let name = table.identifier().name().to_string();
        if self
            .expired_at
            .get(&name)
            .is_some_and(|t| t.elapsed() < self.expire_every())
        {
            return;
        }
        self.expired_at.insert(name.clone(), Instant::now());
        let linger = self.expire_every();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.expired_lists)
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= linger);
        self.expired_lists = later;
        for (_, list) in due {
            if let Err(e) = table.file_io().delete(&list).await {
                tracing::debug!(file = list, error = %e, "cannot delete an expired manifest list");
            }
        }
        let meta = table.metadata();
        let cutoff = crate::wal::now_ms() - self.settings.snapshot_max_age_ms;
        let mut newest: Vec<(i64, i64)> = meta
            .snapshots()
            .map(|s| (s.timestamp_ms(), s.snapshot_id()))
            .collect();
        newest.sort_unstable_by(|a, b| b.cmp(a));
        let keep: HashSet<i64> = newest
            .iter()
            .take(self.settings.snapshot_min_keep)
            .map(|(_, id)| *id)
            .chain(meta.current_snapshot().map(|s| s.snapshot_id()))
            .chain(meta.snapshot_for_ref("main").map(|s| s.snapshot_id()))
            .collect();
        let old: Vec<(i64, String)> = meta
            .snapshots()
            .filter(|s| s.timestamp_ms() < cutoff && !keep.contains(&s.snapshot_id()))
            .filter(|s| {
                s.summary().additional_properties.get("weir.node") == Some(&self.settings.node)
            })
            .map(|s| (s.snapshot_id(), s.manifest_list().to_string()))
            .collect();
        if old.is_empty() {
            return;
        }
        let tx = Transaction::new(table);
        let expired = tx
            .expire_snapshots()
            .expire_snapshot_ids(old.iter().map(|(id, _)| *id))
            .expire_older_than_ms(i64::MIN)
            .apply(tx);
        let result = match expired {
            Ok(tx) => tx.commit(catalog.as_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(t) => {
                let now = Instant::now();
                self.expired_lists
                    .extend(old.iter().map(|(_, list)| (now, list.clone())));
                self.metrics
                    .expired(&self.settings.sink, &name, old.len() as u64);
                self.tables.insert(name, t);
            }
            Err(e) => self.metrics.expire_failed(&self.settings.sink, &name, &e),
        }
    }
}

/// Every metadata file a table state names: its own and its log's.
fn metadata_files(table: &Table) -> HashSet<String> {
    let mut files: HashSet<String> = table
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .collect();
    if let Some(l) = table.metadata_location() {
        files.insert(l.to_string());
    }
    files
}

/// A catalog or storage failure, retried: credentials refused are counted
/// as such, everything on one line.
pub(super) fn catalog_error(e: &iceberg::Error) -> SinkError {
    let text = e.to_string().replace(['\n', '\r'], " ");
    let lower = text.to_lowercase();
    let refused = [
        "password authentication failed",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "accessdenied",
        "403 forbidden",
        "401 unauthorized",
    ];
    if refused.iter().any(|r| lower.contains(r)) {
        return SinkError::CatalogCredentials(text);
    }
    SinkError::Catalog(text)
}
