"""Lists (and optionally deletes) objects of a bucket on an S3 endpoint
with pyarrow's S3 client.

usage: python s3_objects.py ENDPOINT_URL BUCKET [--delete PREFIX ...]
Deletes every object whose key starts with one of the PREFIXes first, then
prints one JSON object {key: md5 hex of its bytes} for what is left.
"""
import hashlib
import json
import sys
from urllib.parse import urlparse

import pyarrow.fs as pafs

endpoint, bucket = sys.argv[1], sys.argv[2]
prefixes = sys.argv[4:] if len(sys.argv) > 3 and sys.argv[3] == "--delete" else []
u = urlparse(endpoint)
fs = pafs.S3FileSystem(endpoint_override=u.netloc, scheme=u.scheme, access_key="testing",
                       secret_key="testing", region="us-east-1")


def keys():
    infos = fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
    return sorted(i.path[len(bucket) + 1:] for i in infos if i.type == pafs.FileType.File)


deleted = 0
for key in keys():
    if any(key.startswith(p) for p in prefixes):
        fs.delete_file(f"{bucket}/{key}")
        deleted += 1
if prefixes and deleted == 0:
    sys.exit(f"nothing under {prefixes} to delete")
out = {}
for key in keys():
    with fs.open_input_stream(f"{bucket}/{key}") as f:
        out[key] = hashlib.md5(f.read()).hexdigest()
print(json.dumps(out))
