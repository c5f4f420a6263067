"""gateway.telemetry: what the gateway answered, per model and answering version, by gRPC status
code (TF Serving's when it answered one, else the HTTP status's), on TF Serving's buckets."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from gateway.app import Gateway, Request
from gateway.errors import HTTP_TO_GRPC, GatewayError, grpc_code
from gateway.settings import GatewaySettings
from gateway.telemetry import MAX_VERSIONS, GatewayTelemetry
from modelsync.convert import BadInput
from modelsync.judge import status_class
from modelsync.settings import NodeSettings
from modelsync.telemetry import BeatModel
from modelsync.tensors import Signature, TensorSpec
from modelsync.tfs import Answer, Attempt


def test_http_statuses_land_in_the_status_class_of_the_grpc_code_they_stand_for() -> None:
    assert grpc_code(200) == "OK" and grpc_code(204) == "OK"
    for status in (400, 401, 403, 404, 405, 409, 413, 415, 422):
        assert status_class(grpc_code(status)) == "client", status
    for status in (429, 500, 501, 502, 503, 504):
        assert status_class(grpc_code(status)) == "server", status
    assert all(grpc_code(h) == c for h, c in HTTP_TO_GRPC.items())


def clock() -> Any:
    ticks = itertools.count(1000.0, 5.0)
    return lambda: next(ticks)


def test_answers_are_counted_per_version_with_their_latency() -> None:
    t = GatewayTelemetry(clock=clock())
    for _ in range(3):
        t.record("m", 2, "OK", 0.002)
    t.record("m", 2, "INVALID_ARGUMENT", 0.001)
    t.record("m", 1, "OK", 0.02)
    t.record("m", None, "NOT_FOUND", 0.001)  # no version known: the model's whole only
    t.record("", 3, "OK", 0.001)  # a name that never answered: not counted
    doc = t.take()
    assert doc is not None and set(doc["models"]) == {"m"}
    fig = BeatModel.from_json(doc["models"]["m"])
    assert fig.interval.requests == 6 and dict(fig.interval.errors) == {
        "INVALID_ARGUMENT": 1,
        "NOT_FOUND": 1,
    }
    assert fig.by_version is not None and set(fig.by_version) == {1, 2}
    v2 = fig.by_version[2]
    assert dict(v2.statuses) == {"OK": 3, "INVALID_ARGUMENT": 1} and v2.latency.count == 3
    assert 1.0 < (v2.p50_ms or 0) < 3.5 and (fig.by_version[1].p50_ms or 0) > 10
    t.settle(True)
    assert t.take() is None  # nothing since


def test_versions_per_model_are_bounded() -> None:
    t = GatewayTelemetry(clock=clock())
    for v in range(1, MAX_VERSIONS + 5):
        t.record("m", v, "OK", 0.001)
    doc = t.take()
    assert doc is not None
    assert len(doc["models"]["m"]["by_version"]) == MAX_VERSIONS
    assert doc["models"]["m"]["requests"] == MAX_VERSIONS + 4


SIG = Signature({"x": TensorSpec("float32", (-1,))}, {"y": TensorSpec("float32", (-1,))})


class FakeTFS:
    """TF Serving as the gateway's client sees it: v2 is latest; "oops" inputs fail in TF
    Serving (INVALID_ARGUMENT), x > 100 fail as UNAVAILABLE."""

    def predict(
        self, model: str, version: int | None, build: Any, signature: str = "", attempt: Any = None
    ) -> Answer:
        attempt = attempt or Attempt()
        attempt.version = version or 2
        inputs = build(SIG)
        x = np.asarray(inputs["x"])
        if (x > 100).any():
            raise GatewayError(503, "overloaded", "UNAVAILABLE")
        return Answer(attempt.version, {"y": x * 2}, SIG)

    def known(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def gateway() -> Gateway:
    settings = GatewaySettings(node=NodeSettings(node_id="n1", http_port=0))
    return Gateway(settings, FakeTFS(), proxy=None)  # type: ignore[arg-type]


def invoke(gw: Gateway, body: Any, path: str = "/model/m/invocations") -> int:
    req = Request("POST", path, headers={"content-type": "application/json"})
    req.body = json.dumps(body).encode()
    return gw.handle(req).status


def test_the_gateway_counts_each_answer_by_version_and_code(gateway: Gateway) -> None:
    assert invoke(gateway, {"inputs": {"x": [1.0]}}) == 200
    assert invoke(gateway, {"inputs": {"x": [1.0]}}, "/model/m/1/invocations") == 200
    assert invoke(gateway, {"inputs": {"oops": [1.0]}}) == 400  # built for v2: its failure
    assert invoke(gateway, {"inputs": {"x": [500.0]}}) == 503
    doc = gateway.telemetry.take()
    assert doc is not None
    fig = BeatModel.from_json(doc["models"]["m"])
    assert fig.by_version is not None
    assert dict(fig.by_version[2].statuses) == {"OK": 1, "INVALID_ARGUMENT": 1, "UNAVAILABLE": 1}
    assert dict(fig.by_version[1].statuses) == {"OK": 1}
    assert isinstance(BadInput("x"), ValueError)  # what the gateway counts as INVALID_ARGUMENT
