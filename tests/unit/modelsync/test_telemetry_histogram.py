"""modelsync.telemetry's histograms: quantiles, merging, validation, the heartbeat JSON form
of an interval, and their properties."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.telemetry import (
    EMPTY_HISTOGRAM,
    INF,
    LATENCY_BOUNDS_US,
    Histogram,
    ModelInterval,
    TelemetryError,
    merge_buckets,
    quantile,
)

# --- quantiles ------------------------------------------------------------------------------


def test_quantile_edge_cases() -> None:
    assert quantile(0.5, EMPTY_HISTOGRAM) is None
    assert quantile(0.5, Histogram((10.0, INF), (0, 0))) is None
    assert quantile(0.5, Histogram((INF,), (5,))) is None  # no finite bound to answer with
    assert quantile(0.5, [(10.0, 3.0)]) is None  # no +Inf bucket
    assert quantile(0.5, []) is None
    everything_above = Histogram((10.0, 20.0, INF), (0, 0, 4))
    assert quantile(0.5, everything_above) == 20.0  # the highest finite bound
    assert quantile(0.5, Histogram((10.0, INF), (4, 4))) == 5.0  # lowest bucket from 0
    assert quantile(1.0, Histogram((10.0, 20.0, INF), (2, 4, 4))) == 20.0
    assert quantile(0.0, Histogram((10.0, 20.0, 40.0, INF), (0, 0, 3, 3))) == 20.0
    assert quantile(0.5, Histogram((-5.0, 10.0, INF), (4, 4, 4))) == -5.0
    # unsorted pairs, a repeated bound summed (as Prometheus does), a dip made monotone
    assert quantile(0.5, [(INF, 4.0), (20.0, 4.0), (10.0, 1.0), (10.0, 1.0)]) == 10.0
    assert quantile(0.75, [(10.0, 2.0), (20.0, 1.0), (40.0, 4.0), (INF, 4.0)]) == 30.0
    assert quantile(0.5, [(10.0, INF), (INF, INF)]) is None
    for q in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match="q must be"):
            quantile(q, everything_above)


def test_quantile_of_merged_nodes_is_not_the_average_of_their_quantiles() -> None:
    fast = Histogram((1000.0, 2000.0, 4000.0, INF), (99, 100, 100, 100), 50000.0)
    slow = Histogram((1000.0, 2000.0, 4000.0, INF), (0, 0, 100, 100), 300000.0)
    merged = merge_buckets([fast, slow])
    assert merged.cumulative == (99, 100, 200, 200)
    # rank 198 of 200 falls in (2000, 4000], which holds 100 with 100 below
    assert quantile(0.99, merged) == pytest.approx(2000 + 2000 * 98 / 100)
    assert quantile(0.99, fast) == pytest.approx(1000 * 99 / 99)
    assert quantile(0.99, slow) == pytest.approx(2000 + 2000 * 99 / 100)
    # averaging the nodes' p99s would say 2490 where the fleet's p99 is 3960


# --- merging --------------------------------------------------------------------------------


def test_merge_on_the_union_of_different_bounds() -> None:
    a = Histogram((10.0, 20.0, INF), (1, 3, 4), 40.0)
    b = Histogram((15.0, INF), (2, 5), 60.0)
    merged = merge_buckets([a, b])
    assert merged.bounds == (10.0, 15.0, 20.0, INF)
    assert merged.cumulative == (1, 3, 5, 9) and merged.sum == 100.0
    for bound in merged.bounds:
        assert merged.at(bound) == a.at(bound) + b.at(bound)
    assert merge_buckets([]) == EMPTY_HISTOGRAM
    assert merge_buckets([a]) == a


def test_histogram_validation() -> None:
    for bad in [
        ((10.0,), (1,)),
        ((10.0, INF), (3, 2)),
        ((20.0, 10.0, INF), (0, 0, 0)),
        ((10.0, INF), (1,)),
        ((math.nan, INF), (0, 0)),
        ((10.0, INF), (-1, 0)),
        ((), ()),
    ]:
        with pytest.raises(TelemetryError):
            Histogram(*bad)  # type: ignore[arg-type]
    with pytest.raises(TelemetryError, match="sum"):
        Histogram((INF,), (0,), math.nan)


# --- the heartbeat form ---------------------------------------------------------------------


def test_to_json_keeps_only_non_empty_buckets_and_their_lower_edges() -> None:
    counts = [0] * 34
    counts[9], counts[10], counts[13] = 5, 3, 1
    latency = Histogram((*LATENCY_BOUNDS_US, INF), tuple(_cumsum(counts)), 25000.0)
    mi = ModelInterval(5.0, {"OK": 9, "NOT_FOUND": 2, "UNAVAILABLE": 0}, latency)
    doc = mi.to_json()
    assert doc == {
        "seconds": 5.0,
        "requests": 11,
        "errors": {"NOT_FOUND": 2},
        "latency_us": {
            "le": [LATENCY_BOUNDS_US[i] for i in (8, 9, 10, 12, 13)],
            "n": [0, 5, 3, 0, 1],
            "sum": 25000.0,
        },
        "reset": False,
    }
    back = ModelInterval.from_json(json.loads(json.dumps(doc)))
    assert back == replace(mi, latency=latency.compact())
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert back.quantile_ms(q) == mi.quantile_ms(q)
    everything_above = Histogram((*LATENCY_BOUNDS_US, INF), (0,) * 33 + (2,), 5e9)
    doc = replace(mi, latency=everything_above).to_json()
    assert doc["latency_us"] == {"le": [LATENCY_BOUNDS_US[-1], "+Inf"], "n": [0, 2], "sum": 5e9}


GOOD = {
    "seconds": 5,
    "requests": 3,
    "errors": {"NOT_FOUND": 1},
    "latency_us": {"le": [10, 18, "+Inf"], "n": [0, 1, 1], "sum": 30.5},
    "reset": False,
}


def _with(path: str, value: object) -> dict[str, object]:
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc  # type: ignore[no-any-return]


_DELETE = object()


def test_from_json_accepts_the_good_document() -> None:
    mi = ModelInterval.from_json(GOOD)
    assert mi.statuses == {"OK": 2, "NOT_FOUND": 1}
    assert mi.latency == Histogram((10.0, 18.0, INF), (0, 1, 2), 30.5)


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ("nope", "expected a JSON object"),
        ([], "expected a JSON object"),
        (None, "expected a JSON object"),
        (_with("extra", 1), "unknown keys"),
        (_with("seconds", _DELETE), "missing keys"),
        (_with("seconds", 0), "seconds"),
        (_with("seconds", True), "seconds"),
        (_with("seconds", "5"), "seconds"),
        (_with("seconds", 10**400), "seconds"),
        (_with("requests", -1), "requests"),
        (_with("requests", 1.5), "requests"),
        (_with("requests", 0), "fewer than the errors"),
        (_with("errors", []), "errors"),
        (_with("errors", {"OK": 1}), "bad status code"),
        (_with("errors", {"bad code!": 1}), "bad status code"),
        (_with("errors", {"NOT_FOUND": -1}), "errors.NOT_FOUND"),
        (_with("errors", {f"E{i}": 0 for i in range(65)}), "more than"),
        (_with("reset", "no"), "reset"),
        (_with("latency_us", None), "latency_us"),
        (_with("latency_us.le", [10, "+Inf"]), "same length"),
        (_with("latency_us.le", [18, 10, "+Inf"]), "strictly increasing"),
        (_with("latency_us.le", [10, "+Inf", 18]), "latency_us"),
        (_with("latency_us.le", [10, "Inf", "+Inf"]), "latency_us.le"),
        (_with("latency_us.le", [10, None, "+Inf"]), "latency_us.le"),
        (_with("latency_us.le", "10"), "expected a list"),
        (_with("latency_us.n", [0, -1, 1]), "latency_us.n"),
        (_with("latency_us.n", [0, True, 1]), "latency_us.n"),
        (_with("latency_us.n", [0, 2**63, 2**63]), "latency_us"),
        (_with("latency_us.sum", "1"), "latency_us.sum"),
        (_with("latency_us.sum", _DELETE), "missing keys"),
        (_with("latency_us.le", list(range(300))), "more than"),
    ],
)
def test_from_json_rejects_garbage_with_a_clear_message(doc: object, where: str) -> None:
    with pytest.raises(TelemetryError) as info:
        ModelInterval.from_json(doc)
    assert where in str(info.value)
    assert isinstance(info.value, ValueError)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        JSONISH,
        st.fixed_dictionaries(
            {
                "seconds": JSONISH,
                "requests": JSONISH,
                "errors": JSONISH,
                "latency_us": st.one_of(
                    JSONISH, st.fixed_dictionaries({"le": JSONISH, "n": JSONISH, "sum": JSONISH})
                ),
                "reset": JSONISH,
            }
        ),
    )
)
def test_from_json_of_anything_raises_only_telemetry_error(doc: object) -> None:
    try:
        mi = ModelInterval.from_json(doc)
    except TelemetryError:
        return
    assert ModelInterval.from_json(mi.to_json()) == replace(mi, latency=mi.latency.compact())


# --- properties -----------------------------------------------------------------------------


def _cumsum(counts: list[int]) -> list[int]:
    out, total = [], 0
    for n in counts:
        total += n
        out.append(total)
    return out


@st.composite
def histograms(draw: st.DrawFn, official: bool = False) -> Histogram:
    if official:
        bounds = list(LATENCY_BOUNDS_US)
    else:
        bounds = sorted(draw(st.sets(st.integers(-5, 10**6), max_size=10)))
    counts = draw(
        st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    return Histogram(
        (*map(float, bounds), INF), tuple(_cumsum(counts)), float(draw(st.integers(0, 10**9)))
    )


QS = st.floats(0.0, 1.0)


@given(histograms(), QS, QS)
def test_quantile_is_monotone_in_q_and_within_the_bounds(
    h: Histogram, q1: float, q2: float
) -> None:
    lo, hi = sorted((q1, q2))
    a, b = quantile(lo, h), quantile(hi, h)
    if h.count == 0 or len(h.bounds) < 2:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert a <= b + 1e-9 * max(1.0, abs(b))
    assert min(0.0, h.bounds[0]) <= a and b <= h.bounds[-2]


@given(st.lists(histograms(), min_size=1, max_size=4), QS)
def test_compact_changes_no_quantile_and_no_count_at_any_bound(
    hs: list[Histogram], q: float
) -> None:
    for h in hs:
        assert h.compact().compact() == h.compact()
        assert quantile(q, h.compact()) == quantile(q, h)
        assert all(h.compact().at(b) == h.at(b) for b in h.bounds)
    merged, merged_compact = merge_buckets(hs), merge_buckets(h.compact() for h in hs)
    assert all(merged_compact.at(b) == merged.at(b) for b in merged.bounds)


@given(st.lists(histograms(), min_size=2, max_size=5))
def test_a_merge_on_different_grids_counts_every_input_at_every_bound(hs: list[Histogram]) -> None:
    merged = merge_buckets(hs)
    assert merged.bounds == tuple(sorted({b for h in hs for b in h.bounds}))
    assert all(merged.at(b) == sum(h.at(b) for h in hs) for b in merged.bounds)
    assert merged.count == sum(h.count for h in hs)


@given(st.lists(histograms(official=True), min_size=1, max_size=4), QS)
def test_nodes_compact_heartbeats_merge_to_the_same_quantiles(
    hs: list[Histogram], q: float
) -> None:
    # every node has the official bounds; each heartbeat drops different empty buckets
    merged = merge_buckets(hs)
    assert merge_buckets(h.compact() for h in hs).compact() == merged.compact()
    assert quantile(q, merge_buckets(h.compact() for h in hs)) == quantile(q, merged)


def test_merging_different_bounds_never_claims_more_than_known_below_a_bound() -> None:
    # one observation in (0, 2] of a; b adds a bound at 1: a is known to hold 0 at 1, so the
    # merged histogram puts the observation in (1, 2] -- conservative, exact at every bound
    a = Histogram((0.0, 2.0, INF), (0, 1, 1))
    b = Histogram((1.0, INF), (0, 0))
    merged = merge_buckets([a, b])
    assert merged.buckets == ((0.0, 0), (1.0, 0), (2.0, 1), (INF, 1))
    assert quantile(0.5, a) == 1.0 and quantile(0.5, merged) == 1.5


@given(histograms(), histograms(), histograms())
def test_merge_is_associative_and_commutative(a: Histogram, b: Histogram, c: Histogram) -> None:
    assert merge_buckets([a, b]) == merge_buckets([b, a])
    assert merge_buckets([merge_buckets([a, b]), c]) == merge_buckets([a, merge_buckets([b, c])])
    assert merge_buckets([a, b, c]) == merge_buckets([merge_buckets([a, b]), c])
    assert merge_buckets([a, EMPTY_HISTOGRAM]) == a
    merged = merge_buckets([a, b, c])
    assert merged.count == a.count + b.count + c.count
    assert all(merged.at(x) == a.at(x) + b.at(x) + c.at(x) for x in merged.bounds)


STATUSES = st.sampled_from(["OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"])


@st.composite
def intervals(draw: st.DrawFn) -> ModelInterval:
    return ModelInterval(
        draw(st.floats(0.001, 1e6)),
        draw(st.dictionaries(STATUSES, st.integers(0, 10**6))),
        draw(st.one_of(histograms(), histograms(official=True))),
        draw(st.booleans()),
    )


@given(intervals())
def test_to_json_from_json_round_trip(mi: ModelInterval) -> None:
    back = ModelInterval.from_json(json.loads(json.dumps(mi.to_json())))
    assert back == replace(mi, latency=mi.latency.compact())
    assert back.p99_ms == mi.p99_ms and back.requests == mi.requests
    assert len(back.latency.bounds) <= len(mi.latency.bounds)


ITEMS = (
    st.integers(-5, 2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.just("+Inf")
    | st.none()
)


@given(st.lists(ITEMS, max_size=12))
def test_the_fast_checks_of_bounds_and_counts_agree_with_the_item_by_item_ones(
    items: list[object],
) -> None:
    """A heartbeat's buckets are checked in one pass when every item is plain; whatever the
    items, the answer is the item-by-item check's (its value, or its error)."""
    from modelsync.telemetry.intervals import _json_bound, _json_bounds, _json_count, _json_counts

    for fast, one in ((_json_bounds, _json_bound), (_json_counts, _json_count)):
        try:
            expected: object = [one(x, f"latency_us.x[{i}]") for i, x in enumerate(items)]
        except TelemetryError:
            expected = TelemetryError
        try:
            got: object = fast(items)
        except TelemetryError:
            got = TelemetryError
        assert got == expected, (fast.__name__, items)
