#!/usr/bin/env bash
# Debian's rabbitmq-server: the jobs' tested alternative broker. The test starts its own node
# (own ports, Erlang port mapper, data directory and cookie; modelsync.dev.brokers); the system
# service is never used.
exec bash "$(dirname "$0")/debian-install.sh" rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server rabbitmq-server
