"""``modelsync worker``: a Celery worker (threads) that scores the jobs' chunks through the
node's own TF Serving, until SIGTERM (a warm shutdown: the chunks in hand are finished, the rest
stay on the broker).

    MODELSYNC_BROKER_URL=redis://127.0.0.1:6379/0 MODELSYNC_BUCKET=models \\
    MODELSYNC_TFSERVING=127.0.0.1:8500 modelsync worker

A chunk that cannot be scored now (TF Serving down or restarting, the model not loaded, the
bucket unreachable) is retried with backoff for ``MODELSYNC_JOB_RETRY_S``; then its rows become
error lines, so the job still completes and says why.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from jobs.metrics import WorkerMetrics
from jobs.runner import ChunkRunner, Unavailable
from jobs.settings import WorkerSettings
from modelsync.httpd import DaemonHTTPServer
from modelsync.jobs.model import QUEUE, SCORE_CHUNK_TASK, BadMessage, ChunkTask
from modelsync.jobs.queue import celery_app
from modelsync.log import JsonFormatter, configure_logging, get_logger
from modelsync.store import GCSStore, StoreError
from modelsync.tfs import TFServingClient

log = get_logger("worker")


def backoff_s(attempt: int, visibility_s: float) -> float:
    """Seconds before retry ``attempt`` (0, 1, ...): doubling from 0.5 s to 10 s, jittered, and
    well inside the visibility timeout (a retry waits on the broker as an unacknowledged
    message)."""
    ceiling = min(10.0, visibility_s / 3)
    return float(min(ceiling, 0.5 * 2**attempt) * random.uniform(0.75, 1.0))


def register(app: Any, runner: ChunkRunner, settings: WorkerSettings) -> Any:
    def score_chunk(self: Any, task: dict[str, Any], since: float | None = None) -> dict[str, Any]:
        try:
            chunk = ChunkTask.from_message(task)
        except BadMessage as exc:
            log.error("chunk_message_malformed", error=str(exc))
            return {"outcome": "malformed"}
        first = since or time.time()
        try:
            return runner.run(chunk).to_json()
        except (Unavailable, StoreError) as exc:
            if time.time() - first >= settings.retry_s and isinstance(exc, Unavailable):
                log.warning("chunk_given_up", job=chunk.job, chunk=chunk.chunk, error=str(exc))
                return runner.give_up(chunk, str(exc)).to_json()
            attempt = self.request.retries
            delay = backoff_s(attempt, settings.broker.visibility_s)
            runner.metrics.retries.inc()
            log.warning(
                "chunk_retry",
                job=chunk.job,
                chunk=chunk.chunk,
                attempt=attempt + 1,
                in_s=round(delay, 2),
                error=str(exc)[:300],
            )
            raise self.retry(
                countdown=delay, kwargs={"task": task, "since": first}, exc=exc
            ) from None

    return app.task(name=SCORE_CHUNK_TASK, bind=True, max_retries=None, acks_late=True)(score_chunk)


def _celery_logs(level: str) -> None:
    """Celery's own loggers in the JSON format (warnings and worse: one line per chunk is ours)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("celery", "kombu"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
        logger.propagate = False


def http_routes(settings: WorkerSettings, client: TFServingClient, metrics: WorkerMetrics) -> Any:
    from prometheus_client import generate_latest

    def healthz(_body: bytes) -> tuple[int, Any]:
        return 200, {"status": "alive"}

    def readyz(_body: bytes) -> tuple[int, Any]:
        ok, detail = client.ready()
        return (200 if ok else 503), {"ready": ok, "tfserving": detail}

    def metrics_page(_body: bytes) -> tuple[int, Any]:
        return 200, generate_latest(metrics.registry)

    def status(_body: bytes) -> tuple[int, Any]:
        return 200, {
            "node_id": settings.node.node_id,
            "broker": settings.broker.safe_url,
            "tfserving": settings.tfserving,
            "concurrency": settings.concurrency,
            "batch_rows": settings.batch_rows,
        }

    return {
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): readyz,
        ("GET", "/metrics"): metrics_page,
        ("GET", "/status"): status,
    }


def main(port: int | None = None) -> int:
    from celery import signals

    settings = WorkerSettings.from_env().with_port(port)
    configure_logging(settings.node.log_level, json_output=True)
    signals.setup_logging.connect(lambda **_kw: _celery_logs(settings.node.log_level), weak=False)
    store = GCSStore(settings.store)
    client = TFServingClient(settings.tfserving, settings.timeout_s)
    metrics = WorkerMetrics()
    runner = ChunkRunner(settings, store, client, metrics)
    app = celery_app(settings.broker)
    register(app, runner, settings)
    node = settings.node
    server = DaemonHTTPServer(
        node.http_host, node.http_port, http_routes(settings, client, metrics)
    )
    server.start()
    log.info(
        "worker_started",
        node_id=node.node_id,
        http=f"{node.http_host}:{server.port}",
        broker=settings.broker.safe_url,
        tfserving=settings.tfserving,
        concurrency=settings.concurrency,
        batch_rows=settings.batch_rows,
    )
    worker = app.Worker(
        hostname=f"worker{os.getpid()}@{node.node_id}",
        pool="threads",
        concurrency=settings.concurrency,
        queues=[QUEUE],
        loglevel=node.log_level.upper(),
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
        quiet=True,
    )
    try:
        worker.start()
    finally:
        server.stop()
        client.close()
        log.info("worker_stopped", exitcode=worker.exitcode)
    return int(worker.exitcode or 0)
