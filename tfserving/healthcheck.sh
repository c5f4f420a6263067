#!/usr/bin/env bash
# Healthy when this TF Serving process answers HTTP on its REST port (any HTTP status line).
# Uses only bash (/dev/tcp): the official image ships no curl.
set -u
port="${TFS_REST_PORT:-8501}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /v1/models/_healthcheck HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS= read -r -t 3 line <&3 || exit 1
case "$line" in HTTP/*) exit 0 ;; *) exit 1 ;; esac
