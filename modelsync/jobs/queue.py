"""The Celery app of the jobs, the same for the master (it sends one task per chunk) and the
worker (it runs them): broker and result backend, late acknowledgement, the visibility timeout.

Redis is the default broker and result backend (``redis://``); RabbitMQ (``amqp://``) works as
the broker too. A chunk's message is acknowledged only after its result object is written
(``acks_late``); a worker that dies with it unacknowledged gives it back: at once when its pool
loses the process (``task_reject_on_worker_lost``) or its connection closes (RabbitMQ), else
once the visibility timeout has passed (Redis restores it on the next sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelsync.jobs.model import QUEUE, SCORE_CHUNK_TASK
from modelsync.settings import Env, SettingsError

RESULT_EXPIRES_S = 86400  # the task results in the backend; the bucket holds the job's results


@dataclass(frozen=True)
class BrokerSettings:
    url: str
    backend: str | None = None
    visibility_s: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> BrokerSettings | None:
        """``MODELSYNC_BROKER_URL`` (or ``_FILE``); its password may come apart, from
        ``MODELSYNC_BROKER_PASSWORD`` (or ``_FILE``: a secret). None when no URL is set."""
        url = env.secret("MODELSYNC_BROKER_URL")
        if url is None:
            return None
        password = env.secret("MODELSYNC_BROKER_PASSWORD")
        if password is not None:
            url = with_password(url, password)
        scheme = url.partition("://")[0]
        if scheme not in ("redis", "rediss", "amqp", "amqps"):
            raise SettingsError(
                "MODELSYNC_BROKER_URL: expected redis://HOST:PORT/DB or amqp://USER:PASS@HOST:PORT//"
                f", got a {scheme or 'bare'!r} URL"
            )
        backend = env.secret("MODELSYNC_JOB_BACKEND_URL")
        if backend is None and scheme in ("redis", "rediss"):
            backend = url
        if backend is not None and backend.partition("://")[0] not in ("redis", "rediss"):
            raise SettingsError("MODELSYNC_JOB_BACKEND_URL: expected a redis:// URL")
        return cls(
            url=url,
            backend=backend,
            visibility_s=env.number("MODELSYNC_JOB_VISIBILITY_S", 300.0, minimum=2, maximum=86400),
        )

    @property
    def safe_url(self) -> str:
        """The broker URL without its password (for logs and pages)."""
        scheme, sep, rest = self.url.partition("://")
        creds, at, host = rest.rpartition("@")
        if not at:
            return self.url
        user = creds.partition(":")[0]
        return f"{scheme}{sep}{user + ':***' if user else '***'}@{host}"


def with_password(url: str, password: str) -> str:
    """``redis://host:6379/0`` + ``pw`` -> ``redis://:pw@host:6379/0`` (a user kept:
    ``amqp://u@host//`` -> ``amqp://u:pw@host//``); the password URL-quoted."""
    from urllib.parse import quote

    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        raise SettingsError(
            "MODELSYNC_BROKER_URL holds a password already; drop MODELSYNC_BROKER_PASSWORD"
        )
    user = creds if at else ""
    return f"{scheme}{sep}{user}:{quote(password, safe='')}@{host}"


def celery_app(settings: BrokerSettings, name: str = "modelsync-jobs") -> Any:
    from celery import Celery

    app = Celery(name, broker=settings.url, backend=settings.backend, set_as_current=False)
    restore_s = max(1.0, min(10.0, settings.visibility_s / 4))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_routes={SCORE_CHUNK_TASK: {"queue": QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=settings.backend is None,
        result_expires=RESULT_EXPIRES_S,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_enable_remote_control=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=5,
        broker_heartbeat=10,
        broker_transport_options={
            "visibility_timeout": settings.visibility_s,
            "unacked_restore_interval": restore_s,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(30.0, restore_s * 3),
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "retry_on_timeout": True,
        },
        result_backend_transport_options={"socket_timeout": 10, "retry_on_timeout": True},
        enable_utc=True,
        task_create_missing_queues=True,
    )
    return app
