#!/usr/bin/env bash
# Make sure the system binaries the tests run for real are installed (Debian packages).
# Usage: ensure_system_deps.sh BINARY=PACKAGE ...   e.g. redis-server=redis-server haproxy=haproxy
set -euo pipefail
missing=()
for pair in "$@"; do
  bin=${pair%%=*}; pkg=${pair#*=}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${missing[*]} (Debian packages)"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pair in "$@"; do
  bin=${pair%%=*}
  command -v "$bin" >/dev/null 2>&1 || { echo "system-deps: $bin still missing after install" >&2; exit 1; }
done
