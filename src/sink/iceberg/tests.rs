//! The Iceberg sink against a real SQLite catalog in a temporary local
//! warehouse, without a weir process: a retried commit adds nothing twice,
//! and old snapshots expire with their manifest lists deleted one expiry
//! later (seconds here, where the config's minimum is a minute).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::types::Int32Type;
use arrow_array::{DictionaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use iceberg::{NamespaceIdent, TableIdent};

use super::config::{IcebergSinkConfig, Warehouse};
use super::IcebergSink;
use crate::config::units::HumanDuration;
use crate::config::Config;
use crate::outbox::{FileKind, Manifest, Slot};
use crate::sink::BuildContext as Context;
use crate::sink::{Sink, Staged};

struct Lake {
    _dir: tempfile::TempDir,
    files: PathBuf,
    config: Config,
    sink: IcebergSink,
}

/// A sink `lake` on a warehouse in a temporary folder, with the route
/// `app` (per tag) and the given snapshot expiry.
fn lake(max_age: Duration, min_keep: usize) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let text = format!(
        "node_id = \"n1\"\ndata_dir = \"{}\"\n[[route]]\nname = \"app\"\nmatch = \"**\"\nsinks = [\"lake\"]\n\
         [sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\n",
        dir.path().join("data").display(),
        wh.display()
    );
    let config = Config::from_str(&text, "test").unwrap();
    let mut c: IcebergSinkConfig = match &config.sinks["lake"] {
        crate::sink::config::SinkConfig::Iceberg(c) => c.clone(),
        _ => unreachable!(),
    };
    c.snapshot_max_age = HumanDuration(max_age);
    c.snapshot_min_keep = min_keep;
    assert!(matches!(c.warehouse, Warehouse::Local(_)));
    let ctx = Context {
        node_id: "n1",
        data_dir: &config.data_dir,
        routes: &config.routes,
        metrics: crate::metrics::Metrics::new(),
    };
    let sink = IcebergSink::build("lake", &c, &ctx).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    Lake {
        _dir: dir,
        files,
        config,
        sink,
    }
}

/// A finished file of route `app`, tag `tag`, as the roller writes it; and
/// its manifest and key.
fn file(l: &Lake, tag: &str, n: usize) -> Staged {
    let route = &l.config.routes[0];
    let schema = crate::roll::RouteSchema::new(route, &l.config.roll, true).unwrap();
    let period = 1_796_600_000 / 3600 * 3600;
    let path = l.files.join(format!("{tag}.parquet"));
    let time =
        TimestampMicrosecondArray::from(vec![period * 1_000_000 + 1; n]).with_timezone("UTC");
    let tags: DictionaryArray<Int32Type> = std::iter::repeat_n(Some(tag), n).collect();
    let p = TimestampMicrosecondArray::from(vec![period * 1_000_000; n]).with_timezone("UTC");
    let records =
        StringArray::from_iter_values((0..n).map(|i| format!("{{\"id\":\"{tag}-{i}\"}}")));
    let batch = RecordBatch::try_new(
        schema.schema.clone(),
        vec![
            Arc::new(time),
            Arc::new(tags),
            Arc::new(p),
            Arc::new(records),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new_with_options(
        std::fs::File::create(&path).unwrap(),
        schema.schema.clone(),
        schema.writer_options(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let parts = crate::sink::key::FileParts {
        group: tag.as_bytes(),
        period_start: period,
        period_secs: 3600,
        node: "n1",
        name: crate::sink::key::FileName::Main,
    };
    let key = l.config.sinks["lake"].file_key(route, &parts).unwrap();
    let manifest = Manifest {
        version: crate::outbox::VERSION,
        id: tag.to_string(),
        kind: FileKind::Parquet,
        route: "app".into(),
        group_hex: crate::outbox::hex(tag.as_bytes()),
        group: tag.into(),
        period_start: period,
        period_secs: 3600,
        slot: Slot::Main,
        late_seq: None,
        first_seq: 0,
        covered_through: 0,
        rows: n as u64,
        bytes: std::fs::metadata(&path).unwrap().len(),
        keys: BTreeMap::from([("lake".to_string(), key.clone())]),
        finished_at_ms: crate::wal::now_ms(),
        node: "n1".into(),
        preview_of: None,
        part_extension: None,
    };
    Staged {
        key,
        path,
        manifest: Arc::new(manifest),
    }
}

async fn put_and_commit(l: &Lake, f: &Staged) {
    l.sink.put(&f.key, &f.path).await.unwrap();
    let c = l.sink.commit(std::slice::from_ref(f), false).await;
    assert!(c.failed.is_none(), "{:?}", c.failed);
    assert_eq!(c.done, vec![f.key.clone()]);
}

/// The table as the catalog has it now.
async fn table(l: &Lake) -> iceberg::table::Table {
    let c = l.sink.committer.lock().await;
    let catalog = (c.connect)().await.unwrap();
    catalog
        .load_table(&TableIdent::new(
            NamespaceIdent::new("weir".into()),
            "app".into(),
        ))
        .await
        .unwrap()
}

async fn files_in(t: &iceberg::table::Table) -> usize {
    use futures_util::TryStreamExt;
    let tasks: Vec<_> = t
        .scan()
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    tasks.len()
}

fn exists(location: &str) -> bool {
    Path::new(location.trim_start_matches("file://")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_retried_after_it_landed_adds_nothing() {
    let l = lake(Duration::from_secs(7 * 86_400), 100);
    let f = file(&l, "app.web", 10);
    put_and_commit(&l, &f).await;
    // As after a crash between the commit and the outbox's mark: the same
    // file is put and committed again, alone and with a new one.
    put_and_commit(&l, &f).await;
    let g = file(&l, "app.api", 5);
    l.sink.put(&g.key, &g.path).await.unwrap();
    let c = l.sink.commit(&[f.clone(), g.clone()], false).await;
    assert!(c.failed.is_none());
    assert_eq!(c.done.len(), 2);
    let t = table(&l).await;
    assert_eq!(files_in(&t).await, 2, "each file once");
    assert_eq!(
        t.metadata().snapshots().count(),
        2,
        "no empty snapshot for a file already there"
    );
    // Redelivered files are looked for in every manifest.
    let c = l.sink.commit(&[f.clone(), g.clone()], true).await;
    assert!(c.failed.is_none() && c.done.len() == 2);
    assert_eq!(files_in(&table(&l).await).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_snapshots_expire_and_their_manifest_lists_go_one_expiry_later() {
    // Expiry runs at most every second here (half the age, at least 1 s).
    let l = lake(Duration::from_secs(2), 1);
    let first = file(&l, "a.one", 3);
    put_and_commit(&l, &first).await;
    let t = table(&l).await;
    let s1 = t.metadata().current_snapshot().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    put_and_commit(&l, &file(&l, "a.two", 3)).await;
    let t = table(&l).await;
    assert!(
        t.metadata().snapshot_by_id(s1.snapshot_id()).is_none(),
        "s1 not expired"
    );
    assert!(
        exists(s1.manifest_list()),
        "the list must outlive the expiry by one interval"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put_and_commit(&l, &file(&l, "a.three", 3)).await;
    assert!(
        !exists(s1.manifest_list()),
        "the expired snapshot's list was not deleted"
    );
    let t = table(&l).await;
    assert_eq!(files_in(&t).await, 3, "data stays");
    let rows: i64 = t
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties["total-records"]
        .parse()
        .unwrap();
    assert_eq!(rows, 9);
}

/// A dropped column keeps its name in the mapping (files written before the
/// drop still hold it, and pyiceberg refuses a file column the mapping does
/// not know); a column added back maps to its new id.
#[test]
fn the_name_mapping_keeps_dropped_columns_and_maps_readded_ones_to_their_new_id() {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    let field = |id, name: &str| {
        Arc::new(NestedField::optional(
            id,
            name,
            Type::Primitive(PrimitiveType::String),
        ))
    };
    let schema = |id, fields: Vec<Arc<NestedField>>| {
        Schema::builder()
            .with_schema_id(id)
            .with_fields(fields)
            .build()
            .unwrap()
    };
    let v0 = schema(0, vec![field(1, "time"), field(2, "path")]);
    let v1 = schema(1, vec![field(1, "time")]);
    let v2 = schema(2, vec![field(1, "time"), field(3, "path"), field(4, "ua")]);
    let names = |m: String| -> Vec<(i64, String)> {
        serde_json::from_str::<serde_json::Value>(&m)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field-id"].as_i64().unwrap(),
                    f["names"][0].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(super::table::name_mapping(&v1, [&v0, &v1])),
        vec![(1, "time".to_string()), (2, "path".to_string())]
    );
    assert_eq!(
        names(super::table::name_mapping(&v2, [&v0, &v1, &v2])),
        vec![
            (1, "time".to_string()),
            (3, "path".to_string()),
            (4, "ua".to_string())
        ]
    );
}
