# benches/lib.sh: what the side-by-side bench scripts share. Source it after
# parsing options, with ROOT set to the repository and WEIR to a binary or
# empty (then weir is built in release). Sets WORK (a temporary folder) and
# PIDS (processes killed, and WORK removed, on exit: add to them).
export PEERS_HOME=${PEERS_HOME:-$HOME/peers}
if [ -z "${WEIR:-}" ]; then
  echo "building weir (release)..." >&2
  cargo build --release --quiet
  WEIR=$ROOT/target/release/weir
fi
WORK=$(mktemp -d -t "weir-$(basename "$0" .sh).XXXXXX")
PIDS=()
bench_cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap bench_cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 900); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The CPU of a process and its children (Fluentd's supervisor has a worker).
tree_ticks() { local t=0 p; for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done; echo $t; }
HZ=$(getconf CLK_TCK)
