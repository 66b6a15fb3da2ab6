# Shared by bench/l4.sh and bench/l4-rounds.sh (sourced, not run): the
# tools they install, and how each exposes the nginx backend through a
# Switchboard Service and reads a process's CPU time.

# Installs what the L4 benchmarks need and is missing (root on Debian);
# extra package names in "$@" are installed too.
l4_install_missing() {
  local need=("$@")
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v taskset >/dev/null 2>&1 || need+=(util-linux)
  { command -v ss && command -v ip; } >/dev/null 2>&1 || need+=(iproute2)
  [ ${#need[@]} -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    echo "missing: ${need[*]} (install them, or run as root on Debian)" >&2
    return 1
  fi
}

# Waits until URL answers 200, at most SECONDS.
wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# CPU ticks (user + system, of the process and its children: nginx's
# worker) since the process started.
ticks() { # pid
  local total=0 p t
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    # Fields 14 and 15 of /proc/PID/stat; the name (field 2) may hold
    # spaces, so count from after its closing parenthesis.
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Makes the backend an endpoint of a Service `bench` of the cluster whose
# kubeconfig is KUBECONFIG: a Pod on NODE with podIP 127.0.0.1 and
# containerPort PORT, made Ready through pods/status (as the node agent
# would; no agent runs it). Waits until the ClusterIP answers and prints
# its URL. Refuses a ClusterIP off loopback (nothing else may be dialled).
l4_expose_backend() { # binary kubeconfig node port workdir
  local bin=$1 kc=$2 node=$3 port=$4 dir=$5 server token ip
  server=$(awk '/server:/ {print $2; exit}' "$kc")
  token=$(awk '/token:/ {print $2; exit}' "$kc")
  cat >"$dir/web.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: bench}
spec:
  selector: {app: bench}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: bench-1, labels: {app: bench}}
spec:
  nodeName: $node
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: $port}]}]
YAML
  "$bin" --kubeconfig "$kc" apply -f "$dir/web.yaml" >/dev/null || return 1
  curl -fsS -k -o /dev/null -X PATCH -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/merge-patch+json' \
    --data '{"status":{"podIP":"127.0.0.1","phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}' \
    "$server/api/v1/namespaces/default/pods/bench-1/status" || return 1
  ip=$("$bin" --kubeconfig "$kc" get svc bench -o 'jsonpath={.spec.clusterIP}') || return 1
  case "$ip" in 127.*) ;; *) echo "ClusterIP $ip is not on loopback; not dialing it" >&2; return 1 ;; esac
  wait_http "http://$ip/" 30 || { echo "no answer through the ClusterIP $ip" >&2; return 1; }
  echo "http://$ip/"
}
