#!/usr/bin/env bash
# Build a container model example (examples/NAME) on the project's base image and push it:
#   bash scripts/build-example.sh NAME [REGISTRY] [TAG]    (default 127.0.0.1:5000, 1)
# The build context is the example's directory with examples/contract.py beside its files.
# An example with a requirements.txt gets its wheels from the package index into
# examples/NAME/wheelhouse first (docker build cannot reach it here). Prints the pushed image's
# name, REGISTRY/modelsync-example-NAME:TAG. EXAMPLE_PUSH=0: built and tagged, not pushed (a
# registry this machine's engine does not trust: `scripts/cluster.sh image-push` pushes it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:?usage: build-example.sh NAME [REGISTRY] [TAG]}"
here="$root/examples/$name"
[ -f "$here/Dockerfile" ] || { echo "[example] no $here/Dockerfile" >&2; exit 2; }
registry="${2:-${REGISTRY:-127.0.0.1:5000}}"
tag="${3:-1}"
image="$registry/modelsync-example-$name:$tag"
base="${BASE_IMAGE:-$(bash "$root/scripts/base-image.sh")}"
if [ -f "$here/requirements.txt" ]; then
  py="${PYTHON:-$root/.venv/bin/python}"
  [ -x "$py" ] || py=python3
  mkdir -p "$here/wheelhouse"
  # pip wheel: the index's wheels as they are, a source-only package (pyspark) built into one;
  # what the wheelhouse has already is not fetched again
  "$py" -m pip wheel --quiet --disable-pip-version-check --find-links "$here/wheelhouse" \
    --wheel-dir "$here/wheelhouse" -r "$here/requirements.txt" 2>&1 \
    | grep -v "is neither a file nor a directory" >&2 || true
fi
# the build context: the example's own files, and examples/contract.py (the contract's HTTP
# side, shared by the Python examples) beside them; hard links, nothing copied
context="$(mktemp -d /tmp/modelsync-example.XXXXXX)"
trap 'rm -rf "$context"' EXIT
cp -al "$here/." "$context/" 2>/dev/null || cp -a "$here/." "$context/"
ln "$root/examples/contract.py" "$context/contract.py" 2>/dev/null \
  || cp "$root/examples/contract.py" "$context/contract.py"
echo "[example] building $image on $base" >&2
docker build --network host --quiet --build-arg "BASE_IMAGE=$base" -t "$image" "$context" >&2
[ "${EXAMPLE_PUSH:-1}" = 0 ] || docker push --quiet "$image" >&2
echo "$image"
