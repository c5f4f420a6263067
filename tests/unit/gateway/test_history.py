"""gateway.history: the bounded, sampled per-model ring and its heartbeat summary."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

from gateway.history import Exchange, History, truncate


def clock() -> itertools.count[float]:
    return itertools.count(1000.0, 1.0)


def test_ring_is_bounded_newest_first_and_counts_everything() -> None:
    ticks = clock()
    h = History(per_model=3, clock=lambda: next(ticks))
    for i in range(5):
        h.record(
            Exchange(model="m", version=i, convention="mlflow", latency_ms=float(i), status=200)
        )
    h.record(
        Exchange(
            model="other", version=1, convention="kraken", latency_ms=9.0, status=404, error="nope"
        )
    )
    got = h.entries("m", limit=10)
    assert [e["version"] for e in got] == [4, 3, 2]
    assert h.entries("m", limit=1)[0]["version"] == 4
    merged = h.entries(None, limit=2)
    assert [e["model"] for e in merged] == ["other", "m"]
    assert merged[0] == {
        "ts": 1005.0,
        "model": "other",
        "version": 1,
        "convention": "kraken",
        "latency_ms": 9.0,
        "status": 404,
        "error": "nope",
    }
    s = h.summary()["models"]
    assert s["m"]["count"] == 5 and s["m"]["errors"] == 0 and s["m"]["ring"] == 3
    assert s["other"]["errors"] == 1 and s["other"]["by_status"] == {"404": 1}
    assert h.entries("unknown") == []


def test_sampling_keeps_errors_and_counts_all() -> None:
    draws = iter([0.9, 0.1, 0.9, 0.9])
    h = History(per_model=10, sample=0.5, rng=lambda: next(draws))
    kept = [
        h.record(Exchange(model="m", version=1, convention="mlflow", latency_ms=1.0, status=200))
        for _ in range(3)
    ]
    assert kept == [False, True, False]
    assert h.record(
        Exchange(
            model="m", version=1, convention="mlflow", latency_ms=1.0, status=500, error="boom"
        )
    )
    s = h.summary()["models"]["m"]
    assert (s["count"], s["errors"], s["ring"]) == (4, 1, 2)
    assert (
        History(per_model=0).record(
            Exchange(model="m", version=None, convention="kraken", latency_ms=1.0, status=500)
        )
        is False
    )


def test_capture_is_off_by_default_and_truncated_when_on() -> None:
    call = Exchange("m", 1, "mlflow", 1.0, 200, request=b'{"inputs": [1]}', response=b"{}")
    h = History()
    h.record(call)
    assert "request" not in h.entries("m")[0]
    h = History(capture=True, capture_bytes=8)
    h.record(replace(call, request=b"0123456789abcdef"))
    e = h.entries("m")[0]
    assert e["request"] == "01234567...[truncated 8 of 16 bytes]" and e["response"] == "{}"
    assert "request" not in json.dumps(h.summary())
    assert truncate(None, 4) is None and truncate("é".encode(), 1).startswith("...")


def test_summary_is_small_and_percentiles_are_of_the_ring() -> None:
    h = History(per_model=100, max_models=300)
    for m in range(120):
        for i in range(1, 101):
            h.record(
                Exchange(
                    model=f"m{m}",
                    version=1,
                    convention="tfserving-rest",
                    latency_ms=float(i),
                    status=200 if i % 10 else 503,
                    error="x" * 2000,
                )
            )
    s = h.summary()
    assert len(s["models"]) == 50 and "m119" in s["models"] and "m0" not in s["models"]
    one = s["models"]["m119"]
    assert (one["p50_ms"], one["p99_ms"]) == (50.5, 99.01)
    assert len(one["last"]) == 10 and one["last"][0]["latency_ms"] == 100.0
    assert all(len(e["error"] or "") <= 200 for e in one["last"])
    assert len(json.dumps(s)) < 200_000
    assert one["errors"] == 10 and one["by_status"] == {"200": 90, "503": 10}


def test_models_are_bounded_least_recent_first_out() -> None:
    h = History(max_models=2)
    for m in ("a", "b", "a", "c"):
        h.record(Exchange(model=m, version=None, convention="mlflow", latency_ms=1.0, status=200))
    assert h.models() == ["a", "c"]
