"""No silent outage: a GCS blackhole is seen and reported while the node keeps serving, and a
version stuck in LOADING never holds back the versions behind it. Real node processes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import Proxy, wait_for, write_corrupt_version

from modelsync.catalog import policy_object
from modelsync.client import PredictClient
from modelsync.dev.procs import Node
from modelsync.policy import ModelPolicy, Policy, dump_policy
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def served(client: PredictClient) -> int | None:
    try:
        return client.predict("demo", {"x": [1.0]}, timeout_s=5)[0]
    except Exception:
        return None


@pytest.mark.timeout(300)
def test_gcs_blackhole_is_reported_and_turns_the_node_unready_while_it_serves(
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    assert store_settings.emulator_host
    proxy = Proxy(int(store_settings.emulator_host.rsplit(":", 1)[1]))
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=proxy.url,
        poll_s=0.5,
        extra_env={"MODELSYNC_POLL_DEADLINE_S": "2", "MODELSYNC_STALE_AFTER_S": "4"},
    )
    client = None
    try:
        node.start()
        client = PredictClient(f"127.0.0.1:{node.grpc_port}")
        publish(store, model_factory(2.0), "demo")
        wait_for(lambda: served(client) == 1, 60, "v1 served")
        ready = f"http://127.0.0.1:{node.puller_port}/readyz"
        assert get(ready)[0] == 200
        proxy.blackhole.set()  # GCS stops answering: connections hang
        failed = wait_for(
            lambda: [
                e
                for e in get(f"http://127.0.0.1:{node.puller_port}/status")[1]["events"]
                if e["event"] == "poll_failed"
            ],
            30,
            "poll_failed event",
        )
        assert failed[0]["seconds"] <= 2 + 1.5  # the poll's deadline held
        _code, doc = wait_for(lambda: (r := get(ready))[0] == 503 and r, 30, "unready")
        assert "no successful poll" in doc["reason"] and "MODELSYNC_STALE_AFTER_S" in doc["reason"]
        assert served(client) == 1  # what is installed keeps serving
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{node.puller_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        assert 'modelsync_puller_polls_total{outcome="error"}' in metrics
        proxy.blackhole.clear()
        wait_for(lambda: get(ready)[0] == 200, 60, "ready again once GCS answers")
        publish(store, model_factory(3.0), "demo")
        wait_for(lambda: served(client) == 2, 60, "v2 served after the outage")
    finally:
        if client is not None:
            client.close()
        node.stop()
        proxy.close()


@pytest.mark.timeout(300)
def test_version_stuck_loading_never_holds_back_newer_ones(
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    store.write(
        policy_object("models"), dump_policy(Policy(models={"demo": ModelPolicy(keep_versions=2)}))
    )
    # TF Serving retrying a bad version for a long time (its default: 5 retries, 60 s apart)
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        poll_s=0.5,
        extra_env={"MODELSYNC_LOAD_TIMEOUT_S": "6"},
        model_server_flags=["--max_num_load_retries=1000", "--load_retry_interval_micros=500000"],
    )
    client = None
    try:
        node.start()
        client = PredictClient(f"127.0.0.1:{node.grpc_port}")
        publish(store, model_factory(2.0), "demo", PublishOptions(version=1))
        wait_for(lambda: served(client) == 1, 60, "v1 served")
        status = f"http://127.0.0.1:{node.cm_port}/status"
        write_corrupt_version(store, model_factory(9.0), "demo", 2)
        wait_for(
            lambda: (
                get(status)[1]["tfserving_view"].get("_validate.demo", {}).get("2", {}).get("state")
                == "LOADING"
            ),
            60,
            "v2 stuck in LOADING (being validated)",
        )
        publish(store, model_factory(4.0), "demo", PublishOptions(version=3))
        # v3 is served well before TF Serving would give up on v2 (hundreds of seconds)
        wait_for(lambda: served(client) == 3, 45, "v3 served while v2 is stuck")
        failed = wait_for(
            lambda: [
                e
                for e in get(status)[1]["events"]
                if e["event"] == "version_load_failed" and e["version"] == 2
            ],
            60,
            "v2 reported",
        )
        assert "still LOADING" in failed[0]["error"]
        wait_for(lambda: "versions: 2" not in node.config_path.read_text(), 30, "v2 left out")
        assert "versions: 3" in node.config_path.read_text()
        assert served(client) == 3
    finally:
        if client is not None:
            client.close()
        node.stop()


@pytest.mark.timeout(300)
def test_a_swap_past_the_memory_limit_goes_unload_first_and_drains_the_node(
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    src = model_factory(2.0)
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    # room for one version (x2), not for two at once
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        poll_s=0.5,
        extra_env={
            "MODELSYNC_MEMORY_LIMIT_BYTES": str(int(size * 3)),
            "MODELSYNC_MEMORY_FACTOR": "2",
        },
    )
    client = None
    try:
        node.start()
        client = PredictClient(f"127.0.0.1:{node.grpc_port}")
        publish(store, src, "demo", PublishOptions(version=1))
        wait_for(lambda: served(client) == 1, 60, "v1 served")
        ready = f"http://127.0.0.1:{node.cm_port}/readyz"
        assert get(ready)[0] == 200
        publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
        _code, doc = wait_for(lambda: (r := get(ready))[0] == 503 and r, 60, "drained")
        assert "unload-first" in doc["reason"]
        wait_for(lambda: served(client) == 2, 90, "v2 served")
        wait_for(lambda: get(ready)[0] == 200, 30, "ready again")
        status = get(f"http://127.0.0.1:{node.cm_port}/status")[1]
        assert any(e["event"] == "swap_unload_first" for e in status["events"])
        # never both versions loaded at once: TF Serving's own log says so
        log = (tmp_path / "node" / "node-model-server.log").read_text()
        unloaded = log.index('"version_unloaded","model":"demo","version":1')
        loaded = log.index('"version_available","model":"demo","version":2')
        validated = log.index('"version_available","model":"_validate.demo","version":2')
        assert unloaded < validated < loaded
    finally:
        if client is not None:
            client.close()
        node.stop()
