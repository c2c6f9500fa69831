"""Prints what readers see of one Parquet file's metadata, as JSON: each
column's Parquet logical type, whether pyarrow has min/max statistics for
it (per row group 0), and DuckDB's stats_min/stats_max.

usage: python parquet_meta.py FILE
"""
import json
import sys

import duckdb
import pyarrow.parquet as pq

f = sys.argv[1]
pf = pq.ParquetFile(f)
rg = pf.metadata.row_group(0)
out = {}
for i in range(pf.metadata.num_columns):
    col = pf.schema.column(i)
    stats = rg.column(i).statistics
    out[col.name] = {
        "logical": str(col.logical_type),
        "pyarrow_min_max": bool(stats is not None and stats.has_min_max),
    }
con = duckdb.connect()
for name, smin, smax in con.execute(
    "SELECT path_in_schema, stats_min, stats_max FROM parquet_metadata(?)", [f]
).fetchall():
    out.setdefault(name, {})["duckdb_min"] = smin
    out[name]["duckdb_max"] = smax
print(json.dumps(out, default=str))
