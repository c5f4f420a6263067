#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium and its chromedriver are installed
# (/usr/bin/chromium, /usr/bin/chromedriver) for the browser tests in tests/browser/.
# Idempotent: prints one line and does nothing else when both are already there.
set -euo pipefail
log() { echo "[browser] $*"; }
# 2>/dev/null: Debian's launcher script warns when /dev/shm is mounted twice (harmless).
versions() {
  echo "$(/usr/bin/chromium --version 2>/dev/null | cut -d' ' -f1-2)," \
    "$(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"
}
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "already installed: $(versions)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "chromium or chromedriver missing and not root: apt-get install chromium chromium-driver" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp); trap 'rm -f "$out"' EXIT
# apt's chatter goes to $out, shown only when a step fails.
run() { "$@" >>"$out" 2>&1 || { tail -30 "$out" >&2; return 1; }; }
install() { apt-get install -y -q --no-install-recommends chromium chromium-driver >>"$out" 2>&1; }
updated=""
# Refresh the package lists only when they do not know chromium or the install fails (stale lists).
if ! apt-cache show chromium chromium-driver >/dev/null 2>&1; then
  run apt-get update -q; updated=" (after apt-get update)"
fi
if ! install; then
  run apt-get update -q; updated=" (after apt-get update)"
  run apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
log "installed chromium and chromium-driver${updated}: $(versions)"
