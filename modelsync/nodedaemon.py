"""What the two node daemons (puller, config manager) share: their HTTP routes, heartbeats and
the process lifecycle (signal handlers that only set flags, clean stop on SIGTERM)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest

from modelsync.events import EventLog
from modelsync.heartbeat import HeartbeatSender
from modelsync.httpd import DaemonHTTPServer, Handler
from modelsync.lifecycle import install_stop_handlers
from modelsync.log import EventLogger
from modelsync.reports import NodeStatus
from modelsync.settings import NodeSettings


class NodeDaemon(Protocol):
    role: str
    stop_event: threading.Event
    sync_event: threading.Event
    events: EventLog

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


def start_heartbeats(daemon: NodeDaemon, settings: NodeSettings) -> HeartbeatSender | None:
    if not settings.master_url:
        return None
    return HeartbeatSender(
        settings.master_url,
        settings.node_token,
        settings.node_id,
        daemon.role,
        settings.heartbeat_s,
        daemon.summary,
        daemon.events,
        daemon.sync_event.set,
        daemon.stop_event,
        outbox=getattr(daemon, "outbox", None),
    ).start()


def serve(
    daemon: NodeDaemon,
    settings: NodeSettings,
    registry: CollectorRegistry,
    log: EventLogger,
    started: Callable[[int], None],
) -> int:
    """Run a node daemon until SIGTERM/SIGINT: HTTP server, heartbeats, the tick loop."""
    server = DaemonHTTPServer(
        settings.http_host, settings.http_port, node_routes(daemon, registry)
    ).start()
    install_stop_handlers(daemon.stop_event, daemon.sync_event)
    started(server.port)
    start_heartbeats(daemon, settings)
    try:
        daemon.run()
    finally:
        server.stop()
        daemon.close()
        log.info(f"{daemon.role}_stopped")
    return 0
