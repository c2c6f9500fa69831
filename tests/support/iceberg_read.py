"""Reads an Iceberg table weir wrote, with pyiceberg and DuckDB's iceberg
extension, and prints one JSON object describing it.

usage: python iceberg_read.py CATALOG_URI WAREHOUSE NAMESPACE.TABLE [--s3 ENDPOINT]
       [--snapshot ID] [--duckdb] [--rows]

CATALOG_URI is SQLAlchemy's (sqlite:////abs/catalog.db,
postgresql+psycopg2://user:pw@host:port/db). The output holds: the schema
(name, type, required, id), the partition spec, the properties, every
snapshot (id, parent, timestamp, summary), and for the current snapshot (or
--snapshot): rows, distinct ids (record's "id"), per-file (path, record
count, partition), and with --duckdb the same counts read by DuckDB's
iceberg extension; with --rows every row (time_us, tag, id, columns).
"""
import argparse
import glob
import json
import site
import sys

from pyiceberg.catalog.sql import SqlCatalog

p = argparse.ArgumentParser()
p.add_argument("uri")
p.add_argument("warehouse")
p.add_argument("table")
p.add_argument("--s3")
p.add_argument("--snapshot", type=int)
p.add_argument("--duckdb", action="store_true")
p.add_argument("--rows", action="store_true")
p.add_argument("--filter", help="a pyiceberg row filter; its row count is printed as filtered_rows")
a = p.parse_args()

props = {"uri": a.uri, "warehouse": a.warehouse}
if a.s3:
    props.update(
        {
            "s3.endpoint": a.s3,
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        }
    )
cat = SqlCatalog("weir", **props)
t = cat.load_table(a.table)
m = t.metadata
out = {
    "metadata_location": t.metadata_location,
    "location": t.location(),
    "schema": [
        {"name": f.name, "type": str(f.field_type), "required": f.required, "id": f.field_id}
        for f in t.schema().fields
    ],
    "spec": [{"name": f.name, "transform": str(f.transform)} for f in t.spec().fields],
    "properties": dict(m.properties),
    "snapshots": [
        {
            "id": s.snapshot_id,
            "parent": s.parent_snapshot_id,
            "timestamp_ms": s.timestamp_ms,
            "summary": {k: v for k, v in (s.summary.additional_properties or {}).items()},
            "operation": str(s.summary.operation),
        }
        for s in m.snapshots
    ],
    "current": m.current_snapshot_id,
}
scan = t.scan(snapshot_id=a.snapshot) if a.snapshot else t.scan()
arrow = scan.to_arrow()
ids = [json.loads(r).get("id") for r in arrow.column("record").to_pylist()]
out["rows"] = arrow.num_rows
out["distinct_ids"] = len(set(ids))
out["types"] = {f.name: str(f.type) for f in arrow.schema}
files = []
for task in scan.plan_files():
    df = task.file
    files.append(
        {
            "path": df.file_path,
            "records": df.record_count,
            "partition": [str(v) for v in df.partition],
            "lower_time": str(df.lower_bounds.get(1)) if df.lower_bounds else None,
        }
    )
out["files"] = sorted(files, key=lambda f: f["path"])
if a.rows:
    cols = [c for c in arrow.column_names if c not in ("time", "tag", "record", "period")]
    rows = []
    for r in arrow.to_pylist():
        d = {
            "time_us": int(r["time"].timestamp() * 1_000_000),
            "tag": r["tag"],
            "id": json.loads(r["record"]).get("id"),
            "period": str(r["period"]),
        }
        d.update({c: r[c] for c in cols})
        rows.append(d)
    out["row_list"] = rows
if a.filter:
    out["filtered_rows"] = t.scan(row_filter=a.filter).to_arrow().num_rows
    out["filtered_files"] = len(list(t.scan(row_filter=a.filter).plan_files()))
if a.duckdb:
    import duckdb

    sp = site.getsitepackages()[0]
    ice = glob.glob(sp + "/duckdb_extension_iceberg/extensions/*/iceberg.duckdb_extension")[0]
    avro = glob.glob(sp + "/duckdb_extension_avro/extensions/*/avro.duckdb_extension")[0]
    con = duckdb.connect()
    con.execute(f"LOAD '{avro}'")
    con.execute(f"LOAD '{ice}'")
    if a.s3:
        httpfs = glob.glob(sp + "/duckdb_extension_httpfs/extensions/*/httpfs.duckdb_extension")[0]
        con.execute(f"LOAD '{httpfs}'")
        host = a.s3.split("://", 1)[1]
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
            f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
        )
    version = f", snapshot_from_id => {a.snapshot}" if a.snapshot else ""
    q = f"SELECT count(*), count(DISTINCT json_extract_string(record, '$.id')) FROM iceberg_scan('{t.metadata_location}'{version})"
    n, d = con.execute(q).fetchone()
    out["duckdb_rows"] = n
    out["duckdb_distinct_ids"] = d
json.dump(out, sys.stdout, default=str)
