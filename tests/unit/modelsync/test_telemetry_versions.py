"""modelsync's per-version extension: the compatible server's page (official metrics unchanged,
the extension beside them), its snapshots and intervals; a beat's figures (round trip, merges)
and the outbox."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelsync.telemetry import (
    LATENCY_BOUNDS_US,
    BeatModel,
    Histogram,
    ModelInterval,
    Outbox,
    TelemetryError,
    parse,
    snapshot,
    version_intervals,
    version_snapshots,
)
from tfserving.metrics import ServerMetrics

BOUNDS = (*LATENCY_BOUNDS_US, float("inf"))


def page(metrics: ServerMetrics) -> str:
    return metrics.render_official()


def served(metrics: ServerMetrics, calls: list[tuple[str, str, int | None, int]]) -> None:
    """(api, status, version, latency µs) requests of model "m" over gRPC."""
    for api, status, version, micros in calls:
        metrics.request(api, "GRPC", "m", status, micros, version)


def test_the_official_metrics_stay_as_they_were_and_the_extension_comes_after() -> None:
    plain, extended = ServerMetrics(), ServerMetrics()
    calls = [("Predict", "OK", 1, 900), ("Predict", "INVALID_ARGUMENT", 2, 50)]
    served(plain, [(a, s, None, m) for a, s, _v, m in calls])
    served(extended, calls)
    official, rest = page(extended).split("# TYPE :modelsync:serving:request_count counter\n")
    assert official == page(plain).split("# TYPE :modelsync:serving:request_count")[0]
    assert 'model_name="m",version="2",status="INVALID_ARGUMENT"} 1' in rest
    assert (
        ':modelsync:serving:request_latency_bucket{model_name="m",version="1",le="+Inf"} 1' in rest
    )
    assert snapshot(page(extended)) == snapshot(page(plain))  # the official reading is the same


def test_version_snapshots_and_intervals() -> None:
    m = ServerMetrics()
    before = version_snapshots(parse(page(m)))[0]
    assert before == {}  # the extension is there (its TYPE line): known to be empty
    served(m, [("Predict", "OK", 1, 900)] * 3 + [("Predict", "OK", 2, 90_000)])
    served(m, [("Predict", "INVALID_ARGUMENT", 2, 10), ("Predict", "NOT_FOUND", None, 10)])
    served(m, [("", "OK", 1, 10)])  # a REST GET: not an inference request, not per version
    after, ignored = version_snapshots(parse(page(m)))
    assert ignored == 0 and after is not None
    per = version_intervals(before, after, 5.0)
    assert per is not None
    v1, v2 = per["m"][1], per["m"][2]
    assert dict(v1.statuses) == {"OK": 3} and v1.latency.count == 3
    assert dict(v2.statuses) == {"OK": 1, "INVALID_ARGUMENT": 1}
    assert (v2.p50_ms or 0) > 30 > (v1.p99_ms or 0)
    assert version_intervals(after, after, 5.0) == {}  # nothing happened
    assert version_intervals(None, after, 5.0) is None  # a first page: nothing known


def test_a_page_without_the_extension_tells_nothing_per_version() -> None:
    official = ServerMetrics().render_official().split("# TYPE :modelsync")[0]
    assert version_snapshots(parse(official)) == (None, 0)
    assert version_intervals({}, None, 5.0) is None


def test_a_counter_that_went_down_is_a_reset_per_version() -> None:
    m = ServerMetrics()
    served(m, [("Predict", "OK", 1, 900)] * 5)
    high = version_snapshots(parse(page(m)))[0]
    fresh = ServerMetrics()
    served(fresh, [("Predict", "OK", 1, 900)] * 2)
    low = version_snapshots(parse(page(fresh)))[0]
    per = version_intervals(high, low, 5.0)
    assert per is not None and per["m"][1].requests == 2 and per["m"][1].reset


def test_unusable_extension_samples_are_counted_not_fatal() -> None:
    text = (
        "# TYPE :modelsync:serving:request_count counter\n"
        ':modelsync:serving:request_count{model_name="m",version="x",status="OK"} 3\n'
        ':modelsync:serving:request_count{model_name="m",version="0",status="OK"} 3\n'
        ':modelsync:serving:request_count{model_name="m",version="4",status="OK"} 2\n'
    )
    got, ignored = version_snapshots(parse(text))
    assert ignored == 2 and got is not None and dict(got["m"][4].requests) == {"OK": 2}


# --- a beat's figures ---------------------------------------------------------------------------
def interval(ok: int, bad: int, bucket: int = 10) -> ModelInterval:
    cumulative = tuple(ok if i >= bucket else 0 for i in range(len(BOUNDS)))
    return ModelInterval(
        2.0, {"OK": ok, "INVALID_ARGUMENT": bad}, Histogram(BOUNDS, cumulative, ok * 100.0)
    )


intervals = st.builds(interval, st.integers(0, 500), st.integers(0, 50), st.integers(0, 33))
beats = st.builds(
    BeatModel,
    intervals,
    st.frozensets(st.integers(1, 9), max_size=3),
    st.none() | st.dictionaries(st.integers(1, 9), intervals, max_size=3),
)


@given(beats)
def test_a_beat_round_trips(fig: BeatModel) -> None:
    back = BeatModel.from_json(fig.to_json())
    assert back.to_json() == fig.to_json()
    assert (back.by_version is None) == (fig.by_version is None)


@given(beats, beats)
def test_merging_beats_adds_up_and_unknown_stays_unknown(a: BeatModel, b: BeatModel) -> None:
    both = a.merge(b)
    assert both.interval.requests == a.interval.requests + b.interval.requests
    assert both.versions == a.versions | b.versions
    if a.by_version is None or b.by_version is None:
        assert both.by_version is None  # part of the time without versions: none known
    else:
        assert both.by_version is not None
        for v, iv in both.by_version.items():
            parts = [x.by_version[v].requests for x in (a, b) if x.by_version and v in x.by_version]
            assert iv.requests == sum(parts)


def test_bad_per_version_figures_are_a_telemetry_error() -> None:
    good = interval(1, 0).to_json()
    for by_version in ({"x": good}, {"0": good}, {"3": {"seconds": 1}}, [good]):
        try:
            BeatModel.from_json({**good, "versions": [], "by_version": by_version})
        except TelemetryError as exc:
            assert "by_version" in str(exc)
        else:
            raise AssertionError(by_version)


def test_the_outbox_keeps_what_the_master_did_not_get_and_never_sends_it_twice() -> None:
    box = Outbox()
    box.put(0.0, 1.0, {"m": BeatModel(interval(5, 0), frozenset({1}), {1: interval(5, 0)})})
    first = box.take()
    assert first is not None and first["models"]["m"]["by_version"]["1"]["requests"] == 5
    box.settle(False)  # its fate unknown: it goes out again unchanged, same batch number
    box.put(1.0, 2.0, {"m": BeatModel(interval(2, 1), frozenset({1}), {1: interval(2, 1)})})
    again = box.take()
    assert again == first and (again["boot"], again["seq"]) == (box.boot, 1)
    again = box.take()  # no settle at all (the beat raised): still the same
    assert again == first
    box.settle(True)
    box.put(2.0, 3.0, {"m": BeatModel(interval(1, 0), frozenset({1}), {1: interval(1, 0)})})
    second = box.take()  # what came while the first waited, merged, as the next batch
    assert second is not None and second["seq"] == 2 and second["boot"] == box.boot
    assert second["models"]["m"]["requests"] == 4  # 2 + 1 errors, then 1
    assert (second["start"], second["end"]) == (1.0, 3.0)
    box.settle(True)
    assert box.take() is None


@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=30))
def test_whatever_the_master_acknowledges_every_request_is_delivered_once(
    rounds: list[tuple[int, bool]],
) -> None:
    """The master counts each (boot, seq) once: over any run of beats lost before or after the
    master got them, every request is counted exactly once when it answers again."""
    box, counted, seen, put = Outbox(), 0, set(), 0
    for i, (requests, delivered) in enumerate(rounds):
        if requests:
            box.put(float(i), i + 1.0, {"m": BeatModel(interval(requests, 0), frozenset({1}))})
            put += requests
        doc = box.take()
        if doc is not None and (doc["boot"], doc["seq"]) not in seen:  # the master's rule
            seen.add((doc["boot"], doc["seq"]))
            counted += doc["models"]["m"]["requests"]
        box.settle(delivered)  # not delivered: the answer was lost, the master has it anyway
    for _ in range(3):  # then the master answers again: what waits is delivered
        doc = box.take()
        if doc is not None and (doc["boot"], doc["seq"]) not in seen:
            seen.add((doc["boot"], doc["seq"]))
            counted += doc["models"]["m"]["requests"]
        box.settle(True)
    assert box.take() is None and counted == put
