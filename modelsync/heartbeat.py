"""Heartbeats from a node daemon to the master (node → master only; never the reverse).

Every ``heartbeat_s`` the daemon POSTs ``/v1/nodes/heartbeat`` with its node token, a status
summary and the events since the last beat that got through. The answer may ask for a sync now.
The master being down changes nothing on the node: the events wait in a bounded buffer and the
daemon keeps working.
"""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

import requests

from modelsync import __version__
from modelsync.log import get_logger

log = get_logger("heartbeat")


def local_address(url: str) -> str | None:
    """This machine's address on the route to ``url``'s host: where a peer that this node
    reaches at ``url`` can reach it back (the kernel picks it; a UDP connect sends nothing).
    None when there is no route or the host does not resolve."""
    from urllib.parse import urlsplit

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


class EventBuffer:
    """Events with sequence numbers, bounded; the heartbeat sends those after its cursor."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._items: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=maxlen
        )
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._items.append((self._seq, event))

    def since(self, seq: int, limit: int = 500) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            items = [(s, e) for s, e in self._items if s > seq][:limit]
        return (items[-1][0] if items else seq), [e for _s, e in items]

    def recent(self, n: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            return [e for _s, e in list(self._items)[-n:]]

    def __iter__(self):  # type: ignore[no-untyped-def]
        with self._lock:
            return iter([e for _s, e in self._items])


class Outbox(Protocol):
    """More to carry on a beat (e.g. request telemetry): ``take()`` gives it (or None),
    ``settle(ok)`` says whether the master got it (if not, it goes out with the next beat)."""

    def take(self) -> dict[str, Any] | None: ...
    def settle(self, ok: bool) -> None: ...


class HeartbeatSender:
    def __init__(
        self,
        master_url: str,
        token: str | None,
        node_id: str,
        role: str,
        heartbeat_s: float,
        status: Callable[[], dict[str, Any]],
        events: EventBuffer,
        on_sync: Callable[[], None],
        stop: threading.Event,
        outbox: Outbox | None = None,
    ) -> None:
        self.url = master_url.rstrip("/") + "/v1/nodes/heartbeat"
        self.token = token
        self.node_id = node_id
        self.role = role
        self.heartbeat_s = heartbeat_s
        self.status = status
        self.events = events
        self.on_sync = on_sync
        self.stop = stop
        self.outbox = outbox
        self.session = requests.Session()
        self.cursor = 0
        self.ok: bool | None = None
        self.last_ok_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> HeartbeatSender:
        self._thread.start()
        return self

    def beat(self) -> bool:
        import time

        upto, events = self.events.since(self.cursor)
        doc: dict[str, Any] = {
            "node_id": self.node_id,
            "role": self.role,
            "hostname": socket.gethostname(),
            "version": __version__,
            "heartbeat_s": self.heartbeat_s,
            "status": self.status(),
            "events": events,
        }
        extra = self.outbox.take() if self.outbox is not None else None
        if extra is not None:
            doc["telemetry"] = extra
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = self.session.post(self.url, json=doc, headers=headers, timeout=5)
            if resp.status_code != 200:
                raise requests.RequestException(f"HTTP {resp.status_code}: {resp.text[:200]}")
            answer = resp.json()
        except (requests.RequestException, ValueError) as exc:
            if self.outbox is not None:
                self.outbox.settle(False)
            if self.ok is not False:
                log.warning("master_unreachable", url=self.url, error=str(exc))
            self.ok = False
            return False
        if self.outbox is not None:
            self.outbox.settle(True)
        if self.ok is False:
            log.info("master_reachable_again", url=self.url)
        self.ok, self.cursor, self.last_ok_at = True, upto, time.time()
        if answer.get("sync"):
            log.info("sync_requested_by_master")
            self.on_sync()
        return True

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.beat()
            except Exception:  # never let the heartbeat take the daemon down
                log.exception("heartbeat_failed")
            self.stop.wait(self.heartbeat_s)
