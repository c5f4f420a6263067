#!/usr/bin/env bash
# A Debian bookworm base image with Python 3, for machines that cannot pull from a registry.
# Uses the image if it exists; else tries `docker pull`; else builds it with debootstrap from
# the Debian mirror this machine's apt uses, and imports it. Prints the image name.
set -euo pipefail
image="${1:-modelsync-base:bookworm}"
upstream="${UPSTREAM_BASE_IMAGE:-python:3.11-slim-bookworm}"
log() { echo "[base-image] $*" >&2; }
if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image exists"; echo "$image"; exit 0
fi
if timeout 60 docker pull -q "$upstream" >/dev/null 2>&1; then
  docker tag "$upstream" "$image"; log "pulled $upstream"; echo "$image"; exit 0
fi
log "no registry: building $image with debootstrap"
if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
mirror="$( (grep -rhoE '^(deb|URIs:) +https?://[^ ]+/debian/?' /etc/apt/sources.list \
          /etc/apt/sources.list.d/ 2>/dev/null || true) | grep -v security | awk 'NR==1 {print $2}')"
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d /tmp/modelsync-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
  "$rootfs" "$mirror" >/tmp/modelsync-debootstrap.log 2>&1 \
  || { tail -20 /tmp/modelsync-debootstrap.log >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$image" >/dev/null
log "imported $image from $mirror"
echo "$image"
