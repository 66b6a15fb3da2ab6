#!/usr/bin/env bash
# Node agent benchmarks (issue 5):
#   rollout3    apply of a 3-replica Deployment + Service -> all three pods
#               answering through the ClusterIP (`switchboard up`)
#   rollout100  apply of a 100-replica Deployment -> 100 ready endpoints
#               (`switchboard server` + `switchboard agent`)
#   rss         the agent process's RSS with those 100 pods running
#   probes      the agent's CPU over 30 s with 100 pods probed every second
#
# Everything listens on 127.0.0.1 and the pods on their own 127.244.x.y
# addresses; each phase has a time limit. Prints one line per figure.
#
# Usage: bench/agent.sh [--no-build]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB="$ROOT/target/release/switchboard"
build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$build" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p switchboard-cli) >&2
fi
[ -x "$SB" ] || { echo "missing $SB (build it, or drop --no-build)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# Starts "$@" with stdout to $1.log and waits for its ready line.
start() {
  local name=$1; shift
  "$SB" "$@" >"$WORK/$name.log" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 600); do
    grep -q " is up" "$WORK/$name.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

deployment() { # name replicas
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      containers:
        - name: app
          image: registry.k8s.io/e2e-test-images/agnhost:2.52
          args: ["serve-hostname", "--port=8080"]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: $1}
spec:
  selector: {app: $1}
  ports: [{port: 80, targetPort: http}]
EOF
}

ready_endpoints() { # service
  "$SB" --kubeconfig "$KC" get endpointslices -l "kubernetes.io/service-name=$1" -o json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for s in d.get("items",[]) for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")))'
}

# --- rollout3: the whole system -------------------------------------------
start up up --data-dir "$WORK/up" --api-listen 127.0.0.1:0 \
  --dns-listen 127.0.0.1:0 --dns-upstream none --dns-metrics-listen none \
  --proxy-metrics-listen none --agent-listen 127.0.0.1:0
KC="$WORK/up/kubeconfig"
t0=$(now_ms)
deployment hello 3 | "$SB" --kubeconfig "$KC" apply -f - >/dev/null
ip=""
names=""
deadline=$(( $(date +%s) + 120 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  [ -n "$ip" ] || ip=$("$SB" --kubeconfig "$KC" get svc hello -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  if [ -n "$ip" ]; then
    n=$(curl -s --max-time 1 "http://$ip/" || true)
    [ -n "$n" ] && case " $names " in *" $n "*) ;; *) names="$names $n" ;; esac
    [ "$(wc -w <<<"$names")" -ge 3 ] && break
  fi
done
t1=$(now_ms)
[ "$(wc -w <<<"$names")" -ge 3 ] || { echo "rollout3: not all pods answered:$names" >&2; exit 1; }
echo "rollout3: apply -> 3 pods serving through the ClusterIP: $((t1 - t0)) ms"
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

# --- rollout100, rss, probes: control plane + a separate agent ------------
start server server --data-dir "$WORK/srv" --api-listen 127.0.0.1:0
KC="$WORK/srv/kubeconfig"
# `--proxy-mode none`: the figures are the agent's own (`switchboard agent`
# also runs the node proxy by default; bench/proxy-rss.sh measures that).
start agent --kubeconfig "$KC" agent --node-name bench --data-dir "$WORK/agent" \
  --agent-listen 127.0.0.1:0 --pod-cidr 127.244.0.0/16 --proxy-mode none
AGENT=${PIDS[1]}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss=$(rss_kb "$AGENT")

t0=$(now_ms)
deployment many 100 | "$SB" --kubeconfig "$KC" apply -f - >/dev/null
deadline=$(( $(date +%s) + 600 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  [ "$(ready_endpoints many)" -ge 100 ] && break
  sleep 0.2
done
t1=$(now_ms)
[ "$(ready_endpoints many)" -ge 100 ] || { echo "rollout100: not all ready" >&2; exit 1; }
echo "rollout100: apply -> 100 ready endpoints: $((t1 - t0)) ms"
echo "rss: agent with 0 pods: $((idle_rss / 1024)) MiB, with 100 pods: $(( $(rss_kb "$AGENT") / 1024 )) MiB"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks "$AGENT"); s0=$(now_ms)
sleep 30
c1=$(ticks "$AGENT"); s1=$(now_ms)
cpu_ms=$(( (c1 - c0) * 1000 / hz ))
wall_ms=$(( s1 - s0 ))
echo "probes: agent CPU with 100 pods probed every 1 s: ${cpu_ms} ms per ${wall_ms} ms wall ($(( cpu_ms * 1000 / wall_ms / 10 )).$(( cpu_ms * 1000 / wall_ms % 10 ))% of one core; $(( cpu_ms * 1000 / (wall_ms / 1000) / 100 )) us per probe)"
