#!/usr/bin/env bash
# Debian's docker-registry (Docker Registry 2) serving on 127.0.0.1:${REGISTRY_PORT:-5000}
# without auth, its images under ${REGISTRY_ROOT:-/var/lib/modelsync-registry}: installed if
# missing (its system service is never started), started if nothing answers there yet.
# Idempotent; prints the registry's address (what image names start with).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${REGISTRY_PORT:-5000}"
root="${REGISTRY_ROOT:-/var/lib/modelsync-registry}"
addr="127.0.0.1:$port"
log() { echo "[registry] $*" >&2; }
bash scripts/debian-install.sh registry /usr/bin/docker-registry docker-registry >&2
if curl -fsS -o /dev/null "http://$addr/v2/" 2>/dev/null; then
  log "already answering on $addr"; echo "$addr"; exit 0
fi
mkdir -p "$root"
cat >"$root/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $root/data
  delete:
    enabled: true
http:
  addr: $addr
CONFIG
nohup docker-registry serve "$root/config.yml" >"$root/registry.log" 2>&1 &
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://$addr/v2/" 2>/dev/null; then
    log "started on $addr (pid $!, data in $root/data)"; echo "$addr"; exit 0
  fi
  sleep 0.2
done
log "did not answer on $addr within 20 s; see $root/registry.log"
tail -20 "$root/registry.log" >&2 || true
exit 1
