"""What the node daemons share: their HTTP routes, heartbeats (the gateway's too) and the process
lifecycle (signal handlers that only set flags, clean stop on SIGTERM)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest

from modelsync.events import EventLog
from modelsync.heartbeat import BeatSource, HeartbeatSender, Outbox
from modelsync.httpd import DaemonHTTPServer, Handler
from modelsync.lifecycle import install_stop_handlers
from modelsync.log import EventLogger, configure_logging
from modelsync.metrics import DaemonMetrics
from modelsync.reports import NodeStatus
from modelsync.settings import NodeSettings


class NodeDaemon(Protocol):
    role: str
    stop_event: threading.Event
    sync_event: threading.Event
    events: EventLog

    @property
    def outbox(self) -> Outbox | None: ...  # more to carry on a beat (request telemetry)
    @property
    def metrics(self) -> DaemonMetrics: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    def summary(self) -> NodeStatus: ...
    def run(self) -> None: ...
    def close(self) -> None: ...


def node_routes(daemon: NodeDaemon, registry: CollectorRegistry) -> dict[tuple[str, str], Handler]:
    def healthz(_body: bytes) -> tuple[int, Any]:
        return 200, {"status": "alive"}

    def readyz(_body: bytes) -> tuple[int, Any]:
        ok, detail = daemon.ready()
        return (200 if ok else 503), {"ready": ok, **detail}

    def metrics(_body: bytes) -> tuple[int, Any]:
        return 200, generate_latest(registry)

    def status(_body: bytes) -> tuple[int, Any]:
        return 200, daemon.status()

    def sync(_body: bytes) -> tuple[int, Any]:
        daemon.sync_event.set()
        return 202, {"sync": "requested"}

    return {
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): readyz,
        ("GET", "/metrics"): metrics,
        ("GET", "/status"): status,
        ("POST", "/sync"): sync,
    }


def start_heartbeats(settings: NodeSettings, source: BeatSource) -> HeartbeatSender | None:
    """Beat to ``settings.master_url`` until ``source.stop``; None when no master is set."""
    if not settings.master_url:
        return None
    return HeartbeatSender(settings, source).start()


def serve(
    settings: NodeSettings, build: Callable[[], NodeDaemon], log: EventLogger, **started: Any
) -> int:
    """Run a node daemon until SIGTERM/SIGINT: JSON logs at ``settings.log_level``, the daemon
    (``build``: logging is set up before it says anything), its HTTP server, heartbeats and
    tick loop. ``started``: more fields for the ``<role>_started`` log line."""
    configure_logging(settings.log_level, json_output=True)
    daemon = build()
    routes = node_routes(daemon, daemon.metrics.registry)
    server = DaemonHTTPServer(settings.http_host, settings.http_port, routes).start()
    install_stop_handlers(daemon.stop_event, daemon.sync_event)
    log.info(
        f"{daemon.role}_started",
        node_id=settings.node_id,
        http=f"{settings.http_host}:{server.port}",
        **started,
    )
    source = BeatSource(
        daemon.role,
        daemon.summary,
        daemon.events,
        daemon.stop_event,
        daemon.sync_event.set,
        daemon.outbox,
    )
    start_heartbeats(settings, source)
    try:
        daemon.run()
    finally:
        server.stop()
        daemon.close()
        log.info(f"{daemon.role}_stopped")
    return 0
