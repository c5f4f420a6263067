#!/usr/bin/env bash
# Make sure a Docker Engine answers on this machine: install Debian's docker.io if no dockerd
# exists, start dockerd if none runs, wait until `docker info` answers. Idempotent.
set -euo pipefail
log() { echo "[docker-engine] $*" >&2; }
if docker info >/dev/null 2>&1; then
  log "engine already running"; exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then log "dockerd missing and not root: install docker.io"; exit 1; fi
  log "installing docker.io (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  # a previous dockerd killed with its session leaves its pid files behind
  rm -f /var/run/docker.pid /run/docker.pid /var/run/docker/containerd/containerd.pid
  log "starting dockerd"
  # --iptables=false: these machines cannot program iptables; services use host networking.
  nohup dockerd --iptables=false >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then log "engine ready"; exit 0; fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
tail -20 /var/log/dockerd.log >&2 || true
exit 1
