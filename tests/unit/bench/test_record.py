"""Re-running one benchmark with --update-readme replaces only its figures in the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as bench_main


def test_one_benchmark_replaces_only_its_own_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "propagation": {"overhead_p50_s": 1.3, "quick": False, "date": "2026-11-01"},
                "master": {"heartbeat_p99_ms": 190.0, "quick": False, "date": "2026-11-01"},
            }
        )
    )
    monkeypatch.setattr(bench_main, "RESULTS", results)
    merged = bench_main.record({"master": {"heartbeat_p99_ms": 35.0, "quick": False}})
    assert list(merged) == ["propagation", "master"]  # in the order of BENCHMARKS
    assert merged["propagation"] == {"overhead_p50_s": 1.3, "quick": False, "date": "2026-11-01"}
    assert merged["master"]["heartbeat_p99_ms"] == 35.0
    assert merged["master"]["date"] != "2026-11-01"
    # --quick figures never mix with full-size ones
    quick = bench_main.record({"master": {"heartbeat_p99_ms": 9.0, "quick": True}})
    assert list(quick) == ["master"]


def test_the_table_shows_each_benchmark_date_when_they_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- bench:start -->\nold\n<!-- bench:end -->\ny\n")
    monkeypatch.setattr(bench_main, "README", readme)
    bench_main.update_readme(
        {
            "propagation": {"overhead_p50_s": 0.25, "overhead_p95_s": 0.7, "date": "2026-11-01"},
            "master": {"heartbeat_p99_ms": 35.0, "heartbeat_errors": 0, "date": "2026-12-02"},
        },
        quick=False,
    )
    text = readme.read_text()
    assert "old" not in text and text.startswith("x\n") and text.endswith("y\n")
    assert "Measured 2026-11-01 to 2026-12-02" in text
    assert "| master | `date` | 2026-12-02 |  |" in text
    assert "| master | `heartbeat_p99_ms` | 35 | <= 50 (met) |" in text
    assert "| propagation | `overhead_p50_s` | 0.25 | <= 0.3 (met) |" in text
    assert "| propagation | `overhead_p95_s` | 0.7 | <= 0.6 (MISSED) |" in text
