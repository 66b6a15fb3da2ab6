#!/usr/bin/env bash
# Cluster DNS benchmark (issue 4): dnsperf against knot (1 UDP worker),
# bind9 (-n 1) and Switchboard (--dns-threads 1), side by side in one run,
# each serving the same 1000 services; prints QPS, lost queries, average
# latency and the ratios to knot and bind9.
#
# knot and bind9 serve a static zone file with, per service, the records
# Switchboard derives from it (A, SRV for its named port, PTR).
# Switchboard gets its 1000 Services through the API (switchboard-bench
# creates) and serves them from the ServiceTable. Every server listens on
# 127.0.0.1; dnsperf asks each the same A queries (every service, shuffled)
# for DURATION seconds with 100 queries in flight.
#
# Usage: bench/dns.sh [--no-build] [--services N] [--duration S]
# Environment: KEEP_DATA=1 keeps the work directory and server logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB="$ROOT/target/release/switchboard"
BENCH="$ROOT/target/release/switchboard-bench"
REF="$ROOT/../shared/reference"

build=1
services=1000
duration=15
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --services) services=$2; shift ;;
    --duration) duration=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

need=()
command -v knotd >/dev/null 2>&1 || need+=(knot)
command -v named >/dev/null 2>&1 || need+=(bind9)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    echo "missing: ${need[*]} (install them, or run as root on Debian)" >&2
    exit 1
  fi
fi
if [ "$build" = 1 ]; then
  echo "building release binaries ..." >&2
  (cd "$ROOT" && cargo build --release -p switchboard-cli -p switchboard-bench) >&2
fi

WORK=$(mktemp -d /tmp/sb-dns-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_DATA:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

KNOT_PORT=5301 BIND_PORT=5302 SB_PORT=5303
NS=bench

# The zone: what Switchboard serves for N ClusterIP services with a named
# port (A, SRV, PTR), plus apex SOA/NS and the schema TXT.
zone="$WORK/cluster.local.zone"
{
  echo '$ORIGIN cluster.local.'
  echo '$TTL 5'
  echo '@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5'
  echo '@ IN NS ns.dns.cluster.local.'
  echo 'ns.dns IN A 127.0.0.1'
  echo 'dns-version IN TXT "1.1.0"'
  for i in $(seq 0 $((services - 1))); do
    a=$(( (i + 2) / 256 )) b=$(( (i + 2) % 256 ))
    echo "svc-$i.$NS.svc IN A 127.96.$a.$b"
    echo "_http._tcp.svc-$i.$NS.svc IN SRV 0 100 80 svc-$i.$NS.svc.cluster.local."
  done
} >"$zone"
queries="$WORK/queries"
for i in $(seq 0 $((services - 1))); do echo "svc-$i.$NS.svc.cluster.local A"; done | shuf >"$queries"

# knot, with the reference settings (1 UDP worker) on our work directory.
mkdir -p "$WORK/knot"
sed -e "s#/tmp/anchors/dns/cluster.local.zone#$zone#" -e "s#/tmp/anchors/dns#$WORK/knot#g" \
  -e "s#127.0.0.1@5301#127.0.0.1@$KNOT_PORT#" "$REF/knot.conf" >"$WORK/knot.conf"
knotd -c "$WORK/knot.conf" >"$WORK/knot.log" 2>&1 &
knot_pid=$!
pids+=($knot_pid)

# bind9, with the reference settings, one CPU (-n 1).
mkdir -p "$WORK/bind"
cp "$zone" "$WORK/bind/cluster.local.zone"
sed -e "s#/tmp/anchors/dns#$WORK/bind#g" -e "s#port 5302#port $BIND_PORT#" \
  "$REF/named.conf" >"$WORK/named.conf"
named -f -n 1 -u "$(id -un)" -c "$WORK/named.conf" >"$WORK/named.log" 2>&1 &
bind_pid=$!
pids+=($bind_pid)

# Switchboard: the whole system (apiserver, controllers, DNS), DNS on one
# thread; no proxy, so its listeners for 1000 ClusterIPs do not compete.
proxy_flags=()
if "$SB" up --help 2>/dev/null | grep -q -- '--proxy-mode'; then proxy_flags=(--proxy-mode none); fi
"$SB" up --data-dir "$WORK/sb" --api-listen 127.0.0.1:0 \
  --dns-listen 127.0.0.1:$SB_PORT --dns-threads 1 --dns-upstream none \
  --dns-metrics-listen none "${proxy_flags[@]}" >"$WORK/sb.out" 2>"$WORK/sb.log" &
sb_pid=$!
pids+=($sb_pid)

wait_answer() { # port name: waits up to 60 s for an answer
  for _ in $(seq 1 600); do
    if [ -n "$(dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "$2" A 2>/dev/null)" ]; then return 0; fi
    sleep 0.1
  done
  echo "no answer for $2 on port $1" >&2
  return 1
}
for _ in $(seq 1 600); do grep -q 'switchboard is up' "$WORK/sb.out" && break; sleep 0.1; done
grep -q 'switchboard is up' "$WORK/sb.out" || { echo "switchboard did not start:" >&2; cat "$WORK/sb.log" >&2; exit 1; }
echo "creating $services Services through the API ..." >&2
"$BENCH" --kubeconfig "$WORK/sb/kubeconfig" --namespace $NS creates --services "$services" --concurrency 32 >&2
last="svc-$((services - 1)).$NS.svc.cluster.local"
wait_answer $KNOT_PORT "$last"
wait_answer $BIND_PORT "$last"
wait_answer $SB_PORT "$last"
sb_rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$sb_pid/status)

cpu_ticks() { # pid: user+system clock ticks of the whole process
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run() { # name port pid
  local out="$WORK/dnsperf-$1.txt"
  local before after
  before=$(cpu_ticks "$3")
  dnsperf -s 127.0.0.1 -p "$2" -d "$queries" -l "$duration" -c 1 -T 1 -q 100 -t 5 >"$out" 2>&1
  after=$(cpu_ticks "$3")
  local qps lost avg cpu
  qps=$(awk '/Queries per second/ {print $4}' "$out")
  lost=$(awk '/Queries lost/ {print $3}' "$out")
  avg=$(awk '/Average Latency/ {print $4}' "$out")
  # Server CPU use during the run, in % of one core.
  cpu=$(echo "($after - $before) * 100 / $(getconf CLK_TCK) / $duration" | bc -l)
  echo "$1 $qps $lost $avg $cpu"
}
echo "dnsperf, $duration s per server, 100 queries in flight ..." >&2
results=()
for s in "knot $KNOT_PORT $knot_pid" "bind9 $BIND_PORT $bind_pid" "switchboard $SB_PORT $sb_pid"; do
  # shellcheck disable=SC2086
  results+=("$(run $s)")
done

printf '\n%-12s %10s %6s %14s %11s %14s\n' server QPS lost "avg latency" "server CPU" "queries/CPU-s"
for r in "${results[@]}"; do
  read -r name qps lost avg cpu <<<"$r"
  printf '%-12s %10.0f %6s %11.3f ms %10.0f%% %14.0f\n' "$name" "$qps" "$lost" \
    "$(echo "$avg * 1000" | bc -l)" "$cpu" "$(echo "$qps * 100 / $cpu" | bc -l)"
done
knot_qps=$(echo "${results[0]}" | awk '{print $2}')
bind_qps=$(echo "${results[1]}" | awk '{print $2}')
sb_qps=$(echo "${results[2]}" | awk '{print $2}')
printf '\nswitchboard / knot:  %.2fx\nswitchboard / bind9: %.2fx\n' \
  "$(echo "$sb_qps / $knot_qps" | bc -l)" "$(echo "$sb_qps / $bind_qps" | bc -l)"
printf 'switchboard RSS with %d services: %d MB (whole process: apiserver, store, controllers, DNS)\n' \
  "$services" $((sb_rss_kb / 1024))
