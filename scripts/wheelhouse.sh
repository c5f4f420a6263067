#!/usr/bin/env bash
# Wheels of modelsync and everything it needs, in ./wheelhouse, so that `docker build` can
# install with --no-index (image builds here cannot reach a package index).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
mkdir -p wheelhouse
rm -f wheelhouse/modelsync-*.whl
"$py" -m pip wheel --quiet --disable-pip-version-check --wheel-dir wheelhouse . 2>&1 \
  | grep -v "is neither a file nor a directory" >&2 || true
# what the image's Python (bookworm's 3.11.2) needs that this one's resolution leaves out:
# redis-py wants async-timeout below Python 3.11.3
"$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --dest wheelhouse "async-timeout>=4.0.3" 2>&1 | grep -v "is neither a file nor a directory" >&2 || true
ls wheelhouse/modelsync-*.whl wheelhouse/async_timeout-*.whl >/dev/null
echo "[wheelhouse] $(ls wheelhouse | wc -l) wheels, $(du -sh wheelhouse | cut -f1)" >&2
