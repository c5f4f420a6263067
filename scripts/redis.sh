#!/usr/bin/env bash
# Debian's redis-server (/usr/bin/redis-server): the jobs' default broker and result backend.
# Tests and the demo start their own redis-server processes on free 127.0.0.1 ports with their
# own data directories (modelsync.dev.brokers); the system service is never used.
exec bash "$(dirname "$0")/debian-install.sh" redis /usr/bin/redis-server redis-server
