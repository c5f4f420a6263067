#!/usr/bin/env bash
# A one-node Swarm on 127.0.0.1 (idempotent), and the label that marks a serving node.
set -euo pipefail
state="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown)"
if [ "$state" != "active" ]; then
  for _ in $(seq 1 20); do  # a restarted engine may still be rejoining its swarm
    [ "$state" = "pending" ] || break
    sleep 1; state="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown)"
  done
fi
if [ "$state" != "active" ]; then
  echo "[swarm] docker swarm init (state was: $state)" >&2
  if ! docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>&1; then
    docker swarm leave --force >/dev/null 2>&1 || true
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  fi
fi
node="$(docker info --format '{{.Swarm.NodeID}}')"
docker node update --label-add modelsync.serving=true "$node" >/dev/null
echo "[swarm] node $node active, labelled modelsync.serving=true" >&2
