"""The watch, node side: a request held to the master (``GET /v1/watch``; node → master only)
that is answered as soon as the catalog or the policy in the bucket has a generation newer than
the one this node last saw. The answer only says "look now": the daemon then polls the bucket,
which stays the source of truth.

With the master down (or refusing: every watch slot taken, an older master without the route)
the watch waits and tries again, backing off up to ``MAX_BACKOFF_S``, while the daemon keeps
polling the bucket every ``poll_s`` exactly as with no master; once the master answers again,
the node watches again. Each change of state is one event: ``watch_connected``,
``watch_lost``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from modelsync.events import EventLog
from modelsync.settings import NodeSettings

WATCH_PATH = "/v1/watch"
WAIT_S = 25.0  # how long the master may hold one watch (it holds at most MODELSYNC_WATCH_HOLD_S)
MAX_BACKOFF_S = 5.0  # the master down: try again at most this far apart
SETTLE_S = 3.0  # after "look now": wait this long at most for the daemon's poll to see it
MIN_ROUND_S = 0.5  # an answer at once that the poll did not explain: no faster than this
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
                backoff = MIN_ROUND_S
            except Exception as exc:  # the master down or refusing: poll the bucket meanwhile
                self._lost(str(exc)[:300])
                wait = backoff
                if isinstance(exc, WatchRefused) and exc.retry_after_s is not None:
                    wait = min(MAX_REFUSED_WAIT_S, max(wait, exc.retry_after_s))
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            if wait > 0:
                self.stop.wait(wait)

    def once(self) -> float:
        """One watch: held by the master until something is newer than what the last poll saw.
        Returns how long to wait before the next one; raises when the master did not answer
        (or refused)."""
        seen = self.seen()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        started = time.monotonic()
        resp = self.session.get(
            self.url,
            params={**seen.params(), "wait_s": f"{WAIT_S:g}"},
            headers=headers,
            timeout=(5, WAIT_S + 15),
        )
        if resp.status_code != 200:
            retry = resp.headers.get("Retry-After", "")
            detail = f"HTTP {resp.status_code}: {resp.text[:200]}"
            raise WatchRefused(detail, float(retry) if retry.isdigit() else None)
        doc = resp.json()
        if self.up is not True:
            self.events.emit("watch_connected", url=self.url)
        self.up = True
        if not doc.get("changed"):
            return 0.0
        self.woken += 1
        self.look_now()
        # the next watch must carry what the poll saw, or it is answered at once again
        deadline = time.monotonic() + SETTLE_S
        while self.seen() == seen and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.01)
        if self.seen() == seen:
            return max(0.0, MIN_ROUND_S - (time.monotonic() - started))
        return 0.0

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
