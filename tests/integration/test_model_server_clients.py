"""What a search client relies on, checked against the compatible model server as TF Serving's
source answers it (real SavedModels, real gRPC, the gateway in front for REST):

- outputs in the typed fields of each TensorProto (``Tensor::AsProtoField``, TF Serving's
  default ``kAsProtoField``), read here by a client that, like an Elasticsearch rescore
  plugin, knows nothing of ``tensor_content`` — for batches of 1, 50 and 1,000, for Predict,
  Classify and Regress, and through the gateway's REST passthrough and MLflow route;
- ``--enable_serialization_as_tensor_content`` packing them instead, as the official flag;
- the answer's ``model_spec`` (``MakeModelSpec``, servables/tensorflow/util.cc);
- GetModelStatus: highest version first, END entries kept (get_model_status_impl.cc,
  servable_state_monitor.h), a label not looked at;
- the gRPC codes and messages for unknown model, version and label and for bad input
  (server_core.cc, basic_manager.cc, predict_util.cc, cc/saved_model/util.cc).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from gateway_kit import Http, start_gateway
from helpers import wait_for
from servers import ModelServerClient, config_text
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from modelsync.dev.models import make_example_model, make_linear_model
from modelsync.dev.procs import ManagedProcess, start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATE = get_model_status_pb2.ModelVersionStatus.State
BATCHES = [1, 50, 1000]
DT_FLOAT = 1


# --- the client a search engine has -----------------------------------------------------------


class NoScores(AssertionError):
    """What a typed-field-only client meets when an answer is packed in tensor_content."""


def typed_float_scores(proto: Any) -> list[float]:
    """Scores as an Elasticsearch rescore plugin reads them: ``float_val`` only, one value per
    element of ``tensor_shape``; it knows nothing of ``tensor_content``."""
    if proto.tensor_content:
        raise NoScores("the answer is packed in tensor_content: no float_val to read")
    if proto.dtype != DT_FLOAT:
        raise NoScores(f"dtype {proto.dtype} is not DT_FLOAT")
    elements = int(np.prod([d.size for d in proto.tensor_shape.dim]))
    if len(proto.float_val) != elements:
        raise NoScores(f"{len(proto.float_val)} float_val for {elements} elements")
    return list(proto.float_val)


def xs(n: int) -> np.ndarray:
    """n inputs whose y = 2x + 1 is exact in float32 (eighths between -5 and 7)."""
    return (np.arange(n) % 97 / 8.0 - 5.0).astype(np.float32)


def linear(x: np.ndarray, a: float = 2.0, b: float = 1.0) -> np.ndarray:
    return (np.float32(a) * x + np.float32(b)).astype(np.float32)


# --- a model with an output of every dtype a SavedModel signature gives ------------------------

# output -> the typed field TF Serving's Tensor::AsProtoField puts it in (tensor.cc)
TYPED_FIELDS = {
    "f32": "float_val",
    "f64": "double_val",
    "f16": "half_val",
    "bf16": "half_val",
    "i8": "int_val",
    "i16": "int_val",
    "i32": "int_val",
    "i64": "int64_val",
    "u8": "int_val",
    "u16": "int_val",
    "u32": "uint32_val",
    "u64": "uint64_val",
    "b": "bool_val",
    "s": "string_val",
    "c64": "scomplex_val",
    "c128": "dcomplex_val",
    "matrix": "float_val",
    "count": "int64_val",  # a scalar
    "empty": None,  # shape [n, 0]: no values at all
}


def make_typed_model(out: Path) -> Path:
    class Typed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            n = tf.shape(x)[0]
            small = tf.cast(tf.math.floormod(tf.abs(x), 8.0), tf.int32)
            return {
                "f32": 2.0 * x + 1.0,
                "f64": tf.cast(x, tf.float64) / 4.0,
                "f16": tf.cast(x, tf.float16),
                "bf16": tf.cast(x, tf.bfloat16),
                "i8": tf.cast(small - 4, tf.int8),
                "i16": tf.cast(small * -300, tf.int16),
                "i32": small - 3,
                "i64": tf.cast(small, tf.int64) * -(10**12),
                "u8": tf.cast(small * 30, tf.uint8),
                "u16": tf.cast(small * 9000, tf.uint16),
                "u32": tf.cast(small, tf.uint32) * 600_000_000,
                "u64": tf.cast(small, tf.uint64) * (2**61),
                "b": x > 0.0,
                "s": tf.strings.as_string(x, precision=3),
                "c64": tf.complex(x, -x),
                "c128": tf.complex(tf.cast(x, tf.float64), tf.cast(x, tf.float64) * 2.0),
                "matrix": tf.stack([x, 2.0 * x, 3.0 * x], axis=1),
                "count": tf.cast(n, tf.int64),
                "empty": tf.zeros(tf.stack([n, 0])),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
        def strings(self, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"upper": tf.strings.upper(s), "length": tf.strings.length(s)}

    module = Typed()
    tf.saved_model.save(
        module, str(out), signatures={"serving_default": module.serve, "strings": module.strings}
    )
    return out


# --- servers ----------------------------------------------------------------------------------


def rpc_error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@dataclass
class Env:
    root: Path
    server: ManagedProcess
    client: ModelServerClient
    gateway: Http
    typed_model: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("clients")
    root = work / "models"
    make_linear_model(root / "ranker" / "1", 2.0, 1.0)
    make_linear_model(root / "ranker" / "2", 3.0, 1.0)
    make_example_model(root / "ex" / "4", 2.0, 1.0)
    typed = make_typed_model(root / "typed" / "1")
    cfg = work / "models.config"
    cfg.write_text(
        config_text(
            {
                "ranker": {
                    "base_path": str(root / "ranker"),
                    "versions": [1, 2],
                    "labels": {"stable": 1, "canary": 2},
                },
                "ex": {"base_path": str(root / "ex")},
                "typed": {"base_path": str(root / "typed")},
            }
        )
    )
    server = start_model_server(work, model_config_file=str(cfg))
    client = ModelServerClient(server.grpc_port, server.rest_port)  # type: ignore[attr-defined]
    serving = [(2, STATE.AVAILABLE, 0, ""), (1, STATE.AVAILABLE, 0, "")]
    wait_for(lambda: client.status_entries("ranker") == serving)
    gateway, port = start_gateway(
        work,
        "gateway",
        {
            "MODELSYNC_TFSERVING": f"127.0.0.1:{server.grpc_port}",  # type: ignore[attr-defined]
            "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{server.rest_port}",  # type: ignore[attr-defined]
            "MODELSYNC_HTTP_HOST": "127.0.0.1",
        },
    )
    yield Env(root, server, client, Http(port), typed)
    client.channel.close()
    codes = {p.name: p.stop() for p in (gateway, server)}
    assert codes == {"gateway": 0, "model-server": 0}, server.log_tail() + gateway.log_tail()


# --- typed fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", BATCHES)
def test_predict_scores_are_in_float_val(env: Env, n: int) -> None:
    x = xs(n)
    packed = tf.make_tensor_proto(x)  # what most clients send: tensor_content
    assert packed.tensor_content or n == 1
    typed = tensor_pb2.TensorProto(dtype=DT_FLOAT)  # what a typed-field client sends
    typed.tensor_shape.dim.add().size = n
    typed.float_val.extend(x.tolist())
    for request in (packed, typed):
        resp = env.client.predict_response("ranker", {"x": request}, version=1)
        assert typed_float_scores(resp.outputs["y"]) == linear(x).tolist()
        assert [d.size for d in resp.outputs["y"].tensor_shape.dim] == [n]
    resp = env.client.predict_response("ranker", {"x": x}, version=2, signature="double")
    assert sorted(resp.outputs) == ["y", "y2"]
    assert typed_float_scores(resp.outputs["y"]) == linear(x, 3.0).tolist()
    assert typed_float_scores(resp.outputs["y2"]) == (2 * linear(x, 3.0)).tolist()


def test_every_output_dtype_is_in_its_typed_field(env: Env) -> None:
    x = np.array([1.5, -2.0, 0.0, 7.25, -0.125], dtype=np.float32)
    expected = tf.saved_model.load(str(env.typed_model)).signatures["serving_default"](
        x=tf.constant(x)
    )
    resp = env.client.predict_response("typed", {"x": x})
    assert sorted(resp.outputs) == sorted(TYPED_FIELDS)
    for name, field in TYPED_FIELDS.items():
        proto, want = resp.outputs[name], expected[name].numpy()
        assert not proto.tensor_content, name
        assert proto.dtype == expected[name].dtype.as_datatype_enum, name
        assert proto.HasField("tensor_shape"), name
        assert tuple(d.size for d in proto.tensor_shape.dim) == want.shape, name
        filled = {f.name for f, _ in proto.ListFields()} - {"dtype", "tensor_shape"}
        assert filled == ({field} if field else set()), (name, filled)
        got = tf.make_ndarray(proto)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert list(resp.outputs["count"].int64_val) == [5]  # a scalar: one value, no dims
    assert list(resp.outputs["s"].string_val) == [
        b"1.500",
        b"-2.000",
        b"0.000",
        b"7.250",
        b"-0.125",
    ]
    assert list(resp.outputs["f16"].half_val)[:2] == [0x3E00, 0xC000]  # 1.5, -2.0 as bits


def test_string_inputs_typed_or_packed_are_answered(env: Env) -> None:
    """A string tensor packed in tensor_content is a valid request (Tensor::FromProto reads it):
    answered like the same strings in string_val."""
    from modelsync.tensors import encode_string_list

    words = [b"ab", "é".encode(), b"", b"x" * 200]
    typed = tf.make_tensor_proto(words)
    packed = tf.make_tensor_proto(words)
    del packed.string_val[:]
    packed.tensor_content = encode_string_list(words)
    for request in (typed, packed):
        resp = env.client.predict_response("typed", {"s": request}, signature="strings")
        assert list(resp.outputs["upper"].string_val) == [w.upper() for w in words]
        assert list(resp.outputs["length"].int_val) == [len(w) for w in words]


def examples(n: int) -> tuple[np.ndarray, Any]:
    x = xs(n)
    inp = classification_pb2.ClassificationRequest().input
    for value in x.tolist():
        inp.example_list.examples.add().features.feature["x"].float_list.value.append(value)
    return x, inp


@pytest.mark.parametrize("n", BATCHES)
def test_classify_and_regress_answer_every_example(env: Env, n: int) -> None:
    x, inp = examples(n)
    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "ex", "regress"
    req.input.CopyFrom(inp)
    resp = env.client.predict_stub.Regress(req, timeout=60)
    assert [r.value for r in resp.result.regressions] == linear(x).tolist()
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name, creq.model_spec.signature_name = "ex", "classify"
    creq.input.CopyFrom(inp)
    cresp = env.client.predict_stub.Classify(creq, timeout=60)
    assert len(cresp.result.classifications) == n
    p = 1.0 / (1.0 + np.exp(-linear(x).astype(np.float64)))
    for row, pi in zip(cresp.result.classifications, p, strict=True):
        assert [c.label for c in row.classes] == ["neg", "pos"]
        assert row.classes[1].score == pytest.approx(pi, abs=1e-6)
        assert row.classes[0].score == pytest.approx(1.0 - pi, abs=1e-6)


@pytest.mark.parametrize("n", BATCHES)
def test_gateway_rest_and_mlflow_answers_are_complete(env: Env, n: int) -> None:
    """Through the gateway: TF Serving REST passed through (predict, row and columnar, and
    regress) and the MLflow route, which reads the gRPC answer's typed fields."""
    x = xs(n)
    want = linear(x).tolist()

    def floats(values: list[Any]) -> list[float]:
        assert all(isinstance(v, float) for v in values)
        return np.array(values, dtype=np.float32).tolist()

    got = env.gateway.post("/v1/models/ranker/versions/1:predict", {"instances": x.tolist()})
    assert got.status == 200 and list(got.doc) == ["predictions"]
    assert floats(got.doc["predictions"]) == want
    got = env.gateway.post("/v1/models/ranker/labels/stable:predict", {"inputs": {"x": x.tolist()}})
    assert got.status == 200 and floats(got.doc["outputs"]) == want
    got = env.gateway.post(
        "/v1/models/ex:regress",
        {"signature_name": "regress", "examples": [{"x": v} for v in x.tolist()]},
    )
    assert got.status == 200 and floats(got.doc["result"]) == want
    got = env.gateway.post("/model/ranker/1/invocations", {"inputs": {"x": x.tolist()}})
    assert got.status == 200 and got.version == 1
    assert floats(got.doc["predictions"]) == want


# --- model_spec ---------------------------------------------------------------------------------


def test_answers_name_the_version_that_answered(env: Env) -> None:
    """MakeModelSpec: the requested name, the version that answered (the latest for a name-only
    request, the labelled one for a label — never the label), serving_default for an empty
    signature name; GetModelMetadata sets no signature name."""
    x = {"x": xs(2)}
    for kwargs, version in (
        ({}, 2),
        ({"version": 1}, 1),
        ({"label": "stable"}, 1),
        ({"label": "canary"}, 2),
    ):
        spec = env.client.predict_response("ranker", x, **kwargs).model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == (
            "ranker",
            version,
            "serving_default",
        ), kwargs
        assert spec.WhichOneof("version_choice") == "version"
    spec = env.client.predict_response("ranker", x, label="stable", signature="double").model_spec
    assert (spec.version.value, spec.signature_name) == (1, "double")

    _x, inp = examples(1)
    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "ex", "regress"
    req.input.CopyFrom(inp)
    spec = env.client.predict_stub.Regress(req, timeout=10).model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("ex", 4, "regress")
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name, creq.model_spec.signature_name = "ex", "classify"
    creq.input.CopyFrom(inp)
    spec = env.client.predict_stub.Classify(creq, timeout=10).model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("ex", 4, "classify")

    mreq = get_model_metadata_pb2.GetModelMetadataRequest()
    mreq.model_spec.name, mreq.model_spec.version_label = "ranker", "canary"
    mreq.metadata_field.append("signature_def")
    spec = env.client.predict_stub.GetModelMetadata(mreq, timeout=10).model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("ranker", 2, "")


# --- error codes --------------------------------------------------------------------------------


def test_unknown_model_version_and_label(env: Env) -> None:
    c, x = env.client, {"x": xs(1)}
    not_found = grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: c.predict_response("nope", x)) == (
        not_found,
        "Servable not found for request: Latest(nope)",
    )
    assert rpc_error(lambda: c.predict_response("ranker", x, version=9)) == (
        not_found,
        "Servable not found for request: Specific(ranker, 9)",
    )
    unknown_label = (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: nope",
    )
    assert rpc_error(lambda: c.predict_response("ranker", x, label="nope")) == unknown_label
    assert rpc_error(lambda: c.predict_response("nope", x, label="nope")) == unknown_label
    assert rpc_error(lambda: c.predict_response("", x)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )
    assert rpc_error(lambda: c.predict_stub.Predict(predict_pb2.PredictRequest(), timeout=10)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    status_req = get_model_status_pb2.GetModelStatusRequest()
    assert rpc_error(lambda: c.model_stub.GetModelStatus(status_req, timeout=10)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    assert rpc_error(lambda: c.status_entries("nope")) == (
        not_found,
        "Could not find any versions of model nope",
    )
    assert rpc_error(lambda: c.status_entries("ranker", version=9)) == (
        not_found,
        "Could not find version 9 of model ranker",
    )
    # REST: the same codes as HTTP statuses, through the gateway
    assert env.gateway.post("/v1/models/nope:predict", {"instances": [1.0]}).status == 404
    got = env.gateway.post("/v1/models/ranker/versions/9:predict", {"instances": [1.0]})
    assert got.status == 404
    got = env.gateway.post("/v1/models/ranker/labels/nope:predict", {"instances": [1.0]})
    assert (got.status, got.doc) == (400, {"error": unknown_label[1]})


def test_bad_input(env: Env) -> None:
    c = env.client
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    code, message = rpc_error(lambda: c.predict_response("ranker", {"z": xs(2)}))
    assert code == invalid and message.startswith(
        "Signature input alias: x(feed name: serving_default_x:0) not found in request"
    )
    code, message = rpc_error(lambda: c.predict_response("ranker", {"x": xs(2), "z": xs(2)}))
    assert code == invalid and message.startswith("input size does not match signature: 2!=1")
    code, message = rpc_error(lambda: c.predict_response("ranker", {"x": xs(2).astype(np.float64)}))
    assert (code, message) == (invalid, "Expects arg[0] to be float but double is provided")
    code, _message = rpc_error(lambda: c.predict_response("ranker", {"x": xs(4).reshape(2, 2)}))
    assert code == invalid
    bad = tf.make_tensor_proto(xs(4))
    bad.tensor_content = bad.tensor_content[:-2]  # not 4 floats
    assert rpc_error(lambda: c.predict_response("ranker", {"x": bad})) == (
        invalid,
        "tensor parsing error: x",
    )
    assert rpc_error(lambda: c.predict_response("ranker", {"x": xs(2)}, signature="nope")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )
    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "ex", "nope"
    req.input.CopyFrom(examples(1)[1])
    assert rpc_error(lambda: c.predict_stub.Regress(req, timeout=10)) == (
        invalid,
        "No signature was found with the name: nope",
    )
    got = env.gateway.post(
        "/v1/models/ranker:predict", {"signature_name": "nope", "instances": [1.0]}
    )
    assert (got.status, got.doc) == (
        400,
        {"error": 'Serving signature name: "nope" not found in signature def'},
    )


# --- the official flag ----------------------------------------------------------------------------


def test_serialization_as_tensor_content_flag(env: Env, tmp_path: Path) -> None:
    """--enable_serialization_as_tensor_content packs every output (strings too), as
    Tensor::AsProtoTensorContent; a typed-field client then finds no scores — which is why it
    is off by default."""
    server = start_model_server(
        tmp_path,
        model_name="ranker",
        model_base_path=str(env.root / "ranker"),
        flags=["--enable_serialization_as_tensor_content"],
    )
    client = ModelServerClient(server.grpc_port, server.rest_port)  # type: ignore[attr-defined]
    try:
        x = xs(50)
        resp = client.predict_response("ranker", {"x": x})
        with pytest.raises(NoScores):
            typed_float_scores(resp.outputs["y"])
        assert not resp.outputs["y"].float_val
        assert tf.make_ndarray(resp.outputs["y"]).tolist() == linear(x, 3.0).tolist()
    finally:
        client.channel.close()
        assert server.stop() == 0, server.log_tail()
    server = start_model_server(
        tmp_path,
        model_name="typed",
        model_base_path=str(env.root / "typed"),
        flags=["--enable_serialization_as_tensor_content=true"],
        name="typed-server",
    )
    client = ModelServerClient(server.grpc_port, server.rest_port)  # type: ignore[attr-defined]
    try:
        words = [b"ab", b"cde"]
        strings = {"s": np.array(words, dtype=object)}
        resp = client.predict_response("typed", strings, signature="strings")
        upper = resp.outputs["upper"]
        assert not upper.string_val and upper.tensor_content
        got = tf.io.parse_tensor(upper.SerializeToString(), tf.string).numpy().tolist()
        assert got == [b"AB", b"CDE"]
    finally:
        client.channel.close()
        assert server.stop() == 0, server.log_tail()


# --- GetModelStatus -----------------------------------------------------------------------------


def test_model_status_order_and_end_entries(tmp_path: Path, model_factory: Any) -> None:
    """Highest version first, as the ServableStateMonitor's version map (std::greater); END
    entries stay after an unload and after the model leaves the config; a label is not looked
    at; a model with no version loaded answers NOT_FOUND Latest(...), not UNAVAILABLE."""
    root = tmp_path / "models"
    for v in (1, 2, 3):
        shutil.copytree(model_factory(float(v)), root / "life" / str(v))
    (root / "empty").mkdir(parents=True)

    def config(versions: list[int], labels: dict[str, int]) -> str:
        return config_text(
            {
                "life": {"base_path": str(root / "life"), "versions": versions, "labels": labels},
                "empty": {"base_path": str(root / "empty")},
            }
        )

    cfg = tmp_path / "models.config"
    cfg.write_text(config([1, 2, 3], {"stable": 1}))
    server = start_model_server(tmp_path, model_config_file=str(cfg))
    client = ModelServerClient(server.grpc_port, server.rest_port)  # type: ignore[attr-defined]
    rest = Http(server.rest_port)  # type: ignore[attr-defined]
    up, end = STATE.AVAILABLE, STATE.END

    def states(**kwargs: Any) -> list[tuple[int, int]]:
        entries = client.status_entries("life", **kwargs)
        assert all(e[2:] == (0, "") for e in entries), entries  # every status OK
        return [e[:2] for e in entries]

    try:
        wait_for(lambda: states() == [(3, up), (2, up), (1, up)])
        assert states(label="stable") == states(label="nope") == states()
        assert states(version=2) == [(2, up)]
        doc = rest.get("/v1/models/life").doc
        assert [s["version"] for s in doc["model_version_status"]] == ["3", "2", "1"]
        assert rest.get("/v1/models/life/labels/nope").doc == doc

        assert client.reload(config([3, 1], {"stable": 1})) == (0, "")  # v2 unloads: END stays
        wait_for(lambda: states()[1] == (2, end))
        assert states() == [(3, up), (2, end), (1, up)]
        assert rpc_error(lambda: client.predict_response("life", {"x": xs(1)}, version=2)) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(life, 2)",
        )

        assert rpc_error(lambda: client.predict_response("empty", {"x": xs(1)})) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(empty)",
        )
        assert rpc_error(lambda: client.status_entries("empty"))[0] == grpc.StatusCode.NOT_FOUND

        assert client.reload("model_config_list {}") == (0, "")  # the model leaves: all END
        wait_for(lambda: states() == [(3, end), (2, end), (1, end)])
        assert rpc_error(lambda: client.predict_response("life", {"x": xs(1)})) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(life)",
        )
    finally:
        client.channel.close()
        assert server.stop() == 0, server.log_tail()
