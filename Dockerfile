# One image for the master, the puller, the config manager, the gateway, the jobs worker, the
# jobs' broker (Debian's redis-server) and the compatible model server: every service differs
# only in its `command:`.
#   bash scripts/wheelhouse.sh        # wheelhouse/deps: the dependencies; wheelhouse/app: modelsync
#   docker build --network host --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t modelsync .
# BASE_IMAGE must provide python3 (3.11) with venv; scripts/base-image.sh makes one where no
# registry can be reached.
# The venv is two layers: the dependencies (TensorFlow: 1.8 GB), rebuilt only when they change,
# then modelsync itself (about 4 MB): a new modelsync is a small push and a small pull per node.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS deps
COPY wheelhouse/deps /wheelhouse
# TensorFlow's C++ headers (tensorflow/include: 430 MB, 18,000 of the venv's 32,000 files) are
# only for compiling custom ops; without them every engine pulls and unpacks the image faster.
RUN python3 -m venv /opt/modelsync \
 && /opt/modelsync/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse \
      -r /wheelhouse/requirements.txt \
 && rm -rf /opt/modelsync/lib/python3*/site-packages/tensorflow/include

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="modelsync" \
      org.opencontainers.image.description="Keep TF Serving fleets serving the right model versions"
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/modelsync /opt/modelsync
COPY jobs/broker.sh /usr/local/bin/modelsync-broker
COPY tfserving/entrypoint.sh /usr/local/bin/modelsync-tfserving-entrypoint
COPY tfserving/healthcheck.sh /usr/local/bin/modelsync-tfserving-healthcheck
COPY tfserving/monitoring.config /etc/modelsync/monitoring.config
RUN chmod 0755 /usr/local/bin/modelsync-tfserving-entrypoint /usr/local/bin/modelsync-tfserving-healthcheck \
      /usr/local/bin/modelsync-broker \
 && (getent group modelsync || groupadd --system --gid 10001 modelsync) \
 && (id modelsync || useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/modelsync \
        --shell /usr/sbin/nologin modelsync) \
 && mkdir -p /var/lib/modelsync/broker /models/.modelsync \
 && chown -R modelsync:modelsync /var/lib/modelsync /models
COPY wheelhouse/app /wheelhouse
RUN /opt/modelsync/bin/pip install --no-cache-dir --no-index --no-deps /wheelhouse/modelsync-*.whl \
 && rm -rf /wheelhouse
ENV PATH=/opt/modelsync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELSYNC_MODEL_ROOT=/models \
    MODELSYNC_DB=/var/lib/modelsync/master.sqlite3
USER modelsync
WORKDIR /var/lib/modelsync
# Checks this process only: its own /healthz (MODELSYNC_HTTP_PORT) or, for the model server,
# its gRPC health service (MODELSYNC_HEALTHCHECK=grpc://127.0.0.1:8500).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["modelsync", "healthcheck"]
CMD ["modelsync", "--help"]
