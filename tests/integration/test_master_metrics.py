"""The master's /metrics under gunicorn with several workers: every scrape counts every
worker's requests, and the fleet gauge is computed at scrape time."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from helpers import post_heartbeat

from modelsync.dev.procs import MasterSpec, start_master
from modelsync.settings import StoreSettings
from modelsync.telemetry.prometheus import parse

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN, NODE = "admin-token-0123456789", "node-secret-0123456789-0123456789"


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


def samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    page = get(url + "/metrics")[1].decode()
    return {s.labels: s.value for s in parse(page).samples if s.name == name}


def test_two_workers_share_one_view(store_settings: StoreSettings, tmp_path: Path) -> None:
    spec = MasterSpec(
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        admin_token=ADMIN,
        node_secret=NODE,
        extra_env={"MODELSYNC_MASTER_WORKERS": "2", "MODELSYNC_MASTER_THREADS": "2"},
    )
    proc = start_master(tmp_path, spec)
    url: str = proc.url  # type: ignore[attr-defined]
    try:
        n = 40
        for _ in range(n):
            assert get(url + "/healthz")[0] == 200
        beat = {"node_id": "n1", "role": "puller", "status": {}, "events": []}
        post_heartbeat(url, NODE, beat)

        def healthz_count() -> float:
            counts = samples(url, "modelsync_master_requests_total")
            return sum(v for labels, v in counts.items() if ("route", "/healthz") in labels)

        # each scrape is answered by either worker; every one of them must see all n requests
        for _ in range(6):
            assert healthz_count() >= n
        nodes = samples(url, "modelsync_master_nodes")
        assert nodes[(("state", "live"),)] == 1 and nodes[(("state", "stale"),)] == 0
        beats = samples(url, "modelsync_master_heartbeats_total")
        assert beats[(("role", "puller"),)] == 1
    finally:
        assert proc.stop() == 0, proc.log_tail()
