#!/usr/bin/env bash
# benches/inputs.sh: the HTTP input and JSON forward side by side with
# Fluent Bit's and Fluentd's in_http (and Fluentd's JSON in_forward), one
# run, one machine, one client (`weir loadgen`). Prints a markdown table:
# events/s, ratio to weir, CPU of the server (100 = one core) and the p99
# time to the answer (a 2xx, or the ack).
#
# Usage: benches/inputs.sh [--duration 15s] [--no-fluentd] [--weir BIN]
#
# weir answers only once events are durable (fsync per group) and writes
# Parquet behind; Fluent Bit and Fluentd run in_http → out_null (no
# durability, nothing written). Needs the peers (../shared/peers/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=15s FLUENTD=1 WEIR=
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2;;
    --no-fluentd) FLUENTD=0; shift;;
    --weir) WEIR=$2; shift 2;;
    -h|--help) sed -n '2,12p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$ROOT/benches/lib.sh"
FB=$PEERS_HOME/bin/fluent-bit FD=$PEERS_HOME/bin/fluentd
[ -x "$FB" ] || { echo "Fluent Bit missing: run ../shared/peers/install.sh" >&2; exit 2; }

start_weir() {
  local dir=$WORK/weir-$1; mkdir -p "$dir"
  FPORT=$(free_port) HPORT=$(free_port) MPORT=$(free_port)
  printf 'node_id = "bench"\ndata_dir = "%s/data"\n[forward]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n[metrics]\nlisten = "127.0.0.1:%s"\n' \
    "$dir" "$FPORT" "$HPORT" "$MPORT" > "$dir/weir.toml"
  "$WEIR" serve -c "$dir/weir.toml" 2> "$dir/weir.log" & SERVER=$!; PIDS+=("$SERVER")
  wait_port "$HPORT"
}
start_fluent_bit() {
  local dir=$WORK/fb-$1; mkdir -p "$dir"; HPORT=$(free_port)
  printf '[SERVICE]\n    flush 1\n    log_level warn\n[INPUT]\n    name http\n    listen 127.0.0.1\n    port %s\n[OUTPUT]\n    name null\n    match *\n' "$HPORT" > "$dir/fb.conf"
  "$FB" -c "$dir/fb.conf" > "$dir/fb.log" 2>&1 & SERVER=$!; PIDS+=("$SERVER")
  wait_port "$HPORT"
}
start_fluentd() {
  local dir=$WORK/fd-$1; mkdir -p "$dir"; HPORT=$(free_port); FPORT=$(free_port)
  # in_http through benches/fluentd-plugins/in_http_unshared.rb (see there).
  printf '<system>\n  log_level warn\n  workers 1\n</system>\n<label @FLUENT_LOG>\n  <match **>\n    @type null\n  </match>\n</label>\n<source>\n  @type http_unshared\n  bind 127.0.0.1\n  port %s\n</source>\n<source>\n  @type forward\n  bind 127.0.0.1\n  port %s\n</source>\n<match **>\n  @type null\n</match>\n' "$HPORT" "$FPORT" > "$dir/fd.conf"
  "$FD" -p "$ROOT/benches/fluentd-plugins" -c "$dir/fd.conf" > "$dir/fd.log" 2>&1 & SERVER=$!; PIDS+=("$SERVER")
  wait_port "$HPORT"; wait_port "$FPORT"
}
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }

# measure LABEL PORT MODE CONNS [CONTENT_TYPE]: one loadgen run against the running SERVER.
measure() {
  local label=$1 port=$2 mode=$3 conns=$4 ctype=${5:-application/x-ndjson} before after out
  before=$(tree_ticks "$SERVER")
  out=$("$WEIR" loadgen --to "127.0.0.1:$port" --mode "$mode" --connections "$conns" \
    --events-per-request 1000 --duration "$DURATION" --http-content-type "$ctype" --json 2>/dev/null || true)
  [ -n "$out" ] || { echo "loadgen against $label failed" >&2; return 0; }
  after=$(tree_ticks "$SERVER")
  python3 - "$label" "$mode" "$conns" "$before" "$after" "$HZ" "$out" <<'PY'
import json, sys
label, mode, conns, before, after, hz, out = sys.argv[1:]
r = json.loads(out)
secs = r["seconds"]
eps = r["events_acked"] / secs
cpu = (int(after) - int(before)) / int(hz) / secs * 100
p99 = f'{r["ack_latency_ms"]["p99"]:.1f}'
print(f"RESULT|{label}|{mode}|{conns}|{eps:.0f}|{cpu:.0f}|{p99}|{r.get('failed_requests', 0)}")
PY
}

RESULTS=$WORK/results
for mode in http http-gzip; do
  for conns in 1 4; do
    start_weir "$mode-$conns"; measure weir "$HPORT" "$mode" "$conns" >> "$RESULTS"; stop_server
    # Fluent Bit's in_http reads NDJSON as application/json (concatenated objects).
    start_fluent_bit "$mode-$conns"; measure fluent-bit "$HPORT" "$mode" "$conns" application/json >> "$RESULTS"; stop_server
    if [ "$FLUENTD" = 1 ] && [ -x "$FD" ]; then
      start_fluentd "$mode-$conns"; measure fluentd "$HPORT" "$mode" "$conns" >> "$RESULTS"; stop_server
    fi
  done
done
for mode in forward json; do
  for conns in 1 4; do
    start_weir "fwd-$mode-$conns"; measure weir "$FPORT" "$mode" "$conns" >> "$RESULTS"; stop_server
    if [ "$FLUENTD" = 1 ] && [ -x "$FD" ]; then
      start_fluentd "fwd-$mode-$conns"; measure fluentd "$FPORT" "$mode" "$conns" >> "$RESULTS"; stop_server
    fi
  done
done

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.strip().split("|")[1:] for l in open(sys.argv[1]) if l.startswith("RESULT|")]
weir = {(m, c): float(e) for (s, m, c, e, *_ ) in rows if s == "weir"}
print("| server | mode | conns | events/s | vs weir | CPU % | p99 ms | failed |")
print("|---|---|---|---|---|---|---|---|")
for s, m, c, e, cpu, p99, failed in rows:
    w = weir.get((m, c))
    ratio = f"{float(e) / w:.2f}" if w else "-"
    print(f"| {s} | {m} | {c} | {float(e):,.0f} | {ratio} | {cpu} | {p99} | {failed} |")
PY
