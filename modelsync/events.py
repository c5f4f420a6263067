"""Events: one typed value per fact a node daemon records, kept for its heartbeats and logged once.

    events = EventLog(get_logger("puller"))
    events.emit("version_installed", model="ranker", version=42, bytes=1234)
    events.add(Event.of("catalog_malformed", "error", error="..."))  # made elsewhere, same path

An :class:`Event` knows its level, so whoever records it (a daemon, or a part such as the bucket
view that returns events instead of logging) never has to guess it again, and it is logged in
exactly one place: :meth:`EventLog.add`. ``Event.to_json()`` is the wire shape the master reads
from a heartbeat's ``events`` (``{"event": name, "at": t, **fields}``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelsync.log import EventLogger

Level = Literal["debug", "info", "warning", "error"]
MAX_EVENTS = 1000  # what a node daemon keeps; older events are dropped, never sent twice


@dataclass(frozen=True)
class Event:
    name: str  # snake_case, one name per fact: ``version_installed``
    level: Level = "info"
    at: float = field(default_factory=time.time)  # wall clock: the master shows it
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, level: Level = "info", /, **fields: Any) -> Event:
        return cls(name, level, fields=fields)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.name, "at": self.at, **self.fields}


class EventLog:
    """Events with sequence numbers, bounded (the oldest go first); the heartbeat sends those
    after its cursor. Thread-safe: the tick loop, the gate and HTTP handlers all use it."""

    def __init__(self, log: EventLogger, maxlen: int = MAX_EVENTS) -> None:
        self._log = log
        self._items: collections.deque[tuple[int, Event]] = collections.deque(maxlen=maxlen)
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, name: str, level: Level = "info", /, **fields: Any) -> Event:
        """Record and log a new event."""
        event = Event(name, level, fields=fields)
        self.add(event)
        return event

    def add(self, event: Event) -> None:
        """Record and log an event made elsewhere (e.g. returned by the bucket view)."""
        with self._lock:
            self._seq += 1
            self._items.append((self._seq, event))
        write = {
            "debug": self._log.debug,
            "info": self._log.info,
            "warning": self._log.warning,
            "error": self._log.error,
        }[event.level]
        write(event.name, **event.fields)

    def since(self, seq: int, limit: int = 500) -> tuple[int, list[Event]]:
        """The events after sequence number ``seq`` (at most ``limit``) and the last one's
        number (``seq`` when there are none): the heartbeat's cursor moves to it once the
        master got them."""
        with self._lock:
            items = [(s, e) for s, e in self._items if s > seq][:limit]
        return (items[-1][0] if items else seq), [e for _s, e in items]

    def recent(self, n: int = 50) -> list[Event]:
        with self._lock:
            return [e for _s, e in list(self._items)[-n:]]

    def __iter__(self) -> Iterator[Event]:
        with self._lock:
            return iter([e for _s, e in self._items])
