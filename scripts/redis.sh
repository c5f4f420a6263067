#!/usr/bin/env bash
# Make sure Debian's redis-server is installed (/usr/bin/redis-server): the jobs' default broker
# and result backend. Tests and the demo start their own redis-server processes on free
# 127.0.0.1 ports with their own data directories; the system service is never used (and is
# stopped and disabled if the package's install started it).
# Idempotent: prints one line and does nothing else when it is already there.
set -euo pipefail
log() { echo "[redis] $*"; }
if [ -x /usr/bin/redis-server ]; then
  log "already installed: $(/usr/bin/redis-server --version | cut -d' ' -f1-3)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "redis-server missing and not root: apt-get install redis-server" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp); trap 'rm -f "$out"' EXIT
run() { "$@" >>"$out" 2>&1 || { tail -30 "$out" >&2; return 1; }; }
# policy-rc.d 101: the package's install does not start the system service
policy=/usr/sbin/policy-rc.d; made_policy=""
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 0755 "$policy"; made_policy=1; fi
install() { apt-get install -y -q --no-install-recommends redis-server >>"$out" 2>&1; }
updated=""
if ! apt-cache show redis-server >/dev/null 2>&1; then
  run apt-get update -q; updated=" (after apt-get update)"
fi
if ! install; then
  run apt-get update -q; updated=" (after apt-get update)"
  run apt-get install -y -q --no-install-recommends redis-server || { [ -z "$made_policy" ] || rm -f "$policy"; exit 1; }
fi
[ -z "$made_policy" ] || rm -f "$policy"
log "installed redis-server${updated}: $(/usr/bin/redis-server --version | cut -d' ' -f1-3)"
