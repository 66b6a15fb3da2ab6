#!/usr/bin/env bash
# Control-plane benchmarks of `switchboard server` (issue 2): Service creates,
# list of many Services, watch fan-out, endpoint propagation, server RSS.
#
# Each scenario runs against a fresh server in its own temporary data
# directory on 127.0.0.1 (port chosen by the server), so none disturbs
# another. Prints a summary table and writes
# bench/results/control-plane-<date>.json.
#
# Usage: bench/control-plane.sh [--quick] [--no-build] [SCENARIO...]
#   SCENARIO: creates list watch-fanout propagation rss (default: all)
#   --quick     sizes / 10 (a few minutes in all), for trying the script
#   --no-build  use the binaries already in target/release
# Environment: KEEP_DATA=1 keeps the data directories and server logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER="$ROOT/target/release/switchboard"
BENCH="$ROOT/target/release/switchboard-bench"
RESULTS_DIR="$ROOT/bench/results"

quick=0
build=1
scenarios=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    creates|list|watch-fanout|propagation|rss) scenarios+=("$arg") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(creates list watch-fanout propagation rss)

# Sizes: the issue's (full) or a tenth of them (quick); each scenario has a
# time limit in seconds, after which it is killed and reported as failed.
if [ "$quick" = 1 ]; then
  mode=quick
  creates_args=(--services 500 --concurrency 32);             creates_limit=300
  list_args=(--services 1000 --lists 20);                     list_limit=300
  fanout_args=(--watchers 20 --events 1000);                  fanout_limit=300
  propagation_args=(--services 100);                          propagation_limit=300
  rss_args=(--services 1000 --pods 5000 --concurrency 128);   rss_limit=600
else
  mode=full
  creates_args=(--services 5000 --concurrency 32);            creates_limit=900
  list_args=(--services 10000 --lists 20);                    list_limit=1200
  fanout_args=(--watchers 100 --events 10000);                fanout_limit=1200
  propagation_args=(--services 1000);                         propagation_limit=1200
  rss_args=(--services 10000 --pods 50000 --concurrency 128); rss_limit=3000
fi
READY_LIMIT=60   # seconds for a server to print its ready line

if [ "$build" = 1 ]; then
  echo "building release binaries ..." >&2
  (cd "$ROOT" && cargo build --release -p switchboard-cli -p switchboard-bench) >&2
fi
for bin in "$SERVER" "$BENCH"; do
  [ -x "$bin" ] || { echo "missing $bin (build it, or drop --no-build)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench.XXXXXX")
server_pid=""

stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # Wait for it to exit (bounded), then insist.
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cleanup() {
  stop_server
  if [ "${KEEP_DATA:-0}" = 1 ]; then
    echo "data and logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME: a fresh server in $WORK/NAME; sets server_pid, kubeconfig.
start_server() {
  local dir="$WORK/$1"
  mkdir -p "$dir"
  "$SERVER" server --data-dir "$dir/data" --api-listen 127.0.0.1:0 \
    >"$dir/server.out" 2>"$dir/server.log" &
  server_pid=$!
  local deadline=$((SECONDS + READY_LIMIT))
  until grep -q '^switchboard is up: apiserver https://127\.0\.0\.1:' "$dir/server.out"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "server for $1 exited before it was ready; last log lines:" >&2
      tail -n 20 "$dir/server.log" >&2
      server_pid=""
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "server for $1 not ready within ${READY_LIMIT}s; last log lines:" >&2
      tail -n 20 "$dir/server.log" >&2
      stop_server
      return 1
    fi
    sleep 0.1
  done
  kubeconfig="$dir/data/kubeconfig"
  echo "  $(head -n 1 "$dir/server.out") (pid $server_pid)" >&2
}

# run_scenario NAME LIMIT ARGS...: fresh server, one bench run, server stopped.
results=()
failures=()
run_scenario() {
  local name=$1 limit=$2
  shift 2
  echo "== $name ($mode: $*)" >&2
  if ! start_server "$name"; then
    failures+=("$(jq -cn --arg s "$name" --arg e "server did not start" '{scenario:$s,error:$e}')")
    return 0
  fi
  local out="$WORK/$name/bench.out" rc=0
  local extra=()
  if [ "$name" = rss ]; then extra=(--pid "$server_pid"); fi
  timeout --kill-after=10 "$limit" "$BENCH" --kubeconfig "$kubeconfig" \
    --timeout-secs "$limit" "$name" "$@" "${extra[@]}" >"$out" || rc=$?
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "  the server died during $name; last log lines:" >&2
    tail -n 20 "$WORK/$name/server.log" >&2
  fi
  stop_server
  local json
  json=$(grep -m 1 '^{' "$out" || true)
  if [ "$rc" = 0 ] && [ -n "$json" ]; then
    grep -v '^{' "$out" >&2 || true
    results+=("$json")
  else
    local why="exit code $rc"
    [ "$rc" = 124 ] && why="time limit of ${limit}s"
    echo "  $name FAILED ($why)" >&2
    failures+=("$(jq -cn --arg s "$name" --arg e "$why" '{scenario:$s,error:$e}')")
  fi
}

command -v jq >/dev/null || { echo "jq is needed for the results file (apt-get install jq)" >&2; exit 1; }

for s in "${scenarios[@]}"; do
  case "$s" in
    creates)      run_scenario creates "$creates_limit" "${creates_args[@]}" ;;
    list)         run_scenario list "$list_limit" "${list_args[@]}" ;;
    watch-fanout) run_scenario watch-fanout "$fanout_limit" "${fanout_args[@]}" ;;
    propagation)  run_scenario propagation "$propagation_limit" "${propagation_args[@]}" ;;
    rss)          run_scenario rss "$rss_limit" "${rss_args[@]}" ;;
  esac
done

mkdir -p "$RESULTS_DIR"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
suffix=""
[ "$quick" = 1 ] && suffix="-quick"
file="$RESULTS_DIR/control-plane-$stamp$suffix.json"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
printf '%s\n' "${results[@]+"${results[@]}"}" | jq -s \
  --arg date "$stamp" --arg mode "$mode" --arg rev "$rev" \
  --arg host "$(uname -n)" --arg kernel "$(uname -r)" --argjson cpus "$(nproc)" \
  --arg cpu "$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
  --argjson failures "$(printf '%s\n' "${failures[@]+"${failures[@]}"}" | jq -s .)" \
  '{date:$date, mode:$mode, git_rev:$rev,
    machine:{host:$host, kernel:$kernel, cpus:$cpus, cpu:$cpu},
    command:"bench/control-plane.sh", results:., failures:$failures}' >"$file"

# Summary: one row per scenario with its headline figures and target.
echo
printf '%-13s %-62s %s\n' scenario figures "target / Kubernetes context"
printf '%-13s %-62s %s\n' -------- ------- ---------------------------
jq -r '.results[] |
  def f: if . == null then "n/a" else (. * 100 | round / 100 | tostring) end;
  if .scenario == "creates" then
    [.scenario, "\(.services) svc @\(.concurrency): \(.writes_per_s|f) writes/s, p50 \(.result.latency.p50_ms|f) ms, p99 \(.result.latency.p99_ms|f) ms, errors \(.result.errors)", "-"]
  elif .scenario == "list" then
    [.scenario, "\(.items_listed) svc x\(.lists): p50 \(.latency.p50_ms|f) ms, p99 \(.latency.p99_ms|f) ms, \(.bytes_per_list/1e6|f) MB/list", "-"]
  elif .scenario == "watch-fanout" then
    [.scenario, "\(.watchers) watchers x \(.events) events: all seen in \(.all_seen_s|f) s, \(.events_delivered_per_s|f) events/s", "-"]
  elif .scenario == "propagation" then
    [.scenario, "\(.pods) pods/\(.services) svc: p50 \(.latency_since_ack.p50_ms|f) ms, p99 \(.latency_since_ack.p99_ms|f) ms, missing \(.missing)", "p99 < 50 ms: \(if .meets_target then "met" else "NOT met" end); k8s batches at ~1 s"]
  elif .scenario == "rss" then
    [.scenario, "\(.services) svc + \(.pods) pods (\(.endpointslices) slices): VmRSS \(.vm_rss_mb|f) MB, peak \(.vm_hwm_mb|f) MB", "< 200 MB: \(if .meets_target then "met" else "NOT met" end)"]
  else [.scenario, "?", "-"] end | @tsv' "$file" |
  while IFS=$'\t' read -r a b c; do printf '%-13s %-62s %s\n' "$a" "$b" "$c"; done
jq -r '.failures[] | "FAILED: \(.scenario): \(.error)"' "$file"
echo
echo "results: $file"
[ "$(jq '.failures | length' "$file")" = 0 ]
