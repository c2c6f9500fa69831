"""Another writer merges a table's manifests, as Spark, Trino or Flink
appends do by default once a table has many: pyiceberg's merge append (with
commit.manifest-merge.* set so every manifest merges) commits a snapshot
whose single data manifest holds every file, added by that snapshot.

usage: python iceberg_merge.py CATALOG_URI WAREHOUSE NAMESPACE.TABLE
Prints {"manifests_before": N, "manifests_after": M}.
"""
import json
import sys

from pyiceberg.catalog.sql import SqlCatalog

uri, warehouse, name = sys.argv[1:4]
cat = SqlCatalog("weir", uri=uri, warehouse=warehouse)
t = cat.load_table(name)


def data_manifests(t):
    s = t.current_snapshot()
    return [m for m in s.manifests(t.io)] if s else []


before = len(data_manifests(t))
with t.transaction() as tx:
    tx.set_properties(
        {
            "commit.manifest-merge.enabled": "true",
            "commit.manifest.min-count-to-merge": "2",
            "commit.manifest.target-size-bytes": str(64 << 20),
        }
    )
t = cat.load_table(name)
with t.transaction() as tx:
    with tx.update_snapshot().merge_append() as append:
        pass
t = cat.load_table(name)
after = data_manifests(t)
print(json.dumps({"manifests_before": before, "manifests_after": len(after),
                  "added_by": sorted({m.added_snapshot_id for m in after})}))
