"""Prints every row of every Parquet file under ROOT as one JSON line.

usage: python read_parquet.py ROOT
Each line: {"file": path relative to ROOT, "time_us": int, "tag": str,
"record": str, ...declared columns}. Reads with DuckDB (hive partitions on)
and checks each file's schema with pyarrow.
"""
import glob
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq

root = sys.argv[1]
files = sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
for f in files:
    schema = pq.read_schema(f)
    names = schema.names
    assert names[0] == "time" and names[1] == "tag" and names[-1] == "record", names
    assert str(schema.field("time").type).startswith("timestamp["), schema
rel = lambda p: os.path.relpath(p, root)
if files:
    con = duckdb.connect()
    for f in files:
        rows = con.execute(
            "SELECT epoch_us(time) AS time_us, * EXCLUDE (time) FROM read_parquet(?)", [f]
        ).fetchall()
        cols = [d[0] for d in con.description]
        for r in rows:
            d = dict(zip(cols, r))
            d["file"] = rel(f)
            print(json.dumps(d, default=str))
