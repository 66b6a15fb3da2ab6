#!/usr/bin/env bash
# The project's test command (README, CI): installs what the tests need and is
# missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
# The node agent's tests run pods whose command is `python3 -m http.server`.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "missing tools: ${missing[*]} (install them, or run as root on Debian)" >&2
        exit 1
    fi
fi
command -v kubectl >/dev/null 2>&1 || echo "note: kubectl not found; the kubectl end-to-end check is skipped" >&2

# The end-to-end tests drive the built binary.
cargo build --locked -p switchboard-cli
cargo test --locked --workspace
# The DNS fuzz target (its own workspace, fuzz/) must stay buildable on stable.
# It shares the workspace's target directory, so only what differs is built again.
cargo build --locked --manifest-path fuzz/Cargo.toml --target-dir target
