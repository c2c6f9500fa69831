#!/usr/bin/env bash
# benches/forward_out.sh: forward output side by side with Fluent Bit's
# (in_forward → out_forward), one run, one machine: the same `weir loadgen`
# traffic into the relay, the same receiver (Fluent Bit in_forward →
# out_null, counting what arrives). Prints a markdown table: events/s from
# the first event sent to the last one received, ratio to Fluent Bit, and
# the relay's CPU (100 = one core).
#
# Usage: benches/forward_out.sh [--duration 15s] [--connections 4] [--tags 1] [--weir BIN]
#
# weir acks its clients once events are durable (WAL fsync), writes chunks
# durably to its outbox and releases them only once the receiver acked;
# Fluent Bit relays from memory (require_ack_response on, so both wait for
# the receiver's acks). Needs the peers (../shared/peers/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=15s CONNS=4 TAGS=1 WEIR=
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2;;
    --connections) CONNS=$2; shift 2;;
    --tags) TAGS=$2; shift 2;;
    --weir) WEIR=$2; shift 2;;
    -h|--help) sed -n '2,14p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
. "$ROOT/benches/lib.sh"
FB=$PEERS_HOME/bin/fluent-bit
[ -x "$FB" ] || { echo "Fluent Bit missing: run ../shared/peers/install.sh" >&2; exit 2; }

# The receiver: Fluent Bit in_forward → out_null; RPORT, RMPORT, RECEIVER.
start_receiver() {
  local dir=$WORK/recv-$1; mkdir -p "$dir"; RPORT=$(free_port) RMPORT=$(free_port)
  printf '[SERVICE]\n    flush 1\n    log_level warn\n    http_server on\n    http_listen 127.0.0.1\n    http_port %s\n[INPUT]\n    name forward\n    listen 127.0.0.1\n    port %s\n    buffer_max_size 16M\n[OUTPUT]\n    name null\n    match *\n' "$RMPORT" "$RPORT" > "$dir/fb.conf"
  "$FB" -c "$dir/fb.conf" > "$dir/fb.log" 2>&1 & RECEIVER=$!; PIDS+=("$RECEIVER")
  wait_port "$RPORT"; wait_port "$RMPORT"
}
received() {
  curl -s "http://127.0.0.1:$RMPORT/api/v1/metrics" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v.get("records",0) for v in d["input"].values()))'
}
# The relays; each sets PORT and RELAY.
start_weir() {
  local dir=$WORK/weir-$1; mkdir -p "$dir"; PORT=$(free_port); local mport; mport=$(free_port)
  printf 'node_id = "bench"\ndata_dir = "%s/data"\nunmatched = "drop"\n[forward]\nlisten = "127.0.0.1:%s"\n[metrics]\nlisten = "127.0.0.1:%s"\n[[route]]\nmatch = "**"\nsinks = ["out"]\n[sinks.out]\ntype = "forward"\nservers = [{ address = "127.0.0.1:%s" }]\ncompress = "%s"\n' \
    "$dir" "$PORT" "$mport" "$RPORT" "$2" > "$dir/weir.toml"
  "$WEIR" serve -c "$dir/weir.toml" 2> "$dir/weir.log" & RELAY=$!; PIDS+=("$RELAY")
  wait_port "$PORT"
}
start_fluent_bit() {
  local dir=$WORK/fb-$1; mkdir -p "$dir"; PORT=$(free_port)
  local compress=""; [ "$2" = gzip ] && compress="    compress gzip\n"
  printf "[SERVICE]\n    flush 1\n    log_level warn\n[INPUT]\n    name forward\n    listen 127.0.0.1\n    port %s\n    buffer_max_size 16M\n[OUTPUT]\n    name forward\n    match *\n    host 127.0.0.1\n    port %s\n    require_ack_response true\n    retry_limit no_limits\n$compress" \
    "$PORT" "$RPORT" > "$dir/fb.conf"
  "$FB" -c "$dir/fb.conf" > "$dir/fb.log" 2>&1 & RELAY=$!; PIDS+=("$RELAY")
  wait_port "$PORT"
}

# run LABEL KIND COMPRESS: one relay, fresh receiver, loadgen, wait for all.
run() {
  local label=$1 kind=$2 compress=$3 t0 t1 before after out acked got
  start_receiver "$label"
  "start_$kind" "$label" "$compress"
  before=$(cpu_ticks "$RELAY"); t0=$(date +%s.%N)
  out=$("$WEIR" loadgen --to "127.0.0.1:$PORT" --connections "$CONNS" --events-per-request 1000 \
    --tag-count "$TAGS" --duration "$DURATION" --json 2>/dev/null)
  acked=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_acked"])' "$out")
  for _ in $(seq 1200); do
    got=$(received || echo 0)
    [ "$got" -ge "$acked" ] && break
    sleep 0.25
  done
  t1=$(date +%s.%N); after=$(cpu_ticks "$RELAY")
  echo "$label $acked $got $t0 $t1 $before $after" >> "$WORK/results"
  kill -9 "$RELAY" "$RECEIVER" 2>/dev/null || true
  wait "$RELAY" "$RECEIVER" 2>/dev/null || true
}

run "weir" weir none
run "fluent-bit" fluent_bit none
run "weir-gzip" weir gzip
run "fluent-bit-gzip" fluent_bit gzip
python3 - "$WORK/results" "$HZ" <<'PY'
import sys
hz = int(sys.argv[2])
rows = {}
for line in open(sys.argv[1]):
    label, acked, got, t0, t1, before, after = line.split()
    secs = float(t1) - float(t0)
    rows[label] = (int(acked), int(got), int(got) / secs, (int(after) - int(before)) / hz / secs * 100)
print("| relay | events acked | received | events/s end to end | vs Fluent Bit | relay CPU % |")
print("|---|---|---|---|---|---|")
for label, (acked, got, eps, cpu) in rows.items():
    peer = rows.get("fluent-bit-gzip" if label.endswith("gzip") else "fluent-bit")
    ratio = f"{eps / peer[2]:.2f}x" if peer else "-"
    print(f"| {label} | {acked:,} | {got:,} | {eps:,.0f} | {ratio} | {cpu:.0f} |")
PY
