"""The compatible model server's Prometheus page, read through modelsync.telemetry: the official
TF Serving metric names, labels, units, buckets and text format, with exact counts; and
modelsync's per-version extension beside them, exact per version."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from modelsync.dev.procs import start_model_server
from modelsync.telemetry import (
    LATENCY_BOUNDS_US,
    REQUEST_COUNT,
    REQUEST_LATENCY,
    VERSION_REQUEST_COUNT,
    Snapshot,
    interval,
    parse,
    snapshot,
    version_intervals,
    version_snapshots,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MONITORING_CONFIG = Path(__file__).resolve().parents[2] / "tfserving" / "monitoring.config"
METRICS_PATH = "/monitoring/prometheus/metrics"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")


class Server:
    def __init__(self, grpc_port: int, rest_port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.rest = f"http://127.0.0.1:{rest_port}"

    def available(self, model: str) -> bool:
        # ModelService calls are not counted by TF Serving, so waiting adds nothing to the page
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = model
        try:
            resp = self.model_stub.GetModelStatus(req, timeout=5)
        except grpc.RpcError:
            return False
        return any(s.state == AVAILABLE for s in resp.model_version_status)

    def predict(self, model: str, inputs: dict[str, list[float]]) -> grpc.StatusCode:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        for key, xs in inputs.items():
            req.inputs[key].CopyFrom(tf.make_tensor_proto(np.array(xs, dtype=np.float32)))
        try:
            self.predict_stub.Predict(req, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def metadata(self, model: str) -> None:
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = model
        req.metadata_field.append("signature_def")
        self.predict_stub.GetModelMetadata(req, timeout=30)

    def http(self, method: str, path: str, body: object = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.rest + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def scrape(self) -> str:
        with urllib.request.urlopen(self.rest + METRICS_PATH, timeout=10) as r:
            assert r.status == 200
            return str(r.read().decode())


@pytest.fixture
def server(tmp_path: Path, model_factory: Any) -> Iterator[Server]:
    root = tmp_path / "models"
    shutil.copytree(model_factory(2.0), root / "demo" / "1")
    proc = start_model_server(
        tmp_path,
        model_name="demo",
        model_base_path=str(root / "demo"),
        flags=[f"--monitoring_config_file={MONITORING_CONFIG}"],
    )
    client = Server(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    try:
        wait_for(lambda: client.available("demo"), 120, "demo AVAILABLE")
        yield client
    finally:
        client.channel.close()
        assert proc.stop() == 0


GOOD_GRPC, BAD_GRPC, MISSING_GRPC, GOOD_REST, BAD_REST = 20, 3, 2, 5, 2


def send_traffic(server: Server) -> None:
    for i in range(GOOD_GRPC):
        assert server.predict("demo", {"x": [float(i)]}) == grpc.StatusCode.OK
    for _ in range(BAD_GRPC):  # a wrong input name
        assert server.predict("demo", {"nope": [1.0]}) == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(MISSING_GRPC):
        assert server.predict("missing", {"x": [1.0]}) == grpc.StatusCode.NOT_FOUND
    for i in range(GOOD_REST):
        assert server.http("POST", "/v1/models/demo:predict", {"instances": [float(i)]}) == 200
    for _ in range(BAD_REST):
        assert server.http("POST", "/v1/models/demo:predict", {"inputs": {"nope": [1.0]}}) == 400
    assert server.http("GET", "/v1/models/demo") == 200  # counted, latency with API=""
    server.metadata("demo")  # gRPC GetModelMetadata: TF Serving records nothing for it


def test_page_has_the_official_names_labels_buckets_and_format(server: Server) -> None:
    send_traffic(server)
    text = server.scrape()
    page = parse(text)
    assert page.bad_lines == 0
    assert page.types[REQUEST_COUNT] == "counter" and page.types[REQUEST_LATENCY] == "histogram"
    assert page.types[":tensorflow:serving:model_warmup_latency"] == "histogram"
    assert REQUEST_COUNT + "_total" not in text and "# HELP :tensorflow" not in text
    assert (
        f'{REQUEST_COUNT}{{model_name="demo",status="OK"}} {GOOD_GRPC + GOOD_REST + 1}\n'
    ) in text
    assert f'{REQUEST_COUNT}{{model_name="demo",status="INVALID_ARGUMENT"}} 5\n' in text
    assert f'{REQUEST_COUNT}{{model_name="missing",status="NOT_FOUND"}} 2\n' in text
    grpc_labels = 'model_name="demo",API="Predict",entrypoint="GRPC"'
    les = re.findall(rf'{REQUEST_LATENCY}_bucket\{{{grpc_labels},le="([^"]+)"\}} \d+\n', text)
    assert les == ["%.6g" % b for b in LATENCY_BOUNDS_US] + ["+Inf"]  # noqa: UP031
    assert les[8] == "1102" and les[20] == "1.27482e+06"
    assert f"{REQUEST_LATENCY}_count{{{grpc_labels}}} {GOOD_GRPC}\n" in text
    assert re.search(rf"{REQUEST_LATENCY}_sum\{{{grpc_labels}\}} [0-9.e+]+\n", text)
    rest_labels = 'model_name="demo",API="predict",entrypoint="REST"'
    assert f"{REQUEST_LATENCY}_count{{{rest_labels}}} {GOOD_REST}\n" in text
    get_labels = 'model_name="demo",API="",entrypoint="REST"'
    assert f"{REQUEST_LATENCY}_count{{{get_labels}}} 1\n" in text
    assert "GetModelMetadata" not in text and 'API="metadata"' not in text
    # the series come sorted by label values, as TF's std::map cells
    series = re.findall(rf"^{REQUEST_LATENCY}_count\{{([^}}]*)\}}", text, re.MULTILINE)
    assert series == sorted(series, key=lambda s: re.findall(r'"([^"]*)"', s))
    assert "modelsync_model_server_versions" in text  # modelsync's own gauges stay


def scraped_with(server: Server, demo_requests: int) -> Snapshot | None:
    """The page once it shows at least ``demo_requests`` requests of demo, else None."""
    snap = snapshot(server.scrape())
    demo = snap.models.get("demo")
    return snap if demo is not None and sum(demo.requests.values()) >= demo_requests else None


def test_telemetry_counts_are_exact(server: Server) -> None:
    before = snapshot(server.scrape())
    started = time.monotonic()
    send_traffic(server)
    expected_total = GOOD_GRPC + BAD_GRPC + GOOD_REST + BAD_REST + 1
    after = wait_for(lambda: scraped_with(server, expected_total), 30, "the requests")
    assert after.bad_lines == 0 and after.ignored_samples == 0
    got = interval(before, after, time.monotonic() - started)
    demo = got["demo"]
    assert not demo.reset
    assert demo.statuses == {
        "OK": GOOD_GRPC + GOOD_REST + 1,
        "INVALID_ARGUMENT": BAD_GRPC + BAD_REST,
    }
    assert demo.errors == {"INVALID_ARGUMENT": BAD_GRPC + BAD_REST}
    # latency: the OK inference requests only (the REST GET has API="" and is left out)
    assert demo.latency.count == GOOD_GRPC + GOOD_REST
    assert demo.latency.bounds == (
        *(float("%.6g" % b) for b in LATENCY_BOUNDS_US),  # noqa: UP031
        float("inf"),
    )
    assert demo.latency.sum > 0
    assert demo.p50_ms is not None and demo.p99_ms is not None
    assert 0 < demo.p50_ms <= demo.p99_ms < 60_000
    assert got["missing"].statuses == {"NOT_FOUND": MISSING_GRPC}
    assert got["missing"].latency.count == 0
    per_series = {
        dict(k)["entrypoint"]: h.count for k, h in after.models["demo"].latency_series.items()
    }
    assert per_series == {"GRPC": GOOD_GRPC, "REST": GOOD_REST}
    # the same traffic again: the second interval counts only it
    send_traffic(server)
    again = wait_for(lambda: scraped_with(server, 2 * expected_total), 30, "the second round")
    second = interval(after, again, 1.0)["demo"]
    assert second.statuses == demo.statuses and second.latency.count == demo.latency.count


def test_the_extension_counts_each_version_exactly(server: Server) -> None:
    """Inference requests that reached version 1, by status, and their latency; requests that
    reached no version (an unknown model) and REST GETs are only in the official counter."""
    before = version_snapshots(parse(server.scrape()))[0]
    send_traffic(server)

    def with_extension() -> str | None:
        text = server.scrape()
        return text if f'{VERSION_REQUEST_COUNT}{{model_name="demo"' in text else None

    page = wait_for(with_extension, 30, "the extension's series")
    after, ignored = version_snapshots(parse(page))
    assert ignored == 0
    per = version_intervals(before, after, 1.0)
    assert per is not None and set(per) == {"demo"} and set(per["demo"]) == {1}
    v1 = per["demo"][1]
    assert v1.statuses == {"OK": GOOD_GRPC + GOOD_REST, "INVALID_ARGUMENT": BAD_GRPC + BAD_REST}
    assert v1.latency.count == GOOD_GRPC + GOOD_REST
    official = snapshot(page).models["demo"]
    assert sum(official.requests.values()) == v1.requests + 1  # + the REST status GET
