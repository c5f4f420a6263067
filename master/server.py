"""``modelsync master``: the Flask app under gunicorn (gthread workers).

Background work (the catalog writer, retention, and the telemetry process ``master.merger``
it starts and watches) runs in exactly one worker: the first to take an exclusive lock next to
the SQLite file.

Why gthread with a thread per held watch (``master.watch``): a worker has
``MODELSYNC_MASTER_THREADS`` threads for the API plus one per watch slot
(``MODELSYNC_WATCH_MAX``), and a watch takes a slot or is refused at once, so held watches can
never take the API's threads. An idle held watch costs a blocked thread (about 16 KB of memory
each, measured: 1,000 of them add 16 MB) and no CPU; one change wakes them all in about 0.15 s.
It keeps one port, one TLS proxy, one auth path and one OpenAPI document, and nothing is
monkey-patched (gevent would turn every SQLite call and every view's CPU time into a pause of
all connections). On SIGTERM the worker answers its held watches at once (503: the nodes poll),
so a stop never waits for them.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from master.settings import MULTIPROC_ENV, MasterSettings
from modelsync.log import configure_logging, get_logger

log = get_logger("master")
# Measured in `bench master` (500 nodes, 200 heartbeats/s, 500 watches), each collection timed
# with gc.callbacks: with CPython's defaults (700, 10, 10) a full collection ran every ~6 s and
# paused the worker 86-109 ms, which was the heartbeats' p99 (~100 ms). With the freeze and a
# young generation of 50,000 objects, its collections paused up to 85 ms; of 10,000, up to
# 21 ms (one 40 ms middle one and one 17 ms full one in a minute): heartbeat p99 30 ms.
GC_THRESHOLDS = (10_000, 20, 100)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: MasterSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        for key, value in {
            "bind": f"{s.http_host}:{s.http_port}",
            "workers": s.workers,
            "threads": s.gunicorn_threads,
            # held watches are connections too: room for every slot besides the API's clients
            "worker_connections": 1000 + s.watch_max,
            "worker_class": "master.server.MasterWorker",
            "timeout": 60,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "limit_request_line": 8190,
            "preload_app": False,
            "child_exit": _worker_exited,
            "on_exit": _arbiter_exiting,
        }.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from master.app import create_app

        configure_logging(self.settings.log_level, json_output=True)
        app = create_app(self.settings)
        # What the app holds from here on is never garbage: out of every collection's scan
        # (gc.freeze), and young collections far rarer (GC_THRESHOLDS), so fewer short-lived
        # objects of the requests in flight outlive one and pile up for a full collection.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        return app


class MasterWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, and when the worker stops (SIGTERM, or its arbiter died) the held watches end
    at once: gunicorn would wait up to ``graceful_timeout`` for them, and they never end."""

    def _close_watches(self) -> None:
        from master.api import STATE_KEY

        app = getattr(self, "wsgi", None)  # None while the worker boots
        state = getattr(app, "extensions", {}).get(STATE_KEY)
        if state is not None:
            state.watch.close()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._close_watches()
        super().handle_exit(sig, frame)

    def is_parent_alive(self) -> bool:
        alive: bool = super().is_parent_alive()
        if not alive:
            self._close_watches()
        return alive


def _worker_exited(_server: Any, worker: Any) -> None:
    """A dead worker's live gauges leave the merged metrics (client_python's multiprocess rule)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _arbiter_exiting(_server: Any) -> None:
    """The arbiter (never a worker) removes the metrics directory when gunicorn stops."""
    shutil.rmtree(os.environ.get(MULTIPROC_ENV, ""), ignore_errors=True)


def _metrics_dir() -> None:
    """Every worker writes its metric values under one fresh directory, merged at scrape time
    (``master.metrics``); set before any worker imports prometheus_client."""
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="modelsync-master-metrics-")


def main(port: int | None = None) -> int:
    settings = MasterSettings.from_env()
    configure_logging(settings.log_level, json_output=True)
    if port is not None:
        settings = replace(settings, http_port=port)
    from master.auth import session_key
    from master.db import Database
    from modelsync.httpd import check_bindable
    from modelsync.store import require_bucket

    check_bindable(settings.http_host, settings.http_port)
    unreachable = require_bucket(settings.store)  # a missing bucket: one line, exit 2
    if unreachable:  # transient: the catalog writer keeps retrying
        log.warning("bucket_unreachable_at_start", error=unreachable)
    # create or migrate the schema, and make the session key, once, before the workers fork
    session_key(settings, Database(settings.db_path))
    _metrics_dir()
    log.info(
        "master_starting",
        bind=f"{settings.http_host}:{settings.http_port}",
        db=str(settings.db_path),
        bucket=settings.store.bucket,
        workers=settings.workers,
    )
    _Gunicorn(settings).run()
    return 0
