"""A local stand-in for Treasure Data's import API, as strict as TD.

usage: python td_mock.py PORT APIKEY
- PUT /v3/table/import_with_id/{db}/{table}/{unique_id}/msgpack.gz
  checks the method, the path (names [a-z0-9_]{3,256}, unique_id [0-9a-f]+),
  `Authorization: TD1 APIKEY`, a gzip body of msgpack maps each with an
  integer `time`. Answers TD's JSON. Remembers every unique_id, so duplicate
  uploads are visible; a repeated unique_id is answered 200 and not stored
  twice (TD's dedup).
- POST /v3/database/create/{db}, POST /v3/table/create/{db}/{table}/log.
- GET /v3/database/list (weir's probe of the API key), checking the key.
- Tables must exist before import (404 otherwise), except databases named in
  PRECREATED below.
- Faults on request: table `flaky` answers 429 then 500 before accepting;
  table `rotated` answers 401 then 403 (a key being rotated) before
  accepting; table `reject` always answers 400.
- GET /__state returns what was received, as JSON.
"""
import gzip
import hashlib
import io
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack

PORT, APIKEY = int(sys.argv[1]), sys.argv[2]
NAME = r"[a-z0-9_]{3,256}"
IMPORT = re.compile(rf"^/v3/table/import_with_id/({NAME})/({NAME})/([0-9a-f]+)/msgpack\.gz$")
CREATE_DB = re.compile(rf"^/v3/database/create/({NAME})$")
CREATE_TABLE = re.compile(rf"^/v3/table/create/({NAME})/({NAME})/log$")

lock = threading.RLock()
state = {"tables": [], "imports": [], "records": {}, "statuses": [], "bad_requests": []}
flaky_left = {"flaky": [429, 500], "rotated": [401, 403]}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        # Recorded before the client can see the answer, so the order of
        # `statuses` is the order the client saw them in.
        with lock:
            state["statuses"].append([self.command, self.path, status])
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        if self.headers.get("Authorization") != f"TD1 {APIKEY}":
            self.reply(401, {"error": "authentication failed"})
            return False
        return True

    def do_GET(self):
        if self.path == "/__state":
            with lock:
                self.reply(200, state)
        elif self.path == "/v3/database/list":
            if self.authorized():
                with lock:
                    dbs = sorted({t.split(".")[0] for t in state["tables"]})
                self.reply(200, {"databases": [{"name": d} for d in dbs]})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if not self.authorized():
            return
        if m := CREATE_DB.match(self.path):
            self.reply(200, {"database": m[1]})
        elif m := CREATE_TABLE.match(self.path):
            with lock:
                key = f"{m[1]}.{m[2]}"
                exists = key in state["tables"]
                if not exists:
                    state["tables"].append(key)
            self.reply(409 if exists else 200, {"database": m[1], "table": m[2], "type": "log"})
        else:
            self.reply(404, {"error": "not found"})

    def do_PUT(self):
        if not self.authorized():
            return
        m = IMPORT.match(self.path)
        if not m:
            self.reply(404, {"error": f"unknown path {self.path}"})
            return
        db, table, uid = m[1], m[2], m[3]
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if table == "reject":
            self.reply(400, {"error": "rejected by test"})
            return
        with lock:
            faults = flaky_left.get(table)
            fault = faults.pop(0) if faults else None
        if fault:
            self.reply(fault, {"error": "injected"})
            return
        with lock:
            known = f"{db}.{table}" in state["tables"]
        if not known:
            self.reply(404, {"error": f"table {db}.{table} does not exist"})
            return
        try:
            raw = gzip.decompress(body)
            records = list(msgpack.Unpacker(io.BytesIO(raw), raw=False))
            for r in records:
                assert isinstance(r, dict), f"not a map: {r!r}"
                assert isinstance(r.get("time"), int) and not isinstance(r.get("time"), bool), f"time: {r!r}"
        except Exception as e:  # noqa: BLE001 - any malformed body is a 400, as TD answers
            with lock:
                state["bad_requests"].append(str(e))
            self.reply(400, {"error": f"bad body: {e}"})
            return
        with lock:
            state["imports"].append({"db": db, "table": table, "unique_id": uid, "records": len(records),
                                     "md5": hashlib.md5(body).hexdigest()})
            if uid not in state["records"]:
                state["records"][uid] = {"db": db, "table": table, "rows": records}
        self.reply(200, {"elapsed_time": 0.01, "database": db, "table": table,
                         "md5_hex": hashlib.md5(body).hexdigest(), "unique_id": uid})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
