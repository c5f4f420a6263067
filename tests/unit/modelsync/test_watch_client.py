"""The node's side of the watch: a line is parsed strictly, and only a line newer than what
the last poll saw makes the daemon poll; the master unreachable is one event, and the watch
tries again on its own."""

from __future__ import annotations

import threading
import time

import pytest

from modelsync.events import EventLog
from modelsync.log import get_logger
from modelsync.settings import NodeSettings
from modelsync.watch import Generations, WatchClient, parse_line


def client(seen: Generations, polls: list[int], url: str = "http://127.0.0.1:9") -> WatchClient:
    settings = NodeSettings(node_id="n1", http_port=0, master_url=url, node_token=None)
    return WatchClient(
        settings,
        lambda: seen,
        lambda: polls.append(1),
        EventLog(get_logger("test")),
        threading.Event(),
    )


def test_lines_are_parsed_strictly() -> None:
    assert parse_line(b'{"catalog": 5, "policy": null}') == Generations(5, None)
    for bad in (b"[1]", b'{"catalog": "5"}', b'{"policy": true}', b"not json"):
        with pytest.raises(ValueError):
            parse_line(bad)


def test_only_news_makes_the_daemon_poll() -> None:
    polls: list[int] = []
    c = client(Generations(5, 7), polls)
    assert not c.heard(Generations(5, 7))  # the keepalive: nothing new
    assert not c.heard(Generations(4, 7))  # older than the poll saw
    assert c.heard(Generations(5, 8))  # a policy write
    assert c.heard(Generations(6, 7))  # a publish
    assert polls == [1, 1] and c.woken == 2


def test_an_unreachable_master_is_one_event_and_the_watch_keeps_trying() -> None:
    polls: list[int] = []
    c = client(Generations(1, 1), polls, url="http://127.0.0.1:9")  # nothing listens there
    c.start()
    deadline = time.monotonic() + 10
    while c.up is not False and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.5)  # a few more attempts (backoff 0.5, 1, ...)
    c.stop.set()
    lost = [e for e in c.events if e.name == "watch_lost"]
    assert c.up is False and len(lost) == 1 and polls == []
