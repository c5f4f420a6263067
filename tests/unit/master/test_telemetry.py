"""The master's telemetry: heartbeats carry per-model figures; the API merges them."""

from __future__ import annotations

import time

from modelsync.nodeauth import node_token
from modelsync.telemetry import LATENCY_BOUNDS_US, Histogram, ModelInterval, quantile_ms

READ, NODE = "read-token-0123456789", "node-token-0123456789"


def interval(ok: int, errors: int, latency_us: float) -> ModelInterval:
    """``ok`` requests all in the bucket of ``latency_us``, ``errors`` INVALID_ARGUMENT."""
    bounds = (*LATENCY_BOUNDS_US, float("inf"))
    index = next(i for i, b in enumerate(bounds) if latency_us < b)
    cumulative = tuple(ok if i >= index else 0 for i in range(len(bounds)))
    return ModelInterval(
        5.0, {"OK": ok, "INVALID_ARGUMENT": errors}, Histogram(bounds, cumulative, ok * latency_us)
    )


def beat(api, node: str, figures: dict[str, tuple[ModelInterval, list[int]]], **batch) -> tuple:  # type: ignore[no-untyped-def]
    doc = {
        "node_id": node,
        "role": "config_manager",
        "status": {"available": {m: vs for m, (_iv, vs) in figures.items()}},
        "telemetry": {
            "start": time.time() - 5,
            "end": time.time(),
            "models": {m: {**iv.to_json(), "versions": vs} for m, (iv, vs) in figures.items()},
            **batch,
        },
    }
    return api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, node), doc)


def test_series_merge_nodes_and_versions(api) -> None:  # type: ignore[no-untyped-def]
    fast, slow = interval(90, 10, 2_000), interval(10, 0, 50_000)
    assert beat(api, "a", {"m": (fast, [1])})[0] == 200
    assert beat(api, "b", {"m": (slow, [2])})[0] == 200
    assert beat(api, "c", {"m": (fast, [1, 2])})[0] == 200  # two versions: not attributed
    code, doc = api.call("GET", "/v1/models/m/metrics?since=10m", READ)
    assert code == 200, doc
    total = doc["total"]
    assert total["requests"] == 210 and total["errors"] == 20
    assert total["errors_by_code"] == {"INVALID_ARGUMENT": 20}
    assert abs(total["error_rate"] - 20 / 210) < 1e-6
    # p99 over nodes from the merged buckets: 10 of 190 OK requests are slow (5 %)
    merged = [fast.latency, slow.latency, fast.latency]
    from modelsync.telemetry import merge_buckets

    assert total["p99_ms"] == round(quantile_ms(0.99, merge_buckets(merged)) or 0, 3)
    assert total["p50_ms"] < 3 < 30 < total["p99_ms"]
    assert set(total["by_version"]) == {"1", "2"}
    assert total["by_version"]["1"]["requests"] == 100
    assert total["by_version"]["2"]["requests"] == 10 and total["by_version"]["2"]["errors"] == 0
    assert sum(p["requests"] for p in doc["series"]) == 210
    assert doc["step"] == 60 and all(p["t"] % 60 == 0 for p in doc["series"])
    # per node
    node = api.call("GET", "/v1/models/m/metrics?since=10m&node=b&step=5", READ)[1]
    assert node["total"]["requests"] == 10 and node["total"]["by_version"].keys() == {"2"}
    # the cluster view's last minute, and the sparklines
    cluster = api.call("GET", "/v1/cluster", READ)[1]["models"]["m"]["last_minute"]
    assert cluster["requests"] == 210 and cluster["rps"] > 0
    spark = api.call("GET", "/v1/metrics/sparklines", READ)[1]
    assert sum(spark["models"]["m"]) == 210 and len(spark["models"]["m"]) == len(spark["minutes"])


def test_a_batch_repeated_after_a_lost_answer_counts_once(api) -> None:  # type: ignore[no-untyped-def]
    """A sender repeats a batch (same boot and seq) when it did not get the answer: the master
    counts it once, whether the repeat comes before or after a flush; a new batch, a new boot
    (the sender restarted) and an unnumbered beat count."""
    iv = interval(10, 1, 2_000)
    batches = [
        {"boot": "aa01", "seq": 1},
        {"boot": "aa01", "seq": 1},  # the answer to the first was lost
        {"boot": "aa01", "seq": 2},
        {"boot": "aa01", "seq": 2},
        {"boot": "aa01", "seq": 1},  # late and old
        {"boot": "bb02", "seq": 1},  # the sender restarted
        {},  # a sender that numbers nothing
    ]
    counted = []
    for i, batch in enumerate(batches):
        assert beat(api, "a", {"m": (iv, [1])}, **batch)[0] == 200
        if i % 2:  # some repeats meet their first in the buffer, some in SQLite
            api.call("GET", "/v1/models/m/metrics?since=10m", READ)
        counted.append(api.call("GET", "/v1/models/m/metrics?since=10m", READ)[1]["total"])
    assert [t["requests"] for t in counted] == [11, 11, 22, 22, 22, 33, 44]
    assert counted[-1]["errors"] == 4
    node = api.call("GET", "/v1/models/m/metrics?since=10m&node=a&step=5", READ)[1]
    assert node["total"]["requests"] == 44


def test_two_workers_count_a_repeated_batch_once(state) -> None:  # type: ignore[no-untyped-def]
    """The repeat reaches another gunicorn worker (another TelemetryStore on the same file)."""
    from master.telemetry import Batch, NodeFigures, TelemetryStore
    from modelsync.telemetry import BeatModel

    other = TelemetryStore(state.db, retention_s=3600)
    figures = [NodeFigures("m", BeatModel(interval(10, 1, 2_000), frozenset({1})))]
    now = time.time()
    state.telemetry.add("a", figures, now, batch=Batch("cc", 7))
    other.add("a", figures, now + 0.5, batch=Batch("cc", 7))
    state.telemetry.flush()
    other.flush()
    minutes = state.telemetry.model_minutes("m", now - 60, now + 60)
    assert sum(f.whole.requests for f in minutes.values() if f.whole) == 11
    rows = state.db.conn().execute("SELECT COUNT(*) FROM telemetry_node").fetchone()[0]
    assert rows == 1


def test_a_malformed_batch_number_is_400(api) -> None:  # type: ignore[no-untyped-def]
    iv = interval(1, 0, 2_000)
    for batch, why in (
        ({"boot": "XY", "seq": 1}, "'boot'"),
        ({"boot": "aa", "seq": 0}, "'seq'"),
        ({"boot": "aa", "seq": True}, "'seq'"),
        ({"seq": 3}, "'boot'"),
    ):
        code, doc = beat(api, "a", {"m": (iv, [1])}, **batch)
        assert code == 400 and why in doc["error"], (batch, doc)


def test_bad_telemetry_and_arguments_are_400(api) -> None:  # type: ignore[no-untyped-def]
    code, doc = api.call(
        "POST",
        "/v1/nodes/heartbeat",
        node_token(NODE, "a"),
        {"node_id": "a", "role": "config_manager", "telemetry": {"models": {"m": {"x": 1}}}},
    )
    assert code == 400 and "telemetry" in doc["error"]
    for query in ("since=yesterday", "since=5m&until=10m", "step=7", "step=x", "since=99999d"):
        code, doc = api.call("GET", f"/v1/models/m/metrics?{query}", READ)
        assert code == 400, (query, doc)
    assert api.call("GET", "/v1/metrics/sparklines?since=3d", READ)[0] == 400


def test_compaction_keeps_the_figures(api, state) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert beat(api, "a", {"m": (interval(20, 1, 2_000), [1])})[0] == 200
    before = api.call("GET", "/v1/models/m/metrics?since=10m&node=a", READ)[1]["total"]
    merged, dropped = state.telemetry.compact(time.time() + 2 * 3600)  # two hours later
    assert merged == 2 and dropped == 0
    rows = state.db.conn().execute("SELECT res, COUNT(*) FROM telemetry_node GROUP BY res")
    assert dict(rows.fetchall()) == {60: 1}
    after = api.call("GET", "/v1/models/m/metrics?since=10m&node=a", READ)[1]["total"]
    assert after == before
    state.telemetry.compact(time.time() + 8 * 86400)  # past the retention: gone
    assert state.db.conn().execute("SELECT COUNT(*) FROM telemetry_node").fetchone()[0] == 0


def test_compaction_goes_minute_by_minute_over_gaps(state) -> None:  # type: ignore[no-untyped-def]
    from master.telemetry import NodeFigures
    from modelsync.telemetry import BeatModel

    t0 = (time.time() // 60) * 60 - 86400  # a day ago, at a minute's start
    # three beats in each of minutes 0 and 1, one in minute 90 (a gap), for two nodes
    for offset in (0, 10, 20, 60, 70, 80, 90 * 60 + 5):
        for node in ("a", "b"):
            figures = BeatModel(interval(10, 1, 2_000), frozenset({1}))
            state.telemetry.add(node, [NodeFigures("m", figures)], t0 + offset)
    merged, dropped = state.telemetry.compact(t0 + 3 * 3600)
    assert (merged, dropped) == (2 * (2 + 2 + 0), 0)
    rows = (
        state.db.conn()
        .execute(
            "SELECT s.node_id, t.t, t.res, t.figures FROM telemetry_node t JOIN series s ON "
            "s.id = t.series ORDER BY s.node_id, t.t"
        )
        .fetchall()
    )
    import json

    assert [(r[0], r[1] - t0, r[2]) for r in rows] == [
        (n, off, 60) for n in ("a", "b") for off in (20, 80, 90 * 60 + 5)
    ]
    figures = [json.loads(r[3]) for r in rows][:3]
    assert [(f["requests"], f["errors"], f["seconds"]) for f in figures] == [
        (33, {"INVALID_ARGUMENT": 3}, 15.0),
        (33, {"INVALID_ARGUMENT": 3}, 15.0),
        (11, {"INVALID_ARGUMENT": 1}, 5.0),
    ]


def test_a_spooling_process_leaves_the_drain_to_another(state) -> None:  # type: ignore[no-untyped-def]
    """Under gunicorn the worker answering heartbeats only spools its beats into the inbox; the
    telemetry process (another TelemetryStore on the same file) counts them, once, and writes
    the model's minutes under its own writer; a read in the worker drains what is left."""
    import threading

    from master.telemetry import Batch, NodeFigures, TelemetryStore
    from modelsync.telemetry import BeatModel

    worker = TelemetryStore(state.db, retention_s=3600, spool_only=True)
    merger = TelemetryStore(state.db, retention_s=3600)
    figures = [NodeFigures("m", BeatModel(interval(10, 1, 2_000), frozenset({1})))]
    now = time.time()
    for seq in range(1, 251):  # more than one drain's transaction
        worker.add(f"n{seq % 5}", figures, now, batch=Batch("dd", seq))
    assert worker.spool() == 250
    inbox = "SELECT COUNT(*) FROM telemetry_inbox"
    assert state.db.conn().execute(inbox).fetchone()[0] == 250
    assert state.db.conn().execute("SELECT COUNT(*) FROM telemetry_node").fetchone()[0] == 0
    # two drains at once (the telemetry process and a read): each beat is taken by one
    drained = []
    threads = [
        threading.Thread(target=lambda s=s: drained.append(s.drain())) for s in (merger, worker)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert state.db.conn().execute(inbox).fetchone()[0] == 0
    assert state.db.conn().execute("SELECT COUNT(*) FROM telemetry_node").fetchone()[0] == 250
    minutes = worker.model_minutes("m", now - 60, now + 60)
    assert sum(f.whole.requests for f in minutes.values() if f.whole) == 250 * 11
    # a beat spooled again (its answer lost) is dropped by whichever drains it
    worker.add("n1", figures, now, batch=Batch("dd", 6))
    worker.add("n1", figures, now, batch=Batch("dd", 251))
    worker.spool()
    merger.drain()
    minutes = worker.model_minutes("m", now - 60, now + 60)
    assert sum(f.whole.requests for f in minutes.values() if f.whole) == 251 * 11


def test_a_failed_spool_keeps_the_beats_for_the_next(state, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from master.telemetry import NodeFigures, TelemetryStore
    from modelsync.telemetry import BeatModel

    store = TelemetryStore(state.db, retention_s=3600, spool_only=True)
    figures = [NodeFigures("m", BeatModel(interval(3, 0, 2_000), frozenset({1})))]
    now = time.time()
    store.add("a", figures, now)
    real = state.db.write

    def refused():  # type: ignore[no-untyped-def]
        raise RuntimeError("database is locked")

    monkeypatch.setattr(state.db, "write", refused)
    try:
        store.spool()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the spool did not meet the failure")
    monkeypatch.setattr(state.db, "write", real)
    store.add("b", figures, now)
    assert store.spool() == 2
    minutes = store.model_minutes("m", now - 60, now + 60)
    assert sum(f.whole.requests for f in minutes.values() if f.whole) == 6
