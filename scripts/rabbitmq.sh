#!/usr/bin/env bash
# Make sure Debian's rabbitmq-server is installed (/usr/sbin/rabbitmq-server): the jobs' tested
# alternative broker. The test starts its own node (own port, Erlang port mapper, data
# directory, cookie); the system service is never used (nor started by the install).
# Idempotent: prints one line and does nothing else when it is already there.
set -euo pipefail
log() { echo "[rabbitmq] $*"; }
version() { dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo "?"; }
if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ -x /usr/sbin/rabbitmq-server ]; then
  log "already installed: rabbitmq-server $(version)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "rabbitmq-server missing and not root: apt-get install rabbitmq-server" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp); trap 'rm -f "$out"' EXIT
run() { "$@" >>"$out" 2>&1 || { tail -30 "$out" >&2; return 1; }; }
policy=/usr/sbin/policy-rc.d; made_policy=""
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 0755 "$policy"; made_policy=1; fi
install() { apt-get install -y -q --no-install-recommends rabbitmq-server >>"$out" 2>&1; }
updated=""
if ! apt-cache show rabbitmq-server >/dev/null 2>&1; then
  run apt-get update -q; updated=" (after apt-get update)"
fi
if ! install; then
  run apt-get update -q; updated=" (after apt-get update)"
  run apt-get install -y -q --no-install-recommends rabbitmq-server || { [ -z "$made_policy" ] || rm -f "$policy"; exit 1; }
fi
[ -z "$made_policy" ] || rm -f "$policy"
log "installed rabbitmq-server${updated}: $(version)"
