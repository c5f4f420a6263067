"""The watch, node side: a request held to the master (``GET /v1/watch``; node → master only),
a stream of JSON lines ``{"catalog": G, "policy": G}`` — the generations the master knows, at
once, at each change, and every keepalive. A line newer than what this node's last poll saw
only says "look now": the daemon then polls the bucket, which stays the source of truth.

With the master down (or refusing: every watch slot taken, an older master without the route)
the watch waits and tries again, backing off up to ``MAX_BACKOFF_S``, while the daemon keeps
polling the bucket every ``poll_s`` exactly as with no master; once the master answers again,
the node watches again. Each change of state is one event: ``watch_connected``,
``watch_lost``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import requests

from modelsync.events import EventLog
from modelsync.settings import NodeSettings

WATCH_PATH = "/v1/watch"
# no line for this long (the master sends one every MODELSYNC_WATCH_KEEPALIVE_S, 15 s by default,
# at most 120 s): the master is gone, even if the connection did not say so
READ_TIMEOUT_S = 130.0
MAX_BACKOFF_S = 5.0  # the master down: try again at most this far apart
MIN_ROUND_S = 0.5  # first wait after a lost watch
MAX_REFUSED_WAIT_S = 60.0  # the master said "come back later" (every watch slot taken)


@dataclass(frozen=True)
class Generations:
    """The generations of ``_modelsync/catalog.json`` and ``policy.json`` (None: unknown;
    0: the object does not exist)."""

    catalog: int | None = None
    policy: int | None = None

    def merged(self, other: Generations) -> Generations:
        """The newer of each."""
        return Generations(_max(self.catalog, other.catalog), _max(self.policy, other.policy))

    def params(self) -> dict[str, str]:
        return {
            k: str(v)
            for k, v in (("catalog", self.catalog), ("policy", self.policy))
            if v is not None
        }


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def newer(known: Generations, seen: Generations) -> bool:
    """Whether ``known`` holds a catalog or policy newer than ``seen`` (pure). GCS generations
    of one object only grow, so a node that saw more than the master knows just waits."""
    return any(
        k is not None and (s is None or k > s)
        for k, s in ((known.catalog, seen.catalog), (known.policy, seen.policy))
    )


class WatchClient:
    """``seen()``: the generations the daemon's last poll saw; ``look_now()``: poll the bucket
    at once (it must not block: the daemon's loop does the poll)."""

    def __init__(
        self,
        settings: NodeSettings,
        seen: Callable[[], Generations],
        look_now: Callable[[], None],
        events: EventLog,
        stop: threading.Event,
    ) -> None:
        if settings.master_url is None:
            raise ValueError("a watch needs a master_url")
        self.url = settings.master_url.rstrip("/") + WATCH_PATH
        self.token = settings.node_token
        self.seen = seen
        self.look_now = look_now
        self.events = events
        self.stop = stop
        self.up: bool | None = None  # None: not tried yet
        self.woken = 0  # answers that said "look now"
        self.session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> WatchClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = MIN_ROUND_S
        while not self.stop.is_set():
            try:
                wait = self.once()
            except Exception as exc:  # the master down or refusing: poll the bucket meanwhile
                if self.up is True:  # it was held: the first failure since, not the next
                    backoff = MIN_ROUND_S
                self._lost(str(exc)[:300])
                wait = backoff
                if isinstance(exc, WatchRefused) and exc.retry_after_s is not None:
                    wait = min(MAX_REFUSED_WAIT_S, max(wait, exc.retry_after_s))
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            if wait > 0:
                self.stop.wait(wait)

    def once(self) -> float:
        """Hold one watch until it ends; raises when the master cannot be reached, refuses,
        or stops (then the daemon's polls carry on alone until the next watch)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with self.session.get(
            self.url, headers=headers, stream=True, timeout=(5, READ_TIMEOUT_S)
        ) as resp:
            if resp.status_code != 200:
                retry = resp.headers.get("Retry-After", "")
                detail = f"HTTP {resp.status_code}: {resp.text[:200]}"
                raise WatchRefused(detail, float(retry) if retry.isdigit() else None)
            if self.up is not True:
                self.events.emit("watch_connected", url=self.url)
            self.up = True
            # chunk_size None: each line as soon as it arrives, not once 512 bytes are in
            for line in resp.iter_lines(chunk_size=None):  # type: ignore[call-overload]
                if self.stop.is_set():
                    return 0.0
                if line:
                    self.heard(parse_line(line))
        raise ConnectionError("the master ended the watch (it stops)")

    def heard(self, known: Generations) -> bool:
        """A line from the master: poll now when it knows more than the last poll saw."""
        if not newer(known, self.seen()):
            return False
        self.woken += 1
        self.look_now()
        return True

    def _lost(self, error: str) -> None:
        if self.up is not False:
            self.events.emit(
                "watch_lost",
                "warning",
                url=self.url,
                error=error,
                fallback="polling the bucket every poll_s until the master answers again",
            )
        self.up = False


def parse_line(line: bytes) -> Generations:
    """One line of the watch; ValueError when it is not ``{"catalog": int|null, "policy":
    int|null}``."""
    doc = json.loads(line)
    if not isinstance(doc, dict):
        raise ValueError(f"a watch line must be an object, got {line[:100]!r}")
    out = []
    for key in ("catalog", "policy"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"a watch line's {key} must be an integer, got {value!r}")
        out.append(value)
    return Generations(out[0], out[1])


class WatchRefused(Exception):
    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def start_watch(
    settings: NodeSettings,
    seen: Callable[[], Generations],
    look_now: Callable[[], None],
    events: EventLog,
    stop: threading.Event,
) -> WatchClient | None:
    """Watch ``settings.master_url`` until ``stop``; None when no master is set."""
    if not settings.master_url:
        return None
    return WatchClient(settings, seen, look_now, events, stop).start()
