"""The registry: beats that repeat the stored report are buffered, and reads see them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from master.db import Database


def _raw(path: Path) -> tuple:  # type: ignore[type-arg]
    """What another process reading the file would see now."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT last_seen, beats, seq FROM nodes").fetchone()


def test_repeated_reports_are_buffered_then_flushed(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.sqlite3")
    status = {"installed": {"m": [1]}}
    assert db.heartbeat("n1", "puller", "h", "1.0", 5, status, [], 100.0) == (True, 0.0)
    first = _raw(tmp_path / "m.sqlite3")
    assert first[:2] == (100.0, 1)
    # the same report twice: nothing written yet (no write transaction per beat) ...
    assert db.heartbeat("n1", "puller", "h", "1.0", 5, status, [], 105.0) == (False, 100.0)
    assert db.heartbeat("n1", "puller", "h", "1.0", 5, status, [], 110.0) == (False, 100.0)
    assert _raw(tmp_path / "m.sqlite3") == first
    # ... but every read of this process flushes first, and the report keeps its sequence
    (row,) = db.nodes("n1")
    assert (row.last_seen, row.beats, row.seq) == (110.0, 3, first[2])
    assert _raw(tmp_path / "m.sqlite3") == (110.0, 3, first[2])
    assert db.flush_beats() == 0


def test_a_changed_report_is_written_at_once_and_counts_the_buffered_beats(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.sqlite3")
    db.heartbeat("n1", "puller", "h", "1.0", 5, {"installed": {"m": [1]}}, [], 100.0)
    seq = _raw(tmp_path / "m.sqlite3")[2]
    db.heartbeat("n1", "puller", "h", "1.0", 5, {"installed": {"m": [1]}}, [], 105.0)
    db.heartbeat("n1", "puller", "h", "1.0", 5, {"installed": {"m": [1, 2]}}, [], 110.0)
    last_seen, beats, new_seq = _raw(tmp_path / "m.sqlite3")
    assert (last_seen, beats) == (110.0, 3) and new_seq > seq
    assert db.flush_beats() == 0  # the buffered beat went in with the change
    # a beat with events is written at once too, and an older buffered time never wins
    db.heartbeat(
        "n1",
        "puller",
        "h",
        "1.0",
        5,
        {"installed": {"m": [1, 2]}},
        [{"event": "x", "at": 111.0}],
        112.0,
    )
    assert _raw(tmp_path / "m.sqlite3")[:2] == (112.0, 4)
    assert [e["event"] for e in db.events(node="n1")] == ["x"]


def test_liveness_reads_and_forgetting_flush_first(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.sqlite3")
    for node in ("a", "b"):
        db.heartbeat(node, "puller", "h", "1.0", 5, {}, [], 100.0)
    db.heartbeat("a", "puller", "h", "1.0", 5, {}, [], 200.0)  # buffered
    assert {n: ls for n, _r, ls, _hb, _s in db.liveness()} == {"a": 200.0, "b": 100.0}
    db.heartbeat("b", "puller", "h", "1.0", 5, {}, [], 300.0)  # buffered
    assert db.forget_nodes(older_than=250.0) == 1  # a, not b (its beat was flushed first)
    assert [r.node_id for r in db.nodes()] == ["b"]
