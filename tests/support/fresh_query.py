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
try:
    rows = duckdb.sql(f"SELECT json_extract_string(record, '$.id') FROM ({query})").fetchall()
except duckdb.IOException as e:
    if "No files found" in str(e):
        rows = []
    else:
        raise
print(json.dumps([r[0] for r in rows]))
