"""Reads a sink's root as one table with Spark (pyspark, local[1]) and
prints what it saw as one JSON object: the schema, rows, distinct ids
(record's "id"), and rows per tag.

usage: python spark_read.py ROOT
"""
import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

root = sys.argv[1]
spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.driver.memory", "1g")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(root)
ids = df.select(F.get_json_object("record", "$.id").alias("id"))
per_tag = {r["tag"]: r["count"] for r in df.groupBy("tag").count().collect()}
print(
    json.dumps(
        {
            "schema": df.schema.simpleString(),
            "rows": df.count(),
            "distinct_ids": ids.distinct().count(),
            "per_tag": per_tag,
        }
    )
)
spark.stop()
