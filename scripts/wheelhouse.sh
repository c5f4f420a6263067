#!/usr/bin/env bash
# Wheels of modelsync and everything it needs, so that `docker build` can install with
# --no-index (image builds here cannot reach a package index): the dependencies and their
# requirements.txt in ./wheelhouse/deps, modelsync's own wheel in ./wheelhouse/app (the
# Dockerfile installs them as two layers: a change to modelsync leaves the first one cached).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
mkdir -p wheelhouse/deps wheelhouse/app
rm -f wheelhouse/*.whl wheelhouse/deps/modelsync-*.whl wheelhouse/app/modelsync-*.whl
"$py" -m pip wheel --quiet --disable-pip-version-check --wheel-dir wheelhouse/deps . 2>&1 \
  | grep -v "is neither a file nor a directory" >&2 || true
mv wheelhouse/deps/modelsync-*.whl wheelhouse/app/
# what the image's Python (bookworm's 3.11.2) needs that this one's resolution leaves out:
# redis-py wants async-timeout below Python 3.11.3 (pip in the image resolves it from here)
"$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --dest wheelhouse/deps "async-timeout>=4.0.3" 2>&1 | grep -v "is neither a file nor a directory" >&2 || true
ls wheelhouse/app/modelsync-*.whl wheelhouse/deps/async_timeout-*.whl >/dev/null
# modelsync's runtime requirements (not its extras), rewritten only when they change
"$py" - wheelhouse/app/modelsync-*.whl <<'EOF' >wheelhouse/deps/requirements.txt.new
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    for line in whl.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            print(line.split(":", 1)[1].strip())
EOF
if cmp -s wheelhouse/deps/requirements.txt.new wheelhouse/deps/requirements.txt; then
  rm wheelhouse/deps/requirements.txt.new
else
  mv wheelhouse/deps/requirements.txt.new wheelhouse/deps/requirements.txt
fi
echo "[wheelhouse] $(ls wheelhouse/deps/*.whl | wc -l) dependency wheels, $(du -sh wheelhouse | cut -f1)" >&2
