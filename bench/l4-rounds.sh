#!/usr/bin/env bash
# L4 proxy benchmark in interleaved rounds (issue 3), for figures that hold
# still on a noisy machine: the peers of `bench/l4.sh` (HAProxy `mode tcp`,
# nginx `stream`, one worker each, the same nginx backend) and one or more
# Switchboard variants, measured one after another, round after round, with
# medians per target at the end.
#
# Differences from l4.sh, each against a source of drift seen there:
# - everything runs inside a network namespace this script creates (only
#   `lo`, no route out) with ephemeral ports 1024-65000, so the TIME_WAIT
#   sockets of one connection-per-request run never slow the next;
# - during each run every other proxy is stopped (SIGSTOP), so an idle
#   process's timers or a busy-polling peer cannot take the proxies' core;
# - targets alternate within each round, so a slow minute hits all alike.
# Pinning as l4.sh: proxies on CPU 0, wrk and the backend on CPU 1.
#
# Usage: bench/l4-rounds.sh [--no-build] [--duration S] [--rounds N]
#          [--modes "keepalive close"] [--haproxy-busy] [--perf DIR]
#          [--body BYTES] [LABEL=BINARY[:FLAGS] ...]
# Each LABEL=BINARY[:FLAGS] is a Switchboard variant: `BINARY up` with the
# space-separated extra FLAGS (default: one variant, switchboard=the release
# binary). --haproxy-busy adds HAProxy with `busy-polling` as a peer
# (reported, not counted as "the better peer": the reference config has it
# off). --perf DIR records `perf record -e cpu-clock -g -C 0` of each run
# into DIR. --body BYTES: the backend answers a body of that size (default:
# the 10 bytes of l4.sh; up to 64 MiB) to measure bulk copies. Needs root
# (network namespace).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/l4-common.sh
. "$ROOT/bench/l4-common.sh"

build=1 duration=6 rounds=3 modes="keepalive close" habusy=0 perfdir="" body=10
variants=()
args=("$@")
value() { # flag value: the value, or a clear error when it is missing
  [ -n "${2:-}" ] || { echo "$1 needs a value (see --help)" >&2; exit 2; }
  printf '%s' "$2"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --duration) duration=$(value "$1" "${2:-}"); shift ;;
    --rounds) rounds=$(value "$1" "${2:-}"); shift ;;
    --modes) modes=$(value "$1" "${2:-}"); shift ;;
    --haproxy-busy) habusy=1 ;;
    --perf) perfdir=$(realpath -m "$(value "$1" "${2:-}")"); shift ;;
    --body) body=$(value "$1" "${2:-}"); shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *=*) variants+=("$1") ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#variants[@]} -gt 0 ] || variants=("switchboard=$ROOT/target/release/switchboard")
for m in $modes; do
  case "$m" in keepalive|close) ;; *) echo "unknown mode $m: keepalive or close" >&2; exit 2 ;; esac
done
case "$duration$rounds$body" in *[!0-9]*) echo "--duration, --rounds and --body take whole numbers" >&2; exit 2 ;; esac
[ "$body" -ge 1 ] && [ "$body" -le 67108864 ] || { echo "--body: 1 byte to 64 MiB" >&2; exit 2; }
[ "$duration" -ge 2 ] && [ "$duration" -le 120 ] || { echo "--duration: 2 to 120 s" >&2; exit 2; }
[ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] || { echo "--rounds: 1 to 20" >&2; exit 2; }

# Outside: install what is missing, build, make the namespace, run this
# script again inside it.
if [ -z "${SB_L4_ROUNDS_NETNS:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "needs root (it creates a network namespace)" >&2; exit 1; }
  extra=()
  [ -n "$perfdir" ] && ! command -v perf >/dev/null 2>&1 && extra+=(linux-perf)
  l4_install_missing "${extra[@]}" || exit 1
  if [ "$build" = 1 ]; then
    echo "building the release binary ..." >&2
    (cd "$ROOT" && cargo build --release -p switchboard-cli) >&2
  fi
  [ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (proxies on CPU 0, load on CPU 1)" >&2; exit 1; }
  ns="sb-l4-rounds-$$"
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65000"
  [ -n "$perfdir" ] && mkdir -p "$perfdir"
  SB_L4_ROUNDS_NETNS=$ns ip netns exec "$ns" "$0" "${args[@]}"
  exit $?
fi

# Inside the namespace from here on: every address below is its own.
WORK=$(mktemp -d /tmp/sb-l4-rounds.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The backend's answer: l4.sh's 10 bytes, or --body bytes from a file.
if [ "$body" = 10 ]; then
  answer='return 200 "backend-1\n";'
else
  mkdir -p "$WORK/www"
  head -c "$body" /dev/zero >"$WORK/www/body"
  # nginx's workers drop root (www-data): the file must be readable to them.
  chmod 755 "$WORK" "$WORK/www"
  chmod 644 "$WORK/www/body"
  answer="root $WORK/www; try_files /body =404;"
fi
cat >"$WORK/be.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/be.pid;
error_log $WORK/be.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:9101; location / { $answer } }
}
EOF
cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 8192; }
stream {
  upstream be { server 127.0.0.1:9101; }
  server { listen 127.0.0.1:9121; proxy_pass be; }
}
EOF
haproxy_cfg() { # port busy(0/1)
  cat <<EOF
global
  maxconn 8000
  nbthread 1
$([ "$2" = 1 ] && echo "  busy-polling")
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend l4
  mode tcp
  bind 127.0.0.1:$1
  default_backend be
backend be
  mode tcp
  server s1 127.0.0.1:9101
EOF
}
haproxy_cfg 9111 0 >"$WORK/haproxy.cfg"
haproxy_cfg 9112 1 >"$WORK/haproxy-busy.cfg"

declare -A pid url
targets=(nginx haproxy)
taskset -c 1 nginx -c "$WORK/be.conf" -p "$WORK" >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" >/dev/null 2>&1 &
pids+=($!) pid[nginx]=$! url[nginx]=http://127.0.0.1:9121/
taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >/dev/null 2>&1 &
pids+=($!) pid[haproxy]=$! url[haproxy]=http://127.0.0.1:9111/
if [ "$habusy" = 1 ]; then
  taskset -c 0 haproxy -db -f "$WORK/haproxy-busy.cfg" >/dev/null 2>&1 &
  pids+=($!) pid[haproxy-busy]=$! url[haproxy-busy]=http://127.0.0.1:9112/
  targets+=(haproxy-busy)
fi

for t in "${targets[@]}"; do
  wait_http "${url[$t]}" 10 || { echo "$t did not start" >&2; exit 1; }
done

# Each Switchboard variant: `up` with a Service whose one endpoint is the
# backend (a Pod made Ready through pods/status, as in l4.sh), each on its
# own service range.
i=0
sb_labels=()
for v in "${variants[@]}"; do
  label=${v%%=*} rest=${v#*=}
  bin=${rest%%:*} flags=""
  [ "$rest" != "$bin" ] && flags=${rest#*:}
  [ -x "$bin" ] || { echo "$label: no binary $bin" >&2; exit 1; }
  [ -z "${pid[$label]:-}" ] || { echo "label $label is taken" >&2; exit 2; }
  i=$((i + 1))
  d="$WORK/sb$i"
  mkdir -p "$d"
  # shellcheck disable=SC2086 # FLAGS are words on purpose
  taskset -c 0 "$bin" up $flags --data-dir "$d" --api-listen 127.0.0.1:0 \
    --service-cidr "127.15$i.0.0/16" --node-address "127.1.15$i.1" --lb-ip-pool "127.2.15$i.0/24" \
    --node-name "bench-$i" --proxy-mode userspace --proxy-threads 1 \
    --dns-listen none --dns-metrics-listen none --proxy-metrics-listen none --agent-mode none \
    >"$d/out" 2>"$d/log" &
  pids+=($!) pid[$label]=$!
  deadline=$((SECONDS + 60))
  until grep -q 'switchboard is up' "$d/out" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] && kill -0 "${pid[$label]}" 2>/dev/null || { echo "$label did not start" >&2; tail -5 "$d/log" >&2; exit 1; }
    sleep 0.1
  done
  url[$label]=$(l4_expose_backend "$bin" "$d/kubeconfig" "bench-$i" 9101 "$d") || { echo "$label: not serving" >&2; exit 1; }
  targets+=("$label") sb_labels+=("$label")
done

HZ=$(getconf CLK_TCK)
only() { # pid: every proxy stopped but this one
  local t
  for t in "${targets[@]}"; do
    [ "${pid[$t]}" = "$1" ] && continue
    kill -STOP "${pid[$t]}" $(pgrep -P "${pid[$t]}" 2>/dev/null || true) 2>/dev/null || true
  done
  kill -CONT "$1" $(pgrep -P "$1" 2>/dev/null || true) 2>/dev/null || true
  sleep 0.3
}

results="$WORK/results"
: >"$results"
echo "$(date -u +%Y-%m-%dT%H:%MZ): ${#targets[@]} targets, modes: $modes, $rounds round(s) of ${duration} s, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for mode in $modes; do
  for r in $(seq "$rounds"); do
    for t in "${targets[@]}"; do
      only "${pid[$t]}"
      hdr=()
      [ "$mode" = close ] && hdr=(-H 'Connection: close')
      perf_pid=""
      if [ -n "$perfdir" ]; then
        perf record -q -e cpu-clock -F 4999 -g -C 0 -o "$perfdir/$t-$mode-$r.data" -- sleep $((duration - 1)) >/dev/null 2>&1 &
        perf_pid=$!
      fi
      t0=$(ticks "${pid[$t]}")
      taskset -c 1 wrk -t1 -c64 -d"${duration}s" --latency "${hdr[@]}" "${url[$t]}" >"$WORK/wrk.txt" 2>&1 || true
      t1=$(ticks "${pid[$t]}")
      [ -n "$perf_pid" ] && wait "$perf_pid"
      awk -v t="$t" -v m="$mode" -v r="$r" -v dt=$((t1 - t0)) -v hz="$HZ" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" { p99 = $2 }
        END {
          # wrk prints 812.00us, 1.23ms or 2.01s: p99 in ms.
          v = p99
          if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
          else if (v ~ /ms$/) { sub(/ms$/, "", v); v = v + 0 }
          else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
          else v = -1
          printf "%s %s %s %.0f %.3f %.1f\n", m, t, r, rps, v, (n > 0 ? dt / hz * 1e6 / n : 0) }' \
        "$WORK/wrk.txt" | tee -a "$results" >&2
    done
  done
done

echo
echo "L4 proxy in rounds, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, own network namespace, proxies on CPU 0, wrk + backend on CPU 1, wrk -t1 -c64 -d${duration}s, $rounds round(s), body $body bytes"
echo "median over rounds:"
printf '%-10s %-16s %10s %10s %12s   %s\n' mode target "req/s" "p99 ms" "CPU us/req" "req/s of each round"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A med p99
for mode in $modes; do
  for t in "${targets[@]}"; do
    m=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { print $4 }' "$results" | median)
    c=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { print $6 }' "$results" | median)
    p=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { print $5 }' "$results" | median)
    all=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { printf "%s%s", s, $4; s = "/" }' "$results")
    med[$mode,$t]=$m p99[$mode,$t]=$p
    printf '%-10s %-16s %10.0f %10.2f %12.1f   %s\n' "$mode" "$t" "$m" "$p" "$c" "$all"
  done
done
echo
for mode in $modes; do
  best=haproxy
  awk -v a="${med[$mode,nginx]}" -v b="${med[$mode,haproxy]}" 'BEGIN { exit !(a > b) }' && best=nginx
  for s in "${sb_labels[@]}"; do
    awk -v s="${med[$mode,$s]}" -v b="${med[$mode,$best]}" -v sp="${p99[$mode,$s]}" -v bp="${p99[$mode,$best]}" \
      -v m="$mode" -v l="$s" -v n="$best" 'BEGIN {
      printf "%s: %s / %s (the better peer, medians) = %.2fx req/s (target 1.15x), p99 %.2f vs %.2f ms\n", m, l, n, s / b, sp, bp }'
  done
done
