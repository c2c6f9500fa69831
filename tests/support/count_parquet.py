"""Counts rows and distinct record ids in every Parquet file under ROOT,
without printing the rows (for tests that store gigabytes).

usage: python count_parquet.py ROOT
Prints {"files": F, "rows": N, "distinct_ids": M, "bytes": B} where B is
the total length of the record column.
"""
import glob
import json
import os
import sys

import duckdb

root = sys.argv[1]
files = sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
out = {"files": len(files), "rows": 0, "distinct_ids": 0, "bytes": 0}
if files:
    rows, ids, size = duckdb.connect().execute(
        "SELECT count(*), count(DISTINCT json_extract_string(record, '$.id')), "
        "coalesce(sum(length(record)), 0) FROM read_parquet(?)",
        [files],
    ).fetchone()
    out.update(rows=rows, distinct_ids=ids, bytes=int(size))
print(json.dumps(out))
