#!/usr/bin/env bash
# Start tensorflow_model_server the way modelsync's config manager expects it:
# - the model config lives at $MODELSYNC_MODEL_ROOT/.modelsync/models.config; the config manager
#   rewrites it and pushes it over gRPC (HandleReloadConfigRequest). On a restart TF Serving reads
#   the last good file, so it serves again before the config manager reconnects.
# - versions are listed explicitly (specific policies), labels only onto AVAILABLE versions.
# - Prometheus metrics at /monitoring/prometheus/metrics on the REST port.
# Works with the official binary and with modelsync's compatible server (same flags).
set -euo pipefail
root="${MODELSYNC_MODEL_ROOT:-/models}"
config="$root/.modelsync/models.config"
mkdir -p "$root/.modelsync"
if [ ! -s "$config" ]; then
  tmp="$config.tmp.$$"
  printf 'model_config_list {\n}\n' > "$tmp"
  mv "$tmp" "$config"
fi
server="${TFS_BINARY:-tensorflow_model_server}"
# shellcheck disable=SC2086  # TFS_EXTRA_FLAGS is a list of flags
exec "$server" \
  --port="${TFS_GRPC_PORT:-8500}" \
  --rest_api_port="${TFS_REST_PORT:-8501}" \
  --model_config_file="$config" \
  --model_config_file_poll_wait_seconds=0 \
  --file_system_poll_wait_seconds="${TFS_FILE_SYSTEM_POLL_S:-2}" \
  --monitoring_config_file="${TFS_MONITORING_CONFIG:-/etc/modelsync/monitoring.config}" \
  --allow_version_labels_for_unavailable_models=false \
  ${TFS_EXTRA_FLAGS:-} "$@"
