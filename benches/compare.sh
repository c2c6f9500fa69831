#!/usr/bin/env bash
# benches/compare.sh: weir side by side with Fluent Bit (and Fluentd) on the
# same replayer, in one run, on this machine. Prints a markdown table with
# events/s, the weir/Fluent Bit ratio, CPU (100 = one core) and peak RSS.
#
# Usage: benches/compare.sh [--events N] [--quick] [--with-fluentd] [--weir BIN]
#   --events N       events per acked case (default 6000000; end to end uses N/2)
#   --quick          1,000,000 events per case (a smoke run)
#   --with-fluentd   also measure Fluentd (slow: about 50k events/s)
#   --weir BIN       measure this weir binary (e.g. an older build) instead of
#                    building this checkout
#
# Needs the peers: ../shared/peers/install.sh (Fluent Bit, Fluentd), and
# python3 with msgpack (scripts/test's venv has it). Builds weir in release.
# The replayer is ../shared/peers/fwd_replay.py: PackedForward, 1000 events
# of ~200 B per request, ack window 4. weir runs with its defaults (fsync on
# every ack), Fluent Bit with its (no durability).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
EVENTS=6000000 FLUENTD_TOO=0 WEIR=
while [ $# -gt 0 ]; do
  case $1 in
    --events) EVENTS=$2; shift 2;;
    --quick) EVENTS=1000000; shift;;
    --with-fluentd) FLUENTD_TOO=1; shift;;
    --weir) WEIR=$2; shift 2;;
    -h|--help) sed -n '2,17p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ -x "$PEERS/bench-sink.sh" ] || { echo "missing $PEERS/bench-sink.sh (the peers folder)" >&2; exit 2; }
export PEERS_HOME=${PEERS_HOME:-$HOME/peers}
[ -x "$PEERS_HOME/bin/fluent-bit" ] || { echo "Fluent Bit missing: run $PEERS/install.sh" >&2; exit 2; }
if [ -x "$ROOT/target/testinfra/venv/bin/python3" ]; then
  export PATH="$ROOT/target/testinfra/venv/bin:$PATH"
fi
python3 -c 'import msgpack' 2>/dev/null || { echo "python3 needs msgpack: pip install msgpack (or run scripts/test once)" >&2; exit 2; }

if [ -z "$WEIR" ]; then
  echo "building weir (release)..." >&2
  cargo build --release --quiet
  WEIR=$ROOT/target/release/weir
fi
WORK=$(mktemp -d -t weir-compare.XXXXXX)
WEIR_PID=''
cleanup() {
  if [ -n "$WEIR_PID" ]; then kill -9 "$WEIR_PID" 2>/dev/null; wait "$WEIR_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_weir NAME: a fresh weir with its defaults (1h period, fsync) in WORK/NAME.
start_weir() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  PORT=$(free_port) MPORT=$(free_port)
  cat > "$dir/weir.toml" <<EOF
node_id = "bench"
data_dir = "$dir/data"
[forward]
listen = "127.0.0.1:$PORT"
[metrics]
listen = "127.0.0.1:$MPORT"
EOF
  "$WEIR" serve -c "$dir/weir.toml" 2> "$dir/weir.log" &
  WEIR_PID=$!
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$MPORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "weir did not start: $(cat "$dir/weir.log")" >&2
  exit 1
}

peak_rss_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# result FIELD LINE: a key=value field of a bench-sink RESULT line.
field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# bench TARGET ARGS...: the RESULT line of one bench-sink run.
bench() { "$PEERS/bench-sink.sh" "$@" 2>>"$WORK/bench.log" | grep '^RESULT'; }

ROWS=()
# row LABEL WEIR_RESULT WEIR_RSS PEER_RESULT [PEER_LABEL] [FIELD]
row() {
  local label=$1 w=$2 rss=$3 p=$4 f=${5:-events_per_s}
  local we pe
  we=$(field "$f" "$w") pe=$(field "$f" "$p")
  local ratio
  ratio=$(awk -v a="$we" -v b="$pe" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  ROWS+=("| $label | $(awk -v v="$we" 'BEGIN{printf "%.2f M", v/1e6}') ($(field sink_cpu_pct "$w")% CPU, ${rss} MiB) | $(awk -v v="$pe" 'BEGIN{printf "%.2f M", v/1e6}') ($(field sink_cpu_pct "$p")% CPU) | $ratio |")
}

acked_case() {
  local label=$1; shift
  start_weir "$label"
  local w p
  w=$(bench "external:$PORT" --ack --pid "$WEIR_PID" --events "$EVENTS" --duration 60 "$@")
  local rss; rss=$(peak_rss_mib "$WEIR_PID")
  kill -9 "$WEIR_PID"; wait "$WEIR_PID" 2>/dev/null || true; WEIR_PID=''
  p=$(bench fluent-bit --ack --events "$EVENTS" --duration 60 "$@")
  row "$label" "$w" "$rss" "$p"
}

acked_case "acked, 1 connection"
acked_case "acked, 4 connections" --conns 4
acked_case "acked, gzip" --gzip

# End to end: every event in a finished, delivered Parquet file (weir:
# send acked, then drain: touch drain-on-exit and SIGTERM), against Fluent
# Bit in_forward -> out_file.
E2E_EVENTS=$(( EVENTS / 2 ))
start_weir e2e
t0=$(date +%s%N)
w=$(bench "external:$PORT" --ack --pid "$WEIR_PID" --events "$E2E_EVENTS" --duration 120)
touch "$WORK/e2e/data/drain-on-exit"
kill -TERM "$WEIR_PID"
while kill -0 "$WEIR_PID" 2>/dev/null; do rss=$(peak_rss_mib "$WEIR_PID"); sleep 0.1; done
wait "$WEIR_PID" 2>/dev/null || true
WEIR_PID=''
t1=$(date +%s%N)
acked=$(field events "$w")
e2e=$(awk -v n="$acked" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
files=$(find "$WORK/e2e/data/files" -name '*.parquet' | wc -l)
w="$w file_e2e_events_per_s=$e2e"
p=$(bench fluent-bit --out file --events "$E2E_EVENTS" --duration 120)
row "end to end to files ($files Parquet files; Fluent Bit out_file)" "$w" "${rss:-?}" "$p" file_e2e_events_per_s

if [ "$FLUENTD_TOO" = 1 ]; then
  p=$(bench fluentd --ack --events 300000 --duration 60)
  ROWS+=("| Fluentd 1.18 acked, 1 connection | | $(awk -v v="$(field events_per_s "$p")" 'BEGIN{printf "%.2f M", v/1e6}') ($(field sink_cpu_pct "$p")% CPU) | |")
fi

echo
echo "weir at $(git -C "$ROOT" rev-parse --short HEAD) checkout, binary $WEIR, vs $("$PEERS_HOME/bin/fluent-bit" --version | head -1), $(nproc) CPUs, $(date -u +%Y-%m-%d)"
echo "PackedForward 1000 x ~200 B events per request, ack window 4, $EVENTS events per acked case"
echo
echo "| case | weir (fsync) | Fluent Bit (no durability) | weir / Fluent Bit |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
