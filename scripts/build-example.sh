#!/usr/bin/env bash
# Build a container model example (examples/NAME) on the project's base image and push it:
#   bash scripts/build-example.sh NAME [REGISTRY] [TAG]    (default 127.0.0.1:5000, 1)
# An example with a requirements.txt gets its wheels from the package index into
# examples/NAME/wheelhouse first (docker build cannot reach it here). Prints the pushed image's
# name, REGISTRY/modelsync-example-NAME:TAG.
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
  "$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$here/wheelhouse" -r "$here/requirements.txt" 2>&1 \
    | grep -v "is neither a file nor a directory" >&2 || true
fi
echo "[example] building $image on $base" >&2
docker build --network host --quiet --build-arg "BASE_IMAGE=$base" -t "$image" "$here" >&2
docker push --quiet "$image" >&2
echo "$image"
