"""modelsync.telemetry's intervals between two pages in the official TF Serving exporter's
format: deltas, new and gone models, counter resets, the fixture's heartbeat, and properties."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.telemetry import (
    LATENCY_BOUNDS_US,
    ModelInterval,
    TelemetryError,
    interval,
    quantile,
    snapshot,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tfserving_prometheus.txt"


def official_page(
    requests: dict[tuple[str, str], int],
    latency: dict[tuple[str, str, str], tuple[dict[int, int], float]],
) -> str:
    """A page as tensorflow_serving/util/prometheus_exporter.cc writes these two metrics:
    ``latency`` maps (model, API, entrypoint) to ({bucket index: count}, sum)."""

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"')

    lines = ["# TYPE :tensorflow:serving:request_count counter"]
    for (model, status), n in sorted(requests.items()):
        lines.append(
            f':tensorflow:serving:request_count{{model_name="{esc(model)}",status="{status}"}} {n}'
        )
    lines.append("# TYPE :tensorflow:serving:request_latency histogram")
    name = ":tensorflow:serving:request_latency"
    for (model, api, entry), (counts, total) in sorted(latency.items()):
        labels = f'model_name="{esc(model)}",API="{api}",entrypoint="{entry}"'
        cumulative = 0
        for i in range(len(LATENCY_BOUNDS_US) + 1):
            cumulative += counts.get(i, 0)
            le = "%.6g" % LATENCY_BOUNDS_US[i] if i < len(LATENCY_BOUNDS_US) else "+Inf"  # noqa: UP031
            lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
        lines.append(f"{name}_sum{{{labels}}} {'%.6g' % total}")  # noqa: UP031
        lines.append(f"{name}_count{{{labels}}} {cumulative}")
    return "\n".join(lines) + "\n"


# --- intervals ------------------------------------------------------------------------------

PREDICT = ("ranker", "Predict", "GRPC")


def test_interval_between_two_pages() -> None:
    prev = snapshot(
        official_page(
            {("ranker", "OK"): 100, ("ranker", "INVALID_ARGUMENT"): 2},
            {PREDICT: ({9: 60, 10: 40}, 200000.0)},
        )
    )
    cur = snapshot(
        official_page(
            {
                ("ranker", "OK"): 160,
                ("ranker", "INVALID_ARGUMENT"): 5,
                ("ranker", "NOT_FOUND"): 1,
                ("fresh", "OK"): 4,
            },
            {
                PREDICT: ({9: 90, 10: 60, 11: 10}, 320000.0),
                ("ranker", "predict", "REST"): ({8: 2}, 1800.0),
                ("fresh", "Predict", "GRPC"): ({5: 4}, 600.0),
            },
        )
    )
    got = interval(prev, cur, 5.0)
    assert set(got) == {"ranker", "fresh"}
    ranker = got["ranker"]
    assert not ranker.reset and ranker.seconds == 5.0
    assert ranker.statuses == {"OK": 60, "INVALID_ARGUMENT": 3, "NOT_FOUND": 1}
    assert ranker.requests == 64 and ranker.error_count == 4 and ranker.rps == 64 / 5
    assert ranker.errors == {"INVALID_ARGUMENT": 3, "NOT_FOUND": 1}
    counts = dict(zip(ranker.latency.bounds, ranker.latency.counts(), strict=True))
    assert {b: n for b, n in counts.items() if n} == {
        1102: 2,
        1983.59: 30,
        3570.47: 20,
        6426.84: 10,
    }
    assert ranker.latency.count == 62 and ranker.latency.sum == 120000 + 1800
    p50 = quantile(0.5, ranker.latency)
    assert p50 is not None and ranker.p50_ms == pytest.approx(p50 / 1000)
    fresh = got["fresh"]  # new since the last scrape: counts from zero
    assert fresh.statuses == {"OK": 4} and fresh.latency.count == 4 and not fresh.reset


def test_first_scrape_gives_nothing() -> None:
    assert interval(None, snapshot(FIXTURE.read_text()), 5.0) == {}


def test_interval_of_the_fixture_with_itself_is_zero() -> None:
    snap = snapshot(FIXTURE.read_text())
    got = interval(snap, snap, 5.0)
    assert set(got) == set(snap.models)
    for mi in got.values():
        assert mi.statuses == {} and mi.latency.count == 0 and mi.latency.sum == 0
        assert not mi.reset and mi.p99_ms is None


def test_model_gone_from_the_page_is_left_out() -> None:
    prev = snapshot(official_page({("a", "OK"): 1, ("b", "OK"): 1}, {}))
    cur = snapshot(official_page({("a", "OK"): 2}, {}))
    assert set(interval(prev, cur, 1.0)) == {"a"}


def test_restart_gives_the_current_values_not_negative_or_huge() -> None:
    prev = snapshot(
        official_page(
            {("ranker", "OK"): 1_000_000, ("ranker", "NOT_FOUND"): 7},
            {PREDICT: ({9: 999_000, 10: 1000}, 2e9)},
        )
    )
    cur = snapshot(
        official_page(
            {("ranker", "OK"): 12, ("ranker", "NOT_FOUND"): 9}, {PREDICT: ({9: 10, 10: 2}, 20000.0)}
        )
    )
    got = interval(prev, cur, 10.0)["ranker"]
    assert got.reset
    assert got.statuses == {"OK": 12, "NOT_FOUND": 9}
    assert got.latency.count == 12 and got.latency.sum == 20000
    assert all(n >= 0 for n in got.latency.counts())


@pytest.mark.parametrize(
    ("prev", "cur"),
    [
        # a status series vanished (the others grew past their old values)
        (({("m", "OK"): 5, ("m", "NOT_FOUND"): 1}, {}), ({("m", "OK"): 50}, {})),
        # one latency series went down while another grew: the merged counts would hide it
        (
            (
                {("m", "OK"): 10},
                {
                    ("m", "Predict", "GRPC"): ({9: 5}, 5000.0),
                    ("m", "predict", "REST"): ({9: 5}, 5000.0),
                },
            ),
            (
                {("m", "OK"): 30},
                {
                    ("m", "Predict", "GRPC"): ({9: 25}, 25000.0),
                    ("m", "predict", "REST"): ({9: 2}, 2000.0),
                },
            ),
        ),
        # a latency series vanished
        (
            ({("m", "OK"): 10}, {("m", "Predict", "GRPC"): ({9: 10}, 9000.0)}),
            ({("m", "OK"): 30}, {}),
        ),
        # the latency sum went down while every bucket grew
        (
            ({("m", "OK"): 2}, {("m", "Predict", "GRPC"): ({9: 2}, 3900.0)}),
            ({("m", "OK"): 3}, {("m", "Predict", "GRPC"): ({9: 3}, 3400.0)}),
        ),
        # a count moved to a lower bucket: impossible without a restart
        (
            ({("m", "OK"): 10}, {("m", "Predict", "GRPC"): ({9: 2, 10: 8}, 20000.0)}),
            ({("m", "OK"): 12}, {("m", "Predict", "GRPC"): ({9: 5, 10: 7}, 21000.0)}),
        ),
    ],
)
def test_any_series_going_down_is_a_reset(prev: tuple, cur: tuple) -> None:  # type: ignore[type-arg]
    got = interval(snapshot(official_page(*prev)), snapshot(official_page(*cur)), 1.0)["m"]
    current = snapshot(official_page(*cur)).models["m"]
    assert got.reset
    assert got.statuses == current.requests and got.latency == current.latency


def test_changed_bucket_bounds_are_a_reset() -> None:
    prev = (
        "# TYPE :tensorflow:serving:request_latency histogram\n"
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",'
        'entrypoint="GRPC",le="10"} 1\n'
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",'
        'entrypoint="GRPC",le="+Inf"} 1\n'
        ':tensorflow:serving:request_latency_sum{model_name="m",API="Predict",'
        'entrypoint="GRPC"} 5\n'
    )
    cur = official_page({}, {("m", "Predict", "GRPC"): ({9: 3}, 3000.0)})
    got = interval(snapshot(prev), snapshot(cur), 1.0)["m"]
    assert got.reset and got.latency.count == 3


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan, math.inf])
def test_interval_needs_a_positive_duration(seconds: float) -> None:
    snap = snapshot(FIXTURE.read_text())
    with pytest.raises(TelemetryError, match="seconds"):
        interval(snap, snap, seconds)


def test_the_fixture_heartbeat_is_small() -> None:
    prev = snapshot("")
    got = interval(prev, snapshot(FIXTURE.read_text()), 10.0)
    text = json.dumps({m: mi.to_json() for m, mi in got.items()}, separators=(",", ":"))
    assert len(text) < 1200
    ranker = ModelInterval.from_json(json.loads(text)["ranker"])
    assert ranker.requests == 1009 and ranker.latency.count == 998
    assert ranker.p99_ms == got["ranker"].p99_ms


STATUSES = st.sampled_from(["OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"])


@st.composite
def pages(draw: st.DrawFn) -> str:
    models = st.sampled_from(["a", "b", 'q"\\'])
    requests = draw(st.dictionaries(st.tuples(models, STATUSES), st.integers(0, 10**6), max_size=6))
    latency = draw(
        st.dictionaries(
            st.tuples(
                models,
                st.sampled_from(["Predict", "Classify", "predict"]),
                st.sampled_from(["GRPC", "REST"]),
            ),
            st.tuples(
                st.dictionaries(st.integers(0, 33), st.integers(0, 500), max_size=5),
                st.integers(0, 10**7).map(float),
            ),
            max_size=4,
        )
    )
    return official_page(requests, latency)


@settings(max_examples=50)
@given(pages())
def test_interval_of_a_snapshot_with_itself_is_zero(page: str) -> None:
    snap = snapshot(page)
    assert snap.bad_lines == 0 and snap.ignored_samples == 0
    for mi in interval(snap, snap, 1.0).values():
        assert mi.requests == 0 and mi.latency.count == 0 and mi.latency.sum == 0
        assert not mi.reset


@settings(max_examples=50)
@given(pages(), pages())
def test_intervals_are_never_negative_nor_more_than_the_current_totals(p1: str, p2: str) -> None:
    prev, cur = snapshot(p1), snapshot(p2)
    for model, mi in interval(prev, cur, 2.0).items():
        now = cur.models[model]
        assert all(n > 0 for n in mi.statuses.values())
        assert mi.requests <= sum(now.requests.values())
        assert all(n >= 0 for n in mi.latency.counts())
        assert mi.latency.count <= now.latency.count
        assert 0 <= mi.latency.sum <= now.latency.sum
