#!/usr/bin/env bash
# Cluster DNS benchmark (issue 4): knot (1 UDP worker), bind9 (-n 1) and
# Switchboard's DNS (`switchboard dns --dns-threads 1`), side by side in one
# run, each serving the same N services; prints QPS, lost queries, latency,
# server CPU and the ratios to knot and bind9, then the DNS process's RSS
# and the Service-created -> answerable latency.
#
# knot and bind9 serve a static zone file with, per service, the records
# Switchboard derives from it (A, SRV for its named port). Switchboard's
# Services go through the API of a `switchboard server` (switchboard-bench
# creates), and `switchboard dns` serves them from its own discovery watch,
# as CoreDNS runs beside an apiserver: so its CPU and RSS are the DNS
# server's alone. Every server listens on 127.0.0.1.
#
# Two clients ask each server the same A queries (every service, shuffled)
# with 100 queries in flight, DURATION seconds each:
#   - dnsperf, 1 thread (the issue's tool);
#   - switchboard-bench dns-load, one thread batching its system calls
#     (sendmmsg/recvmmsg), because on 2 cores dnsperf saturates before the
#     servers do and its QPS then measures dnsperf.
# With 2 or more CPUs, every server is pinned to CPU 0 and the clients to
# CPU 1 (taskset), so each side has one core of its own.
#
# Usage: bench/dns.sh [--no-build] [--services N] [--duration S] [--latency-samples N]
# Environment: KEEP_DATA=1 keeps the work directory and server logs;
# SB_DNS_FLAGS adds flags to `switchboard dns` (e.g. "--dns-answer-cache-size 200000");
# SB and BENCH override the binaries (copies, so a build cannot replace them mid-run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SB:-"$ROOT/target/release/switchboard"}
BENCH=${BENCH:-"$ROOT/target/release/switchboard-bench"}
REF="$ROOT/../shared/reference"

build=1
services=1000
duration=15
samples=500
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --services) services=$2; shift ;;
    --duration) duration=$2; shift ;;
    --latency-samples) samples=$2; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

need=()
command -v knotd >/dev/null 2>&1 || need+=(knot)
command -v named >/dev/null 2>&1 || need+=(bind9)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
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
  # ClusterIPs as the allocator would hand them out of 127.96.0.0/12.
  awk -v n="$services" -v ns="$NS" 'BEGIN {
    for (i = 0; i < n; i++) {
      a = i + 2
      printf "svc-%d.%s.svc IN A 127.%d.%d.%d\n", i, ns, 96 + int(a / 65536), int(a / 256) % 256, a % 256
      printf "_http._tcp.svc-%d.%s.svc IN SRV 0 100 80 svc-%d.%s.svc.cluster.local.\n", i, ns, i, ns
    }
  }'
} >"$zone"
queries="$WORK/queries"
awk -v n="$services" -v ns="$NS" 'BEGIN { for (i = 0; i < n; i++) printf "svc-%d.%s.svc.cluster.local A\n", i, ns }' | shuf >"$queries"

# Servers on CPU 0, clients on CPU 1, when there are two.
server_cpu=() client_cpu=()
if [ "$(nproc)" -ge 2 ]; then server_cpu=(taskset -c 0) client_cpu=(taskset -c 1); fi

# knot, with the reference settings (1 UDP worker) on our work directory.
mkdir -p "$WORK/knot"
sed -e "s#/tmp/anchors/dns/cluster.local.zone#$zone#" -e "s#/tmp/anchors/dns#$WORK/knot#g" \
  -e "s#127.0.0.1@5301#127.0.0.1@$KNOT_PORT#" "$REF/knot.conf" >"$WORK/knot.conf"
"${server_cpu[@]}" knotd -c "$WORK/knot.conf" >"$WORK/knot.log" 2>&1 &
knot_pid=$!
pids+=($knot_pid)

# bind9, with the reference settings, one CPU (-n 1).
mkdir -p "$WORK/bind"
cp "$zone" "$WORK/bind/cluster.local.zone"
sed -e "s#/tmp/anchors/dns#$WORK/bind#g" -e "s#port 5302#port $BIND_PORT#" \
  "$REF/named.conf" >"$WORK/named.conf"
"${server_cpu[@]}" named -f -n 1 -u "$(id -un)" -c "$WORK/named.conf" >"$WORK/named.log" 2>&1 &
bind_pid=$!
pids+=($bind_pid)

# Switchboard: the control plane (apiserver, store, controllers), then its
# DNS as a process of its own on one thread. The service range holds 100k+.
"$SB" server --data-dir "$WORK/sb" --api-listen 127.0.0.1:0 \
  --service-cidr 127.96.0.0/12 >"$WORK/server.out" 2>"$WORK/server.log" &
server_pid=$!
pids+=($server_pid)
for _ in $(seq 1 600); do grep -q 'switchboard is up' "$WORK/server.out" && break; sleep 0.1; done
grep -q 'switchboard is up' "$WORK/server.out" || { echo "switchboard server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
read -ra extra_dns_flags <<<"${SB_DNS_FLAGS:-}"
"${server_cpu[@]}" "$SB" dns --kubeconfig "$WORK/sb/kubeconfig" \
  --dns-listen 127.0.0.1:$SB_PORT --dns-threads 1 --dns-upstream none \
  --dns-metrics-listen none "${extra_dns_flags[@]}" >"$WORK/dns.out" 2>"$WORK/dns.log" &
sb_pid=$!
pids+=($sb_pid)

wait_answer() { # port name: waits up to 120 s for an answer
  for _ in $(seq 1 1200); do
    if [ -n "$(dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "$2" A 2>/dev/null)" ]; then return 0; fi
    sleep 0.1
  done
  echo "no answer for $2 on port $1" >&2
  return 1
}
for _ in $(seq 1 600); do grep -q 'switchboard dns is up' "$WORK/dns.out" && break; sleep 0.1; done
grep -q 'switchboard dns is up' "$WORK/dns.out" || { echo "switchboard dns did not start:" >&2; cat "$WORK/dns.log" >&2; exit 1; }
echo "creating $services Services through the API ..." >&2
"$BENCH" --kubeconfig "$WORK/sb/kubeconfig" --namespace $NS --timeout-secs 1800 \
  creates --services "$services" --concurrency 32 >&2
last="svc-$((services - 1)).$NS.svc.cluster.local"
wait_answer $KNOT_PORT "$last"
wait_answer $BIND_PORT "$last"
wait_answer $SB_PORT "$last"

cpu_ticks() { # pid: user+system clock ticks of the whole process
  awk '{print $14 + $15}' "/proc/$1/stat"
}
wait_idle() { # pid: until the process used < 5% of a core for 2 s (at most 600 s)
  local before after
  for _ in $(seq 1 300); do
    before=$(cpu_ticks "$1"); sleep 2; after=$(cpu_ticks "$1")
    [ $(( (after - before) * 100 / $(getconf CLK_TCK) / 2 )) -lt 5 ] && return 0
  done
  echo "process $1 stayed busy" >&2
}
# The EndpointSlice controller makes a slice for every new Service, and DNS
# follows each: measure once both are done.
echo "waiting for the control plane and DNS to settle ..." >&2
wait_idle "$server_pid"
wait_idle "$sb_pid"
measure() { # client name port pid: one client's run against one server
  local out="$WORK/$1-$2.txt"
  local before after
  before=$(cpu_ticks "$4")
  if [ "$1" = dnsperf ]; then
    "${client_cpu[@]}" dnsperf -s 127.0.0.1 -p "$3" -d "$queries" -l "$duration" -c 1 -T 1 -q 100 -t 5 >"$out" 2>&1
  else
    "${client_cpu[@]}" "$BENCH" dns-load --server 127.0.0.1:"$3" --queries "$queries" \
      --duration "$duration" --in-flight 100 --timeout 2 >"$out" 2>&1
  fi
  after=$(cpu_ticks "$4")
  local qps lost avg cpu
  if [ "$1" = dnsperf ]; then
    qps=$(awk '/Queries per second/ {print $4}' "$out")
    lost=$(awk '/Queries lost/ {print $3}' "$out")
    avg=$(awk '/Average Latency/ {print $4 * 1000}' "$out")
  else
    read -r qps lost avg < <(head -1 "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["queries_per_second"], j["lost"], j["latency"]["mean_ms"])')
  fi
  # Server CPU use during the run, in % of one core.
  cpu=$(echo "($after - $before) * 100 / $(getconf CLK_TCK) / $duration" | bc -l)
  echo "$1 $2 $qps $lost $avg $cpu"
}
results=()
for client in dnsperf dns-load; do
  echo "$client, $duration s per server, 100 queries in flight ..." >&2
  for s in "knot $KNOT_PORT $knot_pid" "bind9 $BIND_PORT $bind_pid" "switchboard $SB_PORT $sb_pid"; do
    # shellcheck disable=SC2086
    results+=("$(measure $client $s)")
  done
done
sb_rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$sb_pid/status)
sb_hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$sb_pid/status)

echo "Service created -> answerable, $samples Services one by one ..." >&2
latency_line=$("$BENCH" --kubeconfig "$WORK/sb/kubeconfig" --namespace $NS dns-latency \
  --dns 127.0.0.1:$SB_PORT --services "$samples" | tail -1)

printf '\n%-9s %-12s %10s %6s %14s %11s %14s\n' client server QPS lost "avg latency" "server CPU" "queries/CPU-s"
for r in "${results[@]}"; do
  read -r client name qps lost avg cpu <<<"$r"
  printf '%-9s %-12s %10.0f %6s %11.3f ms %10.0f%% %14.0f\n' "$client" "$name" "$qps" "$lost" \
    "$avg" "$cpu" "$(echo "$qps * 100 / $cpu" | bc -l)"
done
echo
for client in dnsperf dns-load; do
  knot_qps= bind_qps= sb_qps=
  for r in "${results[@]}"; do
    read -r c name qps _ <<<"$r"
    [ "$c" = "$client" ] || continue
    case $name in knot) knot_qps=$qps ;; bind9) bind_qps=$qps ;; switchboard) sb_qps=$qps ;; esac
  done
  printf '%-9s switchboard / knot: %.2fx   switchboard / bind9: %.2fx\n' "$client" \
    "$(echo "$sb_qps / $knot_qps" | bc -l)" "$(echo "$sb_qps / $bind_qps" | bc -l)"
done
printf 'switchboard dns RSS with %d services: %.1f MB (peak %.1f MB)\n' "$services" \
  "$(echo "$sb_rss_kb * 1024 / 1000000" | bc -l)" "$(echo "$sb_hwm_kb * 1024 / 1000000" | bc -l)"
echo "$latency_line"
