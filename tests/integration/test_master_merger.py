"""The master's telemetry process under gunicorn (master.merger): the worker answering
heartbeats only spools their figures; the telemetry process counts them without any read
asking, is started again if it dies, and is gone with the master."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import post_heartbeat, wait_for

from modelsync.dev.procs import MasterSpec, cmdline, descendants, start_master
from modelsync.settings import StoreSettings
from modelsync.telemetry import LATENCY_BOUNDS_US, Histogram, ModelInterval

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN, NODE = "admin-token-0123456789", "node-secret-0123456789-0123456789"


def beat(url: str, seq: int, requests: int) -> None:
    bounds = (*LATENCY_BOUNDS_US, float("inf"))
    iv = ModelInterval(
        5.0, {"OK": requests}, Histogram(bounds, tuple(requests for _ in bounds), requests * 900.0)
    )
    doc = {
        "node_id": "n1",
        "role": "config_manager",
        "status": {"available": {"m": [1]}},
        "telemetry": {
            "start": time.time() - 5,
            "end": time.time(),
            "models": {"m": {**iv.to_json(), "versions": [1]}},
            "boot": "ab12",
            "seq": seq,
        },
    }
    post_heartbeat(url, NODE, doc)


def counted(db: Path) -> int:
    """Requests in the model's minutes, read from the file (no read through the API, which
    would drain the inbox itself)."""
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute("SELECT figures FROM telemetry_model WHERE model='m'").fetchall()
    return sum(int((json.loads(t)["whole"] or {}).get("requests") or 0) for (t,) in rows)


def mergers(master_pid: int) -> list[int]:
    """The telemetry processes below the master's arbiter."""
    return [pid for pid in descendants(master_pid) if "master.merger" in cmdline(pid)]


def test_the_telemetry_process_counts_restarts_and_stops(
    store_settings: StoreSettings, tmp_path: Path
) -> None:
    spec = MasterSpec(
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        admin_token=ADMIN,
        node_secret=NODE,
    )
    proc = start_master(tmp_path, spec)
    url: str = proc.url  # type: ignore[attr-defined]
    db = tmp_path / "master.sqlite3"
    try:
        (first,) = wait_for(lambda: mergers(proc.pid), 60, "the telemetry process started")
        for seq in (1, 2, 2):  # the last a repeat: counted once
            beat(url, seq, 10)
        wait_for(lambda: counted(db) == 20, 60, "the telemetry process counted the beats")
        os.kill(first, signal.SIGKILL)  # it dies: the worker starts another, which counts
        beat(url, 3, 5)  # what came meanwhile
        (second,) = wait_for(
            lambda: [p for p in mergers(proc.pid) if p != first], 60, "started again"
        )
        wait_for(lambda: counted(db) == 25, 60, "the new telemetry process counted the beat")
        req = urllib.request.Request(
            url + "/v1/models/m/metrics?since=10m", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.load(r)["total"]["requests"] == 25
    finally:
        proc.stop()
    wait_for(lambda: "master.merger" not in cmdline(second), 30, "the telemetry process ends too")
