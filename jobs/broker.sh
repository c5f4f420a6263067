#!/bin/sh
# The jobs' broker in the modelsync image (stack.yml's and docker-compose.yml's `broker`):
# Debian's redis-server with its append-only file under MODELSYNC_BROKER_DIR (a volume: what is
# queued or unacknowledged survives a restart) and the password from
# MODELSYNC_BROKER_PASSWORD_FILE (a secret; given on stdin, never on the command line).
#   modelsync-broker               run it (exec: it gets SIGTERM and saves on the way out)
#   modelsync-broker healthcheck   exit 0 when it answers PING
set -eu
port="${MODELSYNC_BROKER_PORT:-6379}"
bind="${MODELSYNC_BROKER_BIND:-0.0.0.0}"
dir="${MODELSYNC_BROKER_DIR:-/var/lib/modelsync/broker}"
pass=""
if [ -n "${MODELSYNC_BROKER_PASSWORD_FILE:-}" ]; then
  pass="$(cat "$MODELSYNC_BROKER_PASSWORD_FILE")"
fi
if [ "${1:-}" = healthcheck ]; then
  out="$(REDISCLI_AUTH="$pass" redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)"
  [ "$out" = PONG ]
  exit
fi
mkdir -p "$dir"
if [ -n "$pass" ]; then
  exec redis-server - --port "$port" --bind $bind --dir "$dir" --appendonly yes \
    --appendfsync everysec --save "" --protected-mode no <<EOF
requirepass $pass
EOF
fi
exec redis-server --port "$port" --bind $bind --dir "$dir" --appendonly yes \
  --appendfsync everysec --save "" --protected-mode yes
