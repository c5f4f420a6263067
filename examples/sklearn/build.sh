#!/usr/bin/env bash
# Build the example's image on the project's base image and push it to a registry:
#   bash examples/sklearn/build.sh [REGISTRY] [TAG]    (default 127.0.0.1:5000, 1)
# The wheels come from the package index into ./wheelhouse first (docker build cannot reach
# it here). Prints the pushed image's name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
registry="${1:-${REGISTRY:-127.0.0.1:5000}}"
tag="${2:-1}"
image="$registry/modelsync-example-sklearn:$tag"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
base="${BASE_IMAGE:-$(bash "$root/scripts/base-image.sh")}"
mkdir -p "$here/wheelhouse"
"$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --dest "$here/wheelhouse" -r "$here/requirements.txt" 2>&1 \
  | grep -v "is neither a file nor a directory" >&2 || true
echo "[sklearn] building $image on $base" >&2
docker build --network host --quiet --build-arg "BASE_IMAGE=$base" -t "$image" "$here" >&2
docker push --quiet "$image" >&2
echo "$image"
