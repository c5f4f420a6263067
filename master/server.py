"""``modelsync master``: the Flask app under gunicorn (gthread workers).

Background work (the catalog writer, retention) runs in exactly one worker: the first to take
an exclusive lock next to the SQLite file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any

from gunicorn.app.base import BaseApplication

from master.settings import MULTIPROC_ENV, MasterSettings
from modelsync.log import configure_logging, get_logger

log = get_logger("master")


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: MasterSettings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        for key, value in {
            "bind": f"{s.http_host}:{s.http_port}",
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": "gthread",
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
        return create_app(self.settings)


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
