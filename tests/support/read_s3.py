"""Reads every Parquet object under s3://BUCKET/ from an S3 endpoint with
pyarrow's S3 client and prints one JSON line per row, like read_parquet.py.

usage: python read_s3.py ENDPOINT_URL BUCKET
Also prints, first, one line {"objects": {key: size, ...}} listing the bucket.
"""
import json
import sys
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

endpoint, bucket = sys.argv[1], sys.argv[2]
u = urlparse(endpoint)
fs = pafs.S3FileSystem(endpoint_override=u.netloc, scheme=u.scheme, access_key="testing",
                       secret_key="testing", region="us-east-1")
infos = fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
objects = {i.path[len(bucket) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}
print(json.dumps({"objects": objects}))
for key in sorted(objects):
    if not key.endswith(".parquet"):
        continue
    t = pq.read_table(f"{bucket}/{key}", filesystem=fs)
    times = t.column("time").cast(pa.int64()).to_pylist()  # microseconds
    d = t.drop_columns(["time"]).to_pydict()
    for i in range(t.num_rows):
        row = {c: d[c][i] for c in d}
        row["time_us"] = times[i]
        row["file"] = key
        print(json.dumps(row, default=str))
