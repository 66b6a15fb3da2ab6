#!/usr/bin/env bash
# Memory of the node proxy alone (issue 3: "RSS with 10k services x 5
# endpoints, target under 64 MB"): a `switchboard server` is filled by
# `switchboard-bench rss` with 10k Services and 50k Ready Pods (5 per
# Service, so the EndpointSlice controller writes 10k slices of 5
# endpoints), then `switchboard proxy --kubeconfig` runs against it, as
# kube-proxy runs against an apiserver. Once the proxy listens on every
# ClusterIP (its open sockets stop growing), its VmRSS is sampled from
# /proc. The proxy runs twice: with its metrics listener (the default) and
# with `--proxy-metrics-listen none`, to show what the per-endpoint series
# cost. Only 127.0.0.0/8 addresses: ClusterIPs in 127.130.0.0/16.
#
# Usage: bench/proxy-rss.sh [--no-build] [--services N] [--pods N]
# Environment: KEEP_DATA=1 keeps the work directory and logs; SB and BENCH
# override the binaries; PROXY_SB="a b ..." runs each of these binaries as
# the proxy in turn against the same filled server (an A/B without a
# second fill; default: $SB).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SB:-"$ROOT/target/release/switchboard"}
BENCH=${BENCH:-"$ROOT/target/release/switchboard-bench"}
TARGET_MB=64

build=1 services=10000 pods=50000
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --services) services=$2; shift ;;
    --pods) pods=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$build" = 1 ]; then
  echo "building the release binaries ..." >&2
  (cd "$ROOT" && cargo build --release -p switchboard-cli -p switchboard-bench) >&2
fi
# One listening socket per ClusterIP, plus the watch connections.
ulimit -n $((services + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/sb-proxy-rss.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_DATA:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

wait_line() { # file pattern seconds pid
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge "$deadline" ] || ! kill -0 "$4" 2>/dev/null; then return 1; fi
    sleep 0.2
  done
}

"$SB" server --data-dir "$WORK/server" --api-listen 127.0.0.1:0 \
  --service-cidr 127.130.0.0/16 --lb-ip-pool 127.2.130.0/24 \
  >"$WORK/server.out" 2>"$WORK/server.log" &
server=$!
pids+=($server)
wait_line "$WORK/server.out" 'switchboard is up' 60 $server || { echo "the server did not start" >&2; tail -5 "$WORK/server.log" >&2; exit 1; }
KC="$WORK/server/kubeconfig"

echo "filling the server: $services Services, $pods Pods ..." >&2
"$BENCH" --kubeconfig "$KC" rss --pid $server --services "$services" --pods "$pods" --samples 1 \
  >"$WORK/fill.out" 2>"$WORK/fill.log" || { echo "fill failed" >&2; tail -5 "$WORK/fill.log" >&2; exit 1; }
tail -1 "$WORK/fill.out" >&2

kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$2/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }

run_proxy() { # label metrics-listen binary
  local out="$WORK/proxy-$1.out" log="$WORK/proxy-$1.log"
  "$3" --kubeconfig "$KC" proxy --node-name bench-node --node-address 127.1.130.1 \
    --proxy-metrics-listen "$2" >"$out" 2>"$log" &
  local pid=$!
  pids+=($pid)
  wait_line "$out" 'switchboard proxy is up' 60 $pid || { echo "the proxy did not start" >&2; tail -5 "$log" >&2; return 1; }
  # Synced when the open sockets (a listener per ClusterIP) reach the
  # Service count and stop changing for 3 s.
  local started=$SECONDS n last=-1 still=0
  while :; do
    n=$(find "/proc/$pid/fd" -mindepth 1 2>/dev/null | wc -l)
    if [ "$n" -ge "$services" ] && [ "$n" = "$last" ]; then still=$((still + 1)); else still=0; fi
    [ $still -ge 6 ] && break
    [ $((SECONDS - started)) -gt 300 ] && { echo "  $1: only $n sockets after 300 s; sampling anyway" >&2; break; }
    last=$n
    sleep 0.5
  done
  local synced=$((SECONDS - started)) rss hwm anon
  sleep 2
  rss=$(kib VmRSS $pid) hwm=$(kib VmHWM $pid) anon=$(kib RssAnon $pid)
  printf '%-22s %8s %8s %8s %6s %8s\n' "$1" "$(mb "$rss")" "$(mb "$anon")" "$(mb "$hwm")" "$n" "${synced}s"
  echo "$rss" >"$WORK/rss-$1"
  kill $pid; wait $pid 2>/dev/null || true
}

echo
echo "proxy RSS, $(date -u +%Y-%m-%dT%H:%MZ), $services Services x $((pods / services)) endpoints, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %8s %8s %8s %6s %8s\n' run "VmRSS MB" "anon MB" "HWM MB" fds synced
proxies=${PROXY_SB:-$SB}
n=0
for bin in $proxies; do
  n=$((n + 1))
  [ "$bin" = "$SB" ] && [ -z "${PROXY_SB:-}" ] && tag="" || tag=" #$n"
  echo "proxy$tag: $bin" >&2
  run_proxy "metrics on$tag" 127.0.0.1:0 "$bin"
  run_proxy "metrics off$tag" none "$bin"
done
for f in "$WORK"/rss-metrics\ on*; do
  rss=$(cat "$f")
  awk -v r="$rss" -v t=$TARGET_MB -v l="${f##*/rss-}" 'BEGIN { m = r * 1024 / 1e6; printf "%s: target < %d MB (with metrics): %s (%.1f MB)\n", l, t, (m < t ? "met" : "NOT met"), m }'
done
