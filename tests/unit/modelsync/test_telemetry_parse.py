"""modelsync.telemetry's parser and snapshots against pages in the official TF Serving
exporter's format: the fixture page, the text format, unusable samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.telemetry import (
    EMPTY_HISTOGRAM,
    INF,
    LATENCY_BOUNDS_US,
    parse,
    quantile,
    quantile_ms,
    snapshot,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tfserving_prometheus.txt"
LE = [float("%.6g" % b) for b in LATENCY_BOUNDS_US]  # noqa: UP031 - the bounds as printed


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


# --- the fixture: a page as the official server prints it ---------------------------------


def test_fixture_parses_without_a_bad_line() -> None:
    page = parse(FIXTURE.read_text())
    assert page.bad_lines == 0 and page.first_bad_line is None
    assert page.types[":tensorflow:serving:request_count"] == "counter"
    assert page.types[":tensorflow:serving:request_latency"] == "histogram"
    assert page.types[":tensorflow:serving:batching_session:queuing_latency"] == "histogram"
    assert page.helps == {}
    runs = [s for s in page.samples if s.name == ":tensorflow:core:graph_runs"]
    assert len(runs) == 1 and runs[0].labels == () and runs[0].value == 1258
    odd = [s for s in page.samples if s.label("model_name") == 'we"ird\\name']
    assert len(odd) == 1 and odd[0].label("status") == "NOT_FOUND"


def test_fixture_snapshot_exact_figures() -> None:
    snap = snapshot(FIXTURE.read_bytes())
    assert snap.bad_lines == 0 and snap.ignored_samples == 0
    assert set(snap.models) == {"", "embedder", "ranker", 'we"ird\\name'}
    ranker, embedder = snap.models["ranker"], snap.models["embedder"]
    assert ranker.requests == {"OK": 1000, "INVALID_ARGUMENT": 7, "NOT_FOUND": 2}
    assert embedder.requests == {"OK": 250, "DEADLINE_EXCEEDED": 3, "RESOURCE_EXHAUSTED": 1}
    assert snap.models[""].requests == {"INVALID_ARGUMENT": 4}
    assert snap.models[""].latency == EMPTY_HISTOGRAM
    # only inference APIs: the REST GETs (API="") of ranker are not in its latency
    assert set(ranker.latency_series) == {
        (("API", "Predict"), ("entrypoint", "GRPC")),
        (("API", "predict"), ("entrypoint", "REST")),
    }
    lat = ranker.latency
    assert lat.bounds == (*LE, INF)
    assert lat.count == 998 and lat.sum == 2345680 + 17650  # _sum has 6 significant digits
    assert lat.at(612.22) == 0 and lat.at(1102) == 100 and lat.at(1983.59) == 605
    assert lat.at(3570.47) == 908 and lat.at(6426.84) == 988 and lat.at(20823) == 997
    assert lat.at(1.27482e6) == 998
    assert dict(zip(lat.bounds, lat.counts(), strict=True)) == {
        **dict.fromkeys((*LE, INF), 0),
        1102: 100,
        1983.59: 505,
        3570.47: 303,
        6426.84: 80,
        20823: 9,
        1.27482e6: 1,
    }
    emb = embedder.latency
    assert emb.count == 250 and emb.sum == 116321
    assert [emb.at(b) for b in (104.976, 188.957, 340.122, 612.22, 1102)] == [0, 10, 70, 220, 250]


def test_fixture_quantiles_are_the_hand_computed_ones() -> None:
    snap = snapshot(FIXTURE.read_text())
    lat = snap.models["ranker"].latency
    # p50: rank 499 in (1102, 1983.59] holding 505, 100 below; p90: rank 898.2 in
    # (1983.59, 3570.47] holding 303, 605 below; p99: rank 988.02 in (11568.3, 20823], 9, 988 below
    assert quantile(0.5, lat) == pytest.approx(1102 + (1983.59 - 1102) * 399 / 505)
    assert quantile(0.9, lat) == pytest.approx(1983.59 + (3570.47 - 1983.59) * 293.2 / 303)
    assert quantile(0.99, lat) == pytest.approx(11568.3 + (20823 - 11568.3) * 0.02 / 9)
    assert quantile_ms(0.5, lat) == pytest.approx((1102 + 881.59 * 399 / 505) / 1000)
    emb = snap.models["embedder"].latency
    assert quantile(0.5, emb) == pytest.approx(340.122 + (612.22 - 340.122) * 55 / 150)
    assert quantile(0.99, emb) == pytest.approx(612.22 + (1102 - 612.22) * 27.5 / 30)


def test_snapshot_of_selected_models_only() -> None:
    snap = snapshot(FIXTURE.read_text(), models={"ranker", "absent"})
    assert set(snap.models) == {"ranker"}
    assert snap.models["ranker"].latency.count == 998


def test_unrelated_metrics_and_runtime_latency_are_ignored() -> None:
    text = FIXTURE.read_text()
    only_ours = "\n".join(
        line for line in text.splitlines() if "request_count" in line or "request_latency" in line
    )
    assert snapshot(text).models == snapshot(only_ours).models


# --- the parser -----------------------------------------------------------------------------


def test_parser_values_labels_escapes_and_timestamps() -> None:
    page = parse(
        '# HELP x A "help"\\nline two \\\\ end\n'
        "# TYPE x gauge\n"
        "# just a comment\n"
        '  x{a="q\\"uote",b="back\\\\slash",c="new\\nline",} 1.5e3 1700000000000\r\n'
        'x { a = "sp" } -Inf\n'
        "y +Inf\n"
        "y NaN -12\n"
        "z{} 42\n"
        "\n"
    )
    assert page.bad_lines == 0
    assert page.helps == {"x": 'A "help"\nline two \\ end'} and page.types == {"x": "gauge"}
    first, second, third, fourth, fifth = page.samples
    assert first.labels == (("a", 'q"uote'), ("b", "back\\slash"), ("c", "new\nline"))
    assert first.value == 1500.0 and first.timestamp_ms == 1700000000000
    assert second.labels == (("a", "sp"),) and second.value == -INF
    assert third.value == INF and math.isnan(fourth.value) and fourth.timestamp_ms == -12
    assert fifth.name == "z" and fifth.labels == () and fifth.value == 42


@pytest.mark.parametrize(
    "line",
    [
        'foo{l="x} 1',
        "foo{l=x} 1",
        "foo 1 2 3",
        "foo abc",
        'foo{l="a",l="b"} 1',
        "foo 1_000",
        "# TYPE foo bogus",
        'foo{l="\\q"} 1',
        '{l="a"} 1',
        "foo+1 2",
        "foo",
        'foo{l="a" m="b"} 1',
        "foo 1 1.5",
        'foo{1l="a"} 1',
        "foo 0x10",
        "# TYPE 1foo counter",
        'foo{l="a"',
    ],
)
def test_bad_lines_are_skipped_and_counted(line: str) -> None:
    page = parse(f"good 1\n{line}\nalso_good 2\n")
    assert page.bad_lines == 1 and page.first_bad_line == 2
    assert [s.name for s in page.samples] == ["good", "also_good"]


def test_prometheus_client_output_parses() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    Counter("c", "a counter", ["l"], registry=registry).labels('x"\\\n').inc(3)
    Histogram("h", "a histogram", registry=registry, buckets=(1, 2)).observe(1.5)
    page = parse(generate_latest(registry))
    assert page.bad_lines == 0
    values = {(s.name, s.labels): s.value for s in page.samples}
    assert values[("c_total", (("l", 'x"\\\n'),))] == 3.0
    assert values[("h_bucket", (("le", "2.0"),))] == 1.0
    assert values[("h_bucket", (("le", "+Inf"),))] == 1.0


@given(st.text())
def test_parse_and_snapshot_never_raise(text: str) -> None:
    page = parse(text)
    assert page.bad_lines >= 0
    snapshot(page)


@given(st.text(max_size=30))
def test_any_label_value_survives_escaping(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    page = parse(f'm{{l="{escaped}"}} 1\n')
    assert page.bad_lines == 0 and page.samples[0].labels == (("l", value),)


def test_unusable_official_samples_are_counted_not_fatal() -> None:
    text = official_page({("m", "OK"): 3}, {("m", "Predict", "GRPC"): ({9: 3}, 3000.0)})
    broken = (
        text + ':tensorflow:serving:request_count{status="OK"} 1\n'
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 9\n'
        ':tensorflow:serving:request_count{model_name="n",status="OK"} 1.5\n'
        ':tensorflow:serving:request_latency_sum{model_name="k",API="Predict"} 1\n'
    )
    snap = snapshot(broken)
    assert snap.ignored_samples == 4  # no model, duplicate, not an integer, series without +Inf
    assert snap.models["m"].requests == {"OK": 3} and snap.models["m"].latency.count == 3
