#!/usr/bin/env bash
# Install Debian packages when a binary they bring is missing, without starting their system
# services (a policy-rc.d refuses it while apt runs): the tests and the demo start servers of
# their own. Idempotent: one line and nothing else when the binary is already there.
#   bash scripts/debian-install.sh TAG BINARY PACKAGE...
set -euo pipefail
tag="$1" binary="$2"; shift 2
log() { echo "[$tag] $*"; }
version() { dpkg-query -W -f='${Package} ${Version}' "$1" 2>/dev/null || echo "$1 ?"; }
if [ -x "$binary" ]; then
  log "already installed: $(version "$1")"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "$binary missing and not root: apt-get install $*" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp); policy=/usr/sbin/policy-rc.d; made_policy=""
cleanup() { rm -f "$out"; [ -z "$made_policy" ] || rm -f "$policy"; }
trap cleanup EXIT
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 0755 "$policy"; made_policy=1; fi
run() { "$@" >>"$out" 2>&1 || { tail -30 "$out" >&2; return 1; }; }
updated=""
# Refresh the package lists only when they do not know the packages or the install fails.
if ! apt-cache show "$@" >/dev/null 2>&1; then
  run apt-get update -q; updated=" (after apt-get update)"
fi
if ! apt-get install -y -q --no-install-recommends "$@" >>"$out" 2>&1; then
  run apt-get update -q; updated=" (after apt-get update)"
  run apt-get install -y -q --no-install-recommends "$@"
fi
log "installed$updated: $(version "$1")"
