"""Sends COUNT events with the Python fluent-logger (Message mode, EventTime).

usage: python python_client.py PORT TAG_PREFIX LABEL COUNT START_SEC
Exits non-zero if any emit failed.
"""
import sys

from fluent import sender

port, prefix, label, count, start = sys.argv[1:6]
s = sender.FluentSender(prefix, host="127.0.0.1", port=int(port),
                        nanosecond_precision=True, timeout=10)
ok = True
for i in range(int(count)):
    # Quarter seconds are exact in a float, so the expected time is exact.
    t = float(start) + (i % 4) * 0.25
    if not s.emit_with_time(label, t, {"i": i, "msg": f"m-{i}", "client": "python"}):
        print("emit failed:", s.last_error, file=sys.stderr)
        ok = False
s.close()
sys.exit(0 if ok else 1)
