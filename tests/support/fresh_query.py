"""Runs README.md's "everything so far" DuckDB query (the SQL block of its
Freshness section, read from the README itself so the documented query is
the tested one) over a local sink folder and prints the `id` of every row,
as one JSON list.

usage: python fresh_query.py ROOT
"""
import json
import pathlib
import re
import sys

import duckdb

root = sys.argv[1].rstrip("/")
readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
section = readme.split("### Freshness", 1)[1]
query = re.search(r"```sql\n(.*?)```", section, re.S)[1].strip().rstrip(";")
query = query.replace("ROOT", root)
# A query that outlives the previews' linger (a loaded machine) may find a
# listed preview removed; as the README says, a reader runs it again.
for attempt in range(3):
    try:
        rows = duckdb.sql(f"SELECT json_extract_string(record, '$.id') FROM ({query})").fetchall()
        break
    except duckdb.IOException as e:
        if "No files found" in str(e):
            rows = []
            break
        if "No such file" not in str(e) or attempt == 2:
            raise
        print(f"fresh_query: a listed file was removed meanwhile; again: {e}", file=sys.stderr)
print(json.dumps([r[0] for r in rows]))
