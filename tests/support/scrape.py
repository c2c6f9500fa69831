"""Fetches a Prometheus text exposition and prints its samples as JSON.

usage: python scrape.py URL
Output: [[name, {labels}, value], ...], parsed by prometheus_client's own
text-format parser, so a format mistake in weir's output fails here.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    text = r.read().decode("utf-8")
out = []
for family in text_string_to_metric_families(text):
    assert family.documentation, f"{family.name} has no help text"
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
