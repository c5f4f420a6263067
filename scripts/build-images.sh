#!/usr/bin/env bash
# Build the modelsync image (and, with TFS=1, the official-TF-Serving image) from nothing:
# engine, base image, wheelhouse, docker build. Prints the image name.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${MODELSYNC_IMAGE:-modelsync:dev}"
bash scripts/docker-engine.sh
base="${BASE_IMAGE:-$(bash scripts/base-image.sh)}"
bash scripts/wheelhouse.sh
echo "[build] $image on $base" >&2
# the dependencies' stage, tagged so that the prune below keeps it as the next build's cache
docker build --network host --quiet --rm --force-rm --build-arg "BASE_IMAGE=$base" \
  --target deps -t modelsync-deps:cache . >/dev/null
docker build --network host --quiet --rm --force-rm --build-arg "BASE_IMAGE=$base" -t "$image" . >&2
if [ "${TFS:-0}" = 1 ]; then
  docker build --network host --quiet --rm --force-rm -t "${TFSERVING_IMAGE:-modelsync-tfserving:dev}" \
    -f tfserving/Dockerfile tfserving >&2
fi
docker image prune -f >/dev/null 2>&1 || true  # the previous build's layers
echo "$image"
