#!/usr/bin/env bash
# benches/iceberg.sh: what the Iceberg sink costs, side by side in one run.
#
#  1. End to end: loadgen (4 connections, 1000 x 200 B events per request,
#     acked) sends N events; then a drain finishes every file and hands it
#     to its sink: the local sink (files), or an Iceberg table (SQLite
#     catalog, local warehouse: upload + commit). Events/s from the first
#     request to the drain's exit, alternating local/iceberg twice.
#  2. Files committed per second: T tags make T small files, finished at
#     once by a drain and committed in batches of B, by one node (SQLite
#     catalog) and by three nodes at once sharing a PostgreSQL catalog and a
#     warehouse (their commits conflict and are retried). Commit latency
#     p50/p99 from the nodes' logs.
#
# Usage: benches/iceberg.sh [--events N] [--tags T] [--batch B] [--weir BIN]
# Needs Debian's postgresql (scripts/test installs it). Builds weir in release.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EVENTS=3000000 TAGS=2000 BATCH=100 WEIR=
while [ $# -gt 0 ]; do
  case $1 in
    --events) EVENTS=$2; shift 2;;
    --tags) TAGS=$2; shift 2;;
    --batch) BATCH=$2; shift 2;;
    --weir) WEIR=$2; shift 2;;
    -h|--help) sed -n '2,17p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
if [ -z "$WEIR" ]; then
  echo "building weir (release)..." >&2
  cargo build --release --quiet
  WEIR=$ROOT/target/release/weir
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL missing: apt-get install postgresql" >&2; exit 2; }
WORK=$(mktemp -d -t weir-iceberg.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -f "$WORK/pg/data/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME SINK_TOML [NODE]: weir with a 1h period and one route to `out`.
start() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  PORT=$(free_port) MPORT=$(free_port)
  cat > "$dir/weir.toml" <<EOF
node_id = "${3:-bench}"
data_dir = "$dir/data"
[forward]
listen = "127.0.0.1:$PORT"
[metrics]
listen = "127.0.0.1:$MPORT"
[[route]]
name = "bench"
match = "**"
sinks = ["out"]
$2
EOF
  "$WEIR" serve -c "$dir/weir.toml" 2> "$dir/weir.log" &
  PIDS+=($!)
  LAST_PID=$!
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$MPORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "weir did not start: $(cat "$dir/weir.log")" >&2
  exit 1
}

drain() { # drain NAME PID: drain and wait for the exit
  touch "$WORK/$1/data/drain-on-exit"
  kill -TERM "$2"
  while kill -0 "$2" 2>/dev/null; do sleep 0.05; done
}

now_ns() { date +%s%N; }
REQUESTS=$(( EVENTS / 1000 ))

e2e() { # e2e NAME SINK_TOML: events/s end to end
  start "$1" "$2"
  local t0; t0=$(now_ns)
  "$WEIR" loadgen --to "127.0.0.1:$PORT" --connections 4 --events-per-request 1000 \
    --record-bytes 200 --requests "$REQUESTS" --duration 600s --json > "$WORK/$1/loadgen.json"
  drain "$1" "$LAST_PID"
  local t1; t1=$(now_ns)
  awk -v n="$EVENTS" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

local_sink() { printf '[sinks.out]\ntype = "local"\npath = "%s"\n' "$WORK/$1-files"; }
ice_sink() { printf '[sinks.out]\ntype = "iceberg"\nwarehouse = "%s"\ncommit_max_files = %s\n' "$1" "$BATCH"; }

echo "end to end, $EVENTS events per run..." >&2
L1=$(e2e l1 "$(local_sink l1)"); I1=$(e2e i1 "$(ice_sink "$WORK/wh-i1")")
L2=$(e2e l2 "$(local_sink l2)"); I2=$(e2e i2 "$(ice_sink "$WORK/wh-i2")")
committed=$(grep -c 'committed files to the Iceberg table' "$WORK/i1/weir.log" || true)

# Commit latencies (ms) and files/s from the "committed" log lines of LOGS.
commit_stats() {
  python3 - "$@" <<'PY'
import re, sys, datetime
took, files, ends = [], 0, []
for path in sys.argv[1:]:
    for line in open(path):
        if "committed files to the Iceberg table" not in line:
            continue
        t = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        ms = int(re.search(r"took_ms=(\d+)", line).group(1))
        n = int(re.search(r"files=(\d+)", line).group(1))
        took.append(ms); files += n; ends.append((t - ms / 1000, t))
if not took:
    print("no commits"); sys.exit()
took.sort()
pct = lambda p: took[min(len(took) - 1, int(p * len(took)))]
span = max(e for _, e in ends) - min(s for s, _ in ends)
print(f"{files} files in {len(took)} commits over {span:.1f} s: {files / span:.0f} files/s; "
      f"latency p50 {pct(0.5)} ms, p99 {pct(0.99)} ms, max {took[-1]} ms")
PY
}

many_tags() { # many_tags NAME: T tags, one small file each, then a drain
  "$WEIR" loadgen --to "127.0.0.1:$2" --connections 1 --events-per-request 10 \
    --record-bytes 100 --tag-count "$TAGS" --requests "$TAGS" --duration 600s --json > "$WORK/$1/loadgen.json"
}

echo "files committed per second, one node ($TAGS files, batches of $BATCH)..." >&2
start one "$(ice_sink "$WORK/wh-one")"
many_tags one "$PORT"
drain one "$LAST_PID"
ONE=$(commit_stats "$WORK/one/weir.log")

echo "files committed per second, three nodes sharing PostgreSQL..." >&2
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
echo weir > "$WORK/pg/pw" && chown postgres "$WORK/pg/pw"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg/data" -U weir -A scram-sha-256 --pwfile "$WORK/pg/pw" --no-sync >/dev/null
PGPORT=$(free_port)
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/log" -w start >/dev/null
PGPASSWORD=weir "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U weir iceberg
tier_sink() {
  printf '[sinks.out]\ntype = "iceberg"\nwarehouse = "%s"\ncatalog_uri = "postgres://weir:weir@127.0.0.1:%s/iceberg"\ncommit_max_files = %s\n' \
    "$WORK/wh-tier" "$PGPORT" "$BATCH"
}
declare -A TIER_PID TIER_PORT
for n in 1 2 3; do
  start "t$n" "$(tier_sink)" "n$n"
  TIER_PID[$n]=$LAST_PID TIER_PORT[$n]=$PORT
done
LOADS=()
for n in 1 2 3; do many_tags "t$n" "${TIER_PORT[$n]}" & LOADS+=($!); done
for p in "${LOADS[@]}"; do wait "$p"; done
for n in 1 2 3; do touch "$WORK/t$n/data/drain-on-exit"; kill -TERM "${TIER_PID[$n]}"; done
for n in 1 2 3; do while kill -0 "${TIER_PID[$n]}" 2>/dev/null; do sleep 0.05; done; done
THREE=$(commit_stats "$WORK/t1/weir.log" "$WORK/t2/weir.log" "$WORK/t3/weir.log")
CONFLICTS=$(grep -ho 'conflicts=[0-9]*' "$WORK"/t*/weir.log | awk -F= '{ s += $2 } END { print s + 0 }')

echo
echo "weir at $(git -C "$ROOT" rev-parse --short HEAD), binary $WEIR, $(nproc) CPUs, $(date -u +%Y-%m-%d)"
echo
echo "| end to end ($EVENTS events, drain) | run 1 | run 2 |"
echo "|---|---|---|"
echo "| local sink (files) | $(awk -v v="$L1" 'BEGIN{printf "%.3f M/s", v/1e6}') | $(awk -v v="$L2" 'BEGIN{printf "%.3f M/s", v/1e6}') |"
echo "| Iceberg table ($committed commit(s)) | $(awk -v v="$I1" 'BEGIN{printf "%.3f M/s", v/1e6}') | $(awk -v v="$I2" 'BEGIN{printf "%.3f M/s", v/1e6}') |"
echo "| Iceberg / local | $(awk -v a="$I1" -v b="$L1" 'BEGIN{printf "%.3f", a/b}') | $(awk -v a="$I2" -v b="$L2" 'BEGIN{printf "%.3f", a/b}') |"
echo
echo "files committed, one node (SQLite): $ONE"
echo "files committed, three nodes at once (PostgreSQL, $CONFLICTS conflicts retried): $THREE"
