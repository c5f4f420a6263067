"""The whole node on real processes: fake-gcs-server, puller, config manager, model server.

Publish → pull → reload → AVAILABLE → prune, under continuous gRPC Predict traffic.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import helpers
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from modelsync.catalog import policy_object
from modelsync.dev.procs import Node
from modelsync.local import LocalLayout
from modelsync.policy import ModelPolicy, Policy, dump_policy
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

wait_for = functools.partial(helpers.wait_for, errors=(grpc.RpcError, OSError))
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def predict_y(port: int, x: float = 1.0, timeout: float = 5) -> tuple[int, float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "demo"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], dtype=np.float32)))
        resp = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=timeout)
        return resp.model_spec.version.value, float(tf.make_ndarray(resp.outputs["y"])[0])


class Traffic:
    """Continuous Predict traffic, bounded in count and time; records every failure."""

    def __init__(self, port: int, threads: int = 2, max_s: float = 600) -> None:
        self.port = port
        self.stop_event = threading.Event()
        self.paused = threading.Event()
        self.errors: list[str] = []
        self.ok = 0
        self.versions: set[int] = set()
        self.max_s = max_s
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "demo"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float32)))
        deadline = time.monotonic() + self.max_s
        for _ in range(2_000_000):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                break
            if self.paused.is_set():
                time.sleep(0.05)
                continue
            try:
                resp = stub.Predict(req, timeout=5)
                self.ok += 1
                self.versions.add(resp.model_spec.version.value)
            except grpc.RpcError as exc:
                if not self.paused.is_set():
                    self.errors.append(f"{exc.code().name}: {exc.details()}")
            time.sleep(0.002)
        channel.close()

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)


def cm_status(node: Node) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.cm_port}/status", timeout=5) as r:
        return json.loads(r.read())


def test_node_follows_the_bucket(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    node = Node(
        tmp_path,
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        poll_s=0.5,
    ).start()
    layout = LocalLayout(node.model_root)
    try:
        # v1: y = 2x + 1
        publish(store, model_factory(2.0), "demo", PublishOptions(version=1))
        assert wait_for(lambda: predict_y(node.grpc_port) == (1, 3.0), 60, "v1 served")

        with Traffic(node.grpc_port) as traffic:
            # v2 replaces v1; v1 stays on disk as the rollback copy
            publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
            wait_for(lambda: predict_y(node.grpc_port) == (2, 4.0), 60, "v2 served")
            served_at = time.time()
            wait_for(
                lambda: (cm_status(node)["last_tick"] or {}).get("at", 0) > served_at,
                30,
                "a full config manager pass after v2 is served",
            )
            assert sorted(layout.versions_on_disk()["demo"]) == [1, 2]

            # a corrupt v3 fails to load, is reported, and v2 keeps serving
            helpers.write_corrupt_version(store, model_factory(9.0), "demo", 3)
            wait_for(
                lambda: any(f["version"] == 3 for f in cm_status(node)["failed"]),
                60,
                "v3 reported as failed",
            )
            assert predict_y(node.grpc_port) == (2, 4.0)
            events = [e["event"] for e in cm_status(node)["events"]]
            assert "version_load_failed" in events

            # v4 is served; v1 is pruned only once TF Serving reports it END; v2 is kept
            publish(store, model_factory(5.0), "demo", PublishOptions(version=4))
            wait_for(lambda: predict_y(node.grpc_port) == (4, 6.0), 60, "v4 served")
            wait_for(lambda: 1 not in layout.versions_on_disk()["demo"], 30, "v1 pruned")
            on_disk = layout.versions_on_disk()["demo"]
            assert 2 in on_disk and 4 in on_disk and 1 not in on_disk
            pruned = [e for e in cm_status(node)["events"] if e["event"] == "version_pruned"]
            assert any(e["version"] == 1 and e["tfserving_state"] == "END" for e in pruned)
            assert layout.read_record("demo", 1) is None

            # pin v1: fetched back from the bucket and served
            store.write(
                policy_object("models"), dump_policy(Policy(models={"demo": ModelPolicy(pin=1)}))
            )
            wait_for(lambda: predict_y(node.grpc_port) == (1, 3.0), 90, "pinned v1 served")
            assert traffic.errors == [], traffic.errors[:5]
            assert {1, 2, 4} <= traffic.versions

            # TF Serving dies and comes back knowing nothing: the config is pushed again
            traffic.paused.set()
            assert node.model_server is not None
            node.model_server.kill()
            empty = tmp_path / "empty.config"
            empty.write_text("model_config_list {\n}\n")
            node.start_model_server(config_file=str(empty))
            wait_for(
                lambda: predict_y(node.grpc_port) == (1, 3.0), 60, "serving resumed after restart"
            )
            traffic.paused.clear()
            # the config manager says so: TF Serving restarted, with the downtime it saw
            restarted = wait_for(
                lambda: [
                    e for e in cm_status(node)["events"] if e["event"] == "tfserving_restarted"
                ],
                30,
                "restart reported",
            )
            assert "down_s" in restarted[-1]
            back = [e for e in cm_status(node)["events"] if e["event"] == "tfserving_back"]
            if back:  # it was seen down: the downtime is a measured number
                assert restarted[-1]["down_s"] == back[-1]["down_s"] >= 0
        assert traffic.errors == [], traffic.errors[:5]
        assert traffic.ok > 200
    finally:
        codes = node.stop()
        assert all(c == 0 for name, c in codes.items() if "model-server" not in name), codes
