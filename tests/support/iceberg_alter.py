"""Another writer changes a table weir writes, with pyiceberg.

usage: python iceberg_alter.py CATALOG_URI WAREHOUSE NAMESPACE.TABLE OP [COLUMN]
  promote COLUMN   int → long (a promotion Iceberg allows)
  drop COLUMN      delete the column
  respec           partition `period_hour` by hour(`time`) instead of hour(`period`)
"""
import sys

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.transforms import HourTransform
from pyiceberg.types import LongType

uri, warehouse, name, op = sys.argv[1:5]
col = sys.argv[5] if len(sys.argv) > 5 else None
t = SqlCatalog("weir", uri=uri, warehouse=warehouse).load_table(name)
if op == "promote":
    with t.update_schema() as u:
        u.update_column(col, field_type=LongType())
elif op == "drop":
    with t.update_schema() as u:
        u.delete_column(col)
elif op == "respec":
    with t.update_spec() as u:
        u.remove_field("period_hour")
    t = SqlCatalog("weir", uri=uri, warehouse=warehouse).load_table(name)
    with t.update_spec() as u:
        u.add_field("time", HourTransform(), "period_hour")
else:
    sys.exit(f"unknown op {op}")
print("ok")
