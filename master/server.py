"""``modelsync master``: the Flask app under gunicorn (gthread workers).

Background work (the catalog writer, retention) runs in exactly one worker: the first to take
an exclusive lock next to the SQLite file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gunicorn.app.base import BaseApplication

from master.settings import MasterSettings
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
        }.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from master.app import create_app

        configure_logging(self.settings.log_level, json_output=True)
        return create_app(self.settings)


def main(port: int | None = None) -> int:
    settings = MasterSettings.from_env()
    configure_logging(settings.log_level, json_output=True)
    if port is not None:
        settings = replace(settings, http_port=port)
    from master.auth import session_key
    from master.db import Database
    from modelsync.httpd import check_bindable

    check_bindable(settings.http_host, settings.http_port)
    # create or migrate the schema, and make the session key, once, before the workers fork
    session_key(settings, Database(settings.db_path))
    log.info(
        "master_starting",
        bind=f"{settings.http_host}:{settings.http_port}",
        db=str(settings.db_path),
        bucket=settings.store.bucket,
        workers=settings.workers,
    )
    _Gunicorn(settings).run()
    return 0
