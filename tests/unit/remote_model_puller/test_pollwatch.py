"""An overdue poll is told while it hangs: one event per poll, and two gauges at every scrape."""

from __future__ import annotations

from prometheus_client import generate_latest

from modelsync.events import EventLog
from modelsync.log import get_logger
from modelsync.metrics import DaemonMetrics
from remote_model_puller.pollwatch import PollWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gauges(metrics: DaemonMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("modelsync_puller_poll_"):
            name, value = line.split(" ")
            out[name.removeprefix("modelsync_puller_")] = float(value)
    return out


def test_a_hanging_poll_is_an_event_once_and_a_metric_while_it_lasts() -> None:
    clock, events, metrics = Clock(), EventLog(get_logger("test")), DaemonMetrics("puller")
    watch = PollWatch(poll_s=2.0, deadline_s=30.0, events=events, metrics=metrics, clock=clock)
    assert watch.overdue_after_s == 6.0
    assert gauges(metrics) == {"poll_running_seconds": 0.0, "poll_overdue": 0.0}
    watch.begin()
    clock.now += 5.0
    assert not watch.check() and gauges(metrics)["poll_overdue"] == 0.0
    clock.now += 2.0  # 7 s: past 3 polls
    assert watch.check()
    assert gauges(metrics) == {"poll_running_seconds": 7.0, "poll_overdue": 1.0}
    clock.now += 10.0
    assert not watch.check()  # told once per poll
    assert gauges(metrics)["poll_running_seconds"] == 17.0
    (event,) = [e for e in events if e.name == "poll_overdue"]
    assert event.level == "warning" and event.fields["running_s"] == 7.0
    assert event.fields["deadline_s"] == 30.0
    watch.end()
    assert gauges(metrics) == {"poll_running_seconds": 0.0, "poll_overdue": 0.0}
    watch.begin()  # the next poll that hangs is told again
    clock.now += 7.0
    assert watch.check()
    assert len([e for e in events if e.name == "poll_overdue"]) == 2


def test_a_fast_poll_is_never_overdue() -> None:
    clock, events = Clock(), EventLog(get_logger("test"))
    watch = PollWatch(0.1, 30.0, events, DaemonMetrics("puller"), clock=clock)
    assert watch.overdue_after_s == 1.0  # a floor for tiny poll_s
    watch.begin()
    clock.now += 0.9
    watch.end()
    clock.now += 5.0
    assert not watch.check() and list(events) == []
