"""Heartbeats from a node daemon to the master (node → master only; never the reverse).

Every ``heartbeat_s`` the daemon POSTs ``/v1/nodes/heartbeat`` with its node token, a status
summary and the events since the last beat that got through. The answer may ask for a sync now.
The master being down changes nothing on the node: the events wait in the daemon's bounded
:class:`~modelsync.events.EventLog` and the daemon keeps working.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import requests

from modelsync import __version__
from modelsync.events import EventLog
from modelsync.log import get_logger
from modelsync.reports import Heartbeat, NodeStatus
from modelsync.settings import NodeSettings

log = get_logger("heartbeat")


def local_address(url: str) -> str | None:
    """This machine's address on the route to ``url``'s host: where a peer that this node
    reaches at ``url`` can reach it back (the kernel picks it; a UDP connect sends nothing).
    None when there is no route or the host does not resolve."""
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        family, _type, _proto, _name, addr = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return str(s.getsockname()[0])
    except OSError:
        return None


class Outbox(Protocol):
    """More to carry on a beat (e.g. request telemetry): ``take()`` gives it (or None),
    ``settle(ok)`` says whether the master got it (if not, it goes out with the next beat)."""

    def take(self) -> dict[str, Any] | None: ...
    def settle(self, ok: bool) -> None: ...


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class BeatSource:
    """The daemon's side of its heartbeats: who it is, what it reports, what it has to say, when
    it stops, and what to do when the master asks for a sync now."""

    role: str  # one of modelsync.reports.ROLES
    status: Callable[[], NodeStatus]
    events: EventLog
    stop: threading.Event
    on_sync: Callable[[], None] = _nothing
    outbox: Outbox | None = None
    on_answer: Callable[[dict[str, Any]], None] | None = None  # every answer the master gave


class HeartbeatSender:
    def __init__(self, settings: NodeSettings, source: BeatSource) -> None:
        if settings.master_url is None:
            raise ValueError("heartbeats need a master_url")
        self.url = settings.master_url.rstrip("/") + "/v1/nodes/heartbeat"
        self.settings = settings
        self.source = source
        self.session = requests.Session()
        self.cursor = 0
        self.ok: bool | None = None
        self.last_ok_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> HeartbeatSender:
        self._thread.start()
        return self

    def beat(self) -> bool:
        source, settings = self.source, self.settings
        upto, events = source.events.since(self.cursor)
        doc: Heartbeat = {
            "node_id": settings.node_id,
            "role": source.role,
            "hostname": socket.gethostname(),
            "version": __version__,
            "heartbeat_s": settings.heartbeat_s,
            "status": source.status(),
            "events": [e.to_json() for e in events],
        }
        extra = source.outbox.take() if source.outbox is not None else None
        if extra is not None:
            doc["telemetry"] = extra
        token = settings.node_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            # requests types its ``json`` as plain JSON values, which a TypedDict is not
            body = cast(dict[str, Any], doc)
            resp = self.session.post(self.url, json=body, headers=headers, timeout=5)
            if resp.status_code != 200:
                raise requests.RequestException(f"HTTP {resp.status_code}: {resp.text[:200]}")
            answer = resp.json()
        except (requests.RequestException, ValueError) as exc:
            if source.outbox is not None:
                source.outbox.settle(False)
            if self.ok is not False:
                log.warning("master_unreachable", url=self.url, error=str(exc))
            self.ok = False
            return False
        if source.outbox is not None:
            source.outbox.settle(True)
        if self.ok is False:
            log.info("master_reachable_again", url=self.url)
        self.ok, self.cursor, self.last_ok_at = True, upto, time.time()
        if answer.get("sync"):
            log.info("sync_requested_by_master")
            source.on_sync()
        if source.on_answer is not None and isinstance(answer, dict):
            source.on_answer(answer)
        return True

    def _run(self) -> None:
        while not self.source.stop.is_set():
            try:
                self.beat()
            except Exception:  # never let the heartbeat take the daemon down
                log.exception("heartbeat_failed")
            self.source.stop.wait(self.settings.heartbeat_s)
