#!/usr/bin/env bash
# Start tensorflow_model_server the way modelsync's config manager expects it:
# - the model config lives at $MODELSYNC_MODEL_ROOT/.modelsync/models.config; the config manager
#   rewrites it and pushes it over gRPC (HandleReloadConfigRequest). On a restart TF Serving reads
#   the last good file, so it serves again before the config manager reconnects.
# - versions are listed explicitly (specific policies), labels only onto AVAILABLE versions.
# - Prometheus metrics at /monitoring/prometheus/metrics on the REST port.
# - load retries: one, 5 s later (TF Serving's default is 5 retries 60 s apart). Every file was
#   CRC32C-verified before the version appeared, so a failed load is almost always the model's
#   own fault and retrying it for 5 minutes only delays the report; one quick retry covers a
#   transient failure (memory pressure). The config manager gives a version at most
#   MODELSYNC_LOAD_TIMEOUT_S in LOADING and then leaves it out (TFS_MAX_LOAD_RETRIES and
#   TFS_LOAD_RETRY_INTERVAL_MICROS override these).
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
  --max_num_load_retries="${TFS_MAX_LOAD_RETRIES:-1}" \
  --load_retry_interval_micros="${TFS_LOAD_RETRY_INTERVAL_MICROS:-5000000}" \
  ${TFS_EXTRA_FLAGS:-} "$@"
