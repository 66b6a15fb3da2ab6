#!/usr/bin/env bash
# L4 proxy benchmark (issue 3): wrk through HAProxy (mode tcp), nginx
# (stream) and the Switchboard userspace proxy, side by side in one run,
# against the same nginx backend, plus a direct connection to the backend
# (the limit). Each proxy runs one worker thread: HAProxy `nbthread 1`,
# nginx `worker_processes 1`, Switchboard `--proxy-threads 1` (its data
# plane's own single-threaded runtime; the control plane is idle during the
# runs), or TOKIO_WORKER_THREADS=1 with a binary older than that flag.
#
# Two modes per target, DURATION seconds each, one wrk thread, 64
# connections: keep-alive, and connection per request (`Connection: close`,
# so every request is a new TCP connection through the proxy). Prints req/s,
# p50 and p99 (wrk --latency), each proxy's CPU time per request (user +
# system ticks of its processes over the run, from /proc), and the ratios.
# Only 127.0.0.1 traffic.
#
# Pinning (default on 2+ cores): every proxy runs on CPU 0, wrk and the
# backend on CPU 1 (taskset), the same for all peers, so a proxy never
# competes with the load generator for its core. Each connection-per-request
# run waits (at most 65 s) until the previous one's TIME_WAIT sockets are
# gone.
#
# Usage: bench/l4.sh [--no-build] [--duration S] [--no-pin]
# Environment: KEEP_DATA=1 keeps the work directory and logs; SB overrides
# the switchboard binary.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SB:-"$ROOT/target/release/switchboard"}
REF="$ROOT/../shared/reference"

build=1
duration=10
pin=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --duration) duration=$2; shift ;;
    --no-pin) pin=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=bench/l4-common.sh
. "$ROOT/bench/l4-common.sh"
l4_install_missing || exit 1
if [ "$build" = 1 ]; then
  echo "building the release binary ..." >&2
  (cd "$ROOT" && cargo build --release -p switchboard-cli) >&2
fi

# CPU sets: PROXY for the proxies, LOAD for wrk and the backend.
if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  on_proxy=(taskset -c 0) on_load=(taskset -c 1) pinning="proxies on CPU 0, wrk + backend on CPU 1"
else
  on_proxy=() on_load=() pinning="not pinned"
fi

WORK=$(mktemp -d /tmp/sb-l4-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_DATA:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

BACKEND_PORT=9101 HAPROXY_PORT=9111 NGINX_PORT=9121
# Switchboard's own ranges, away from the defaults and from the tests'.
SB_CIDR=127.150.0.0/16 SB_NODE=127.1.150.1 SB_POOL=127.2.150.0/24

# The backend: nginx answering a short body (the reference backend, one
# server, one worker).
cat >"$WORK/nginx-backend.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx-be.pid;
error_log $WORK/nginx-be.err;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "backend-1\n"; } }
}
EOF
"${on_load[@]}" nginx -c "$WORK/nginx-backend.conf" -p "$WORK" >"$WORK/nginx-be.log" 2>&1 &
pids+=($!)

# HAProxy, mode tcp, one thread (the reference frontend l4, one server).
cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn 8000
  nbthread 1
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend l4
  mode tcp
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be_tcp
backend be_tcp
  mode tcp
  balance roundrobin
  server s1 127.0.0.1:$BACKEND_PORT
EOF
"${on_proxy[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
pids+=($!)
declare -A proc=([haproxy]=$!)

# nginx stream, one worker (the reference stream block, one server).
cat >"$WORK/nginx-proxy.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx-px.pid;
error_log $WORK/nginx-px.err;
events { worker_connections 8192; }
stream {
  upstream be { server 127.0.0.1:$BACKEND_PORT; }
  server { listen 127.0.0.1:$NGINX_PORT; proxy_pass be; }
}
EOF
"${on_proxy[@]}" nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" >"$WORK/nginx-px.log" 2>&1 &
pids+=($!)
proc[nginx]=$!

wait_http "http://127.0.0.1:$BACKEND_PORT/" 10 || { echo "backend did not start" >&2; cat "$WORK"/nginx-be.* >&2; exit 1; }
wait_http "http://127.0.0.1:$HAPROXY_PORT/" 10 || { echo "haproxy did not start" >&2; cat "$WORK/haproxy.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$NGINX_PORT/" 10 || { echo "nginx stream did not start" >&2; cat "$WORK"/nginx-px.* >&2; exit 1; }

# Switchboard: `switchboard up` with a Service whose one endpoint is the
# backend (a Pod with podIP 127.0.0.1 and containerPort BACKEND_PORT, made
# Ready through pods/status, as the node agent will).
sb_url=""
start_switchboard() {
  [ -x "$SB" ] || { echo "no $SB" >&2; return 1; }
  local up_help flags=() env=()
  up_help=$("$SB" up --help 2>/dev/null) || return 1
  grep -q -- '--proxy-mode' <<<"$up_help" || return 1
  if grep -q -- '--proxy-threads' <<<"$up_help"; then
    flags+=(--proxy-threads 1)
  else
    env=(TOKIO_WORKER_THREADS=1)
  fi
  grep -q -- '--dns-listen' <<<"$up_help" && flags+=(--dns-listen none --dns-metrics-listen none)
  grep -q -- '--proxy-metrics-listen' <<<"$up_help" && flags+=(--proxy-metrics-listen none)
  # The bench's pod is a stand-in with a hand-set status: no agent may run it.
  grep -q -- '--agent-mode' <<<"$up_help" && flags+=(--agent-mode none)
  env "${env[@]}" "${on_proxy[@]}" "$SB" up --data-dir "$WORK/sb" --api-listen 127.0.0.1:0 \
    --service-cidr $SB_CIDR --node-address $SB_NODE --lb-ip-pool $SB_POOL \
    --node-name bench-node --proxy-mode userspace "${flags[@]}" \
    >"$WORK/sb.out" 2>"$WORK/sb.log" &
  sb_pid=$!
  pids+=($sb_pid)
  proc[switchboard]=$sb_pid
  local deadline=$((SECONDS + 60))
  until grep -q 'switchboard is up' "$WORK/sb.out" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] && kill -0 $sb_pid 2>/dev/null || { echo "switchboard did not start" >&2; tail -5 "$WORK/sb.log" >&2; return 1; }
    sleep 0.1
  done
  sb_url=$(l4_expose_backend "$SB" "$WORK/sb/kubeconfig" bench-node $BACKEND_PORT "$WORK") || return 1
}
if start_switchboard; then
  echo "switchboard: proxying $sb_url" >&2
else
  echo "switchboard: skipped (proxy not available)"
fi

HZ=$(getconf CLK_TCK)

# wrk: prints "req_per_s p50_ms p99_ms errors cpu_us_per_request".
to_ms() { # wrk latency like 812.00us, 1.23ms, 2.01s
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}
measure() { # name url mode
  local out="$WORK/wrk-$1-$3.txt" hdr=() pid=${proc[$1]:-} t0=0 t1=0
  [ "$3" = close ] && hdr=(-H 'Connection: close')
  [ -n "$pid" ] && t0=$(ticks "$pid")
  "${on_load[@]}" wrk -t1 -c64 -d"${duration}s" --latency "${hdr[@]}" "$2" >"$out" 2>&1 || true
  [ -n "$pid" ] && t1=$(ticks "$pid")
  local rps p50 p99 errs reqs cpu=-
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  reqs=$(awk '/requests in/ {print $1}' "$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  errs=$(awk '/Socket errors|Non-2xx/ {printf "%s_", $0}' "$out" | tr ' ' '_')
  if [ -n "$pid" ] && [ "${reqs:-0}" -gt 0 ]; then
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  fi
  echo "${rps:-0} $p50 $p99 $cpu ${errs:-none}"
}

targets=(direct haproxy nginx)
declare -A url=(
  [direct]="http://127.0.0.1:$BACKEND_PORT/"
  [haproxy]="http://127.0.0.1:$HAPROXY_PORT/"
  [nginx]="http://127.0.0.1:$NGINX_PORT/"
)
if [ -n "$sb_url" ]; then targets+=(switchboard); url[switchboard]=$sb_url; fi

declare -A rps p50 p99 cpu
echo "wrk -t1 -c64 -d${duration}s --latency, keep-alive then Connection: close ..." >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Sockets in TIME_WAIT (the previous connection-per-request run's, up to
# 60 s) slow the next run's connects when ports come round again, and the
# later targets would pay for the earlier ones: every close run starts from
# the same state.
drain_time_wait() {
  local deadline=$((SECONDS + 65))
  while [ "$(ss -tan state time-wait 2>/dev/null | wc -l)" -gt 1000 ] && [ $SECONDS -lt $deadline ]; do
    sleep 1
  done
}
for mode in keepalive close; do
  for t in "${targets[@]}"; do
    [ "$mode" = close ] && drain_time_wait
    read -r r a b c e <<<"$(measure "$t" "${url[$t]}" "$mode")"
    rps[$t,$mode]=$r p50[$t,$mode]=$a p99[$t,$mode]=$b cpu[$t,$mode]=$c
    echo "  $mode $t: $r req/s, p50 $a ms, p99 $b ms, CPU $c us/request, errors: $e" >&2
  done
done

echo
echo "L4 proxy, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $pinning, wrk -t1 -c64 -d${duration}s"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %-12s %12s %10s %10s %10s %12s\n' mode target "req/s" "p50 ms" "p99 ms" "vs direct" "CPU us/req"
for mode in keepalive close; do
  for t in "${targets[@]}"; do
    vs=$(awk -v a="${rps[$t,$mode]}" -v b="${rps[direct,$mode]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    printf '%-12s %-12s %12.0f %10s %10s %10s %12s\n' "$mode" "$t" "${rps[$t,$mode]}" "${p50[$t,$mode]}" "${p99[$t,$mode]}" "$vs" "${cpu[$t,$mode]}"
  done
done
echo
for mode in keepalive close; do
  best=haproxy
  awk -v a="${rps[nginx,$mode]}" -v b="${rps[haproxy,$mode]}" 'BEGIN { exit !(a > b) }' && best=nginx
  if [ -n "$sb_url" ]; then
    awk -v s="${rps[switchboard,$mode]}" -v b="${rps[$best,$mode]}" -v sp="${p99[switchboard,$mode]}" \
      -v bp="${p99[$best,$mode]}" -v m="$mode" -v n="$best" 'BEGIN {
        printf "%s: switchboard / %s (the better peer) = %.2fx req/s (target 1.15x), p99 %s vs %s ms", m, n, s / b, sp, bp }'
    awk -v s="${cpu[switchboard,$mode]}" -v b="${cpu[$best,$mode]}" 'BEGIN {
        if (s > 0 && b > 0) printf ", CPU/request %.2fx\n", s / b; else printf "\n" }'
    # A proxy cannot pass the direct connection: when both are close to it,
    # wrk and the backend (their CPU) are the limit, and the req/s ratio
    # says nothing about the proxies; their CPU per request still does.
    awk -v s="${rps[switchboard,$mode]}" -v b="${rps[$best,$mode]}" -v d="${rps[direct,$mode]}" -v m="$mode" 'BEGIN {
        if (d > 0 && s >= 0.9 * d && b >= 0.9 * d)
          printf "%s: both at >= 90%% of direct (%.0f req/s): bound by the load side, compare CPU/request\n", m, d }'
  else
    awk -v h="${rps[haproxy,$mode]}" -v n="${rps[nginx,$mode]}" -v m="$mode" 'BEGIN {
      printf "%s: nginx / haproxy = %.2fx; switchboard skipped\n", m, n / h }'
  fi
done
