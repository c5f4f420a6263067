"""JSON requests -> TF Serving's warmup file (modelsync.warmup), read back with TensorFlow's own
TFRecord reader and tensorflow-serving-api's PredictionLog."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelsync.publish import PublishError, stage_warmup
from modelsync.savedmodel import saved_model_signatures
from modelsync.tensors import Signature, TensorSpec
from modelsync.warmup import WARMUP_FILE, WarmupError, prediction_logs, warmup_file_bytes

SIGS = {
    "serving_default": Signature({"x": TensorSpec("float32", (-1,))}, {}),
    "multi": Signature(
        {
            "x": TensorSpec("float32", (-1,)),
            "n": TensorSpec("int64", (-1,)),
            "s": TensorSpec("string", (-1,)),
            "ok": TensorSpec("bool", (-1,)),
        },
        {},
    ),
    "matrix": Signature({"m": TensorSpec("float64", (-1, 2))}, {}),
    "small": Signature({"b": TensorSpec("int8", None), "u": TensorSpec("uint8", None)}, {}),
}


def read_with_tensorflow(data: bytes, tmp_path: Path) -> list[Any]:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = tmp_path / "tf_serving_warmup_requests"
    path.write_bytes(data)
    return [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(path))
    ]


def inputs_of(log: Any) -> dict[str, np.ndarray]:
    import tensorflow as tf

    assert log.WhichOneof("log_type") == "predict_log"
    return {k: tf.make_ndarray(v) for k, v in log.predict_log.request.inputs.items()}


def test_row_and_columnar_forms_as_tensorflow_reads_them(tmp_path: Path) -> None:
    lines = [
        json.dumps({"instances": [1.0, 2, -0.5]}),
        "",
        json.dumps(
            {
                "signature_name": "multi",
                "instances": [
                    {"x": 1.5, "n": 2**40, "s": "héllo", "ok": True},
                    {
                        "x": 2,
                        "n": -3,
                        "s": {"b64": base64.b64encode(b"\x00\xff").decode()},
                        "ok": False,
                    },
                ],
            }
        ),
        json.dumps({"signature_name": "matrix", "inputs": {"m": [[1, 2], [3.5, 4]]}}),
        json.dumps({"inputs": [7.0]}),
        json.dumps({"signature_name": "small", "inputs": {"b": -128, "u": [[255]]}}),
    ]
    logs = read_with_tensorflow(warmup_file_bytes(lines, SIGS, "ranker"), tmp_path)
    assert len(logs) == 5
    specs = [log.predict_log.request.model_spec for log in logs]
    assert {s.name for s in specs} == {"ranker"}
    assert [s.signature_name for s in specs] == ["", "multi", "matrix", "", "small"]
    first = inputs_of(logs[0])
    assert first["x"].dtype == np.float32 and first["x"].tolist() == [1.0, 2.0, -0.5]
    multi = inputs_of(logs[1])
    assert multi["x"].dtype == np.float32 and multi["x"].tolist() == [1.5, 2.0]
    assert multi["n"].dtype == np.int64 and multi["n"].tolist() == [2**40, -3]
    assert multi["s"].tolist() == ["héllo".encode(), b"\x00\xff"]
    assert multi["ok"].dtype == np.bool_ and multi["ok"].tolist() == [True, False]
    matrix = inputs_of(logs[2])["m"]
    assert matrix.dtype == np.float64 and matrix.tolist() == [[1.0, 2.0], [3.5, 4.0]]
    assert inputs_of(logs[3])["x"].tolist() == [7.0]
    small = inputs_of(logs[4])
    assert small["b"].dtype == np.int8 and small["b"].shape == () and int(small["b"]) == -128
    assert small["u"].dtype == np.uint8 and small["u"].tolist() == [[255]]


def test_the_same_messages_as_tensorflow_serving_api(tmp_path: Path) -> None:
    ours = prediction_logs([json.dumps({"instances": [1.0, 2.0]})], SIGS, "m")
    theirs = read_with_tensorflow(
        warmup_file_bytes([json.dumps({"instances": [1.0, 2.0]})], SIGS, "m"), tmp_path
    )
    assert [o.SerializeToString() for o in ours] == [t.SerializeToString() for t in theirs]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"instances": [1.0], "inputs": [1.0]}', "exactly one of"),
        ('{"signature_name": "nope", "instances": [1.0]}', "no signature 'nope'"),
        ('{"signature_name": 3, "instances": [1.0]}', "must be a string"),
        ('{"instances": [], "x": 1}', "unknown key(s) x"),
        ('{"instances": []}', "non-empty list"),
        ('{"inputs": {"z": [1.0]}}', "unknown input(s) z"),
        ('{"instances": [{"z": 1.0}]}', "unknown input(s) z; missing input(s) x"),
        ('{"instances": ["a"]}', '"a" is not a number (float32)'),
        ('{"instances": [true]}', "true is not a number"),
        (
            '{"signature_name": "multi", "instances": [{"x": 1, "n": 1.5, "s": "", "ok": true}]}',
            "1.5 is not an integer (int64)",
        ),
        (
            '{"signature_name": "multi", "instances": [{"x": 1, "n": 1, "s": 3, "ok": true}]}',
            "is not a string",
        ),
        (
            '{"signature_name": "multi", "instances": [{"x": 1, "n": 1, "s": {"b64": "%%"}, '
            '"ok": true}]}',
            "bad base64",
        ),
        (
            '{"signature_name": "multi", "instances": [{"x": 1, "n": 1, "s": "", "ok": 1}]}',
            "is not true or false",
        ),
        ('{"signature_name": "multi", "instances": [1.0]}', "must be objects naming each input"),
        ('{"signature_name": "multi", "inputs": [1.0]}', "must be an object naming each input"),
        ('{"signature_name": "small", "inputs": {"b": 300, "u": 1}}', "out of the range of int8"),
        ('{"instances": [[1.0], 2.0]}', "ragged"),
        ('{"instances": [[1.0]]}', "shape [1, 1] does not fit the signature's [?]"),
        ('{"signature_name": "matrix", "inputs": {"m": [[1, 2, 3]]}}', "does not fit"),
        ('{"instances": [{"x": 1.0}, 2.0]}', "mixes objects and plain values"),
    ],
)
def test_a_bad_line_is_named(line: str, reason: str) -> None:
    good = json.dumps({"instances": [1.0]})
    with pytest.raises(WarmupError) as info:
        prediction_logs([good, "", line, good], SIGS, "m", source="req.jsonl")
    assert str(info.value).startswith("req.jsonl line 3: "), info.value
    assert reason in str(info.value)


def test_limits() -> None:
    line = json.dumps({"instances": [1.0]})
    assert len(prediction_logs([line] * 1000, SIGS, "m")) == 1000
    with pytest.raises(WarmupError, match="line 1001: more than 1000 requests"):
        prediction_logs([line] * 1001, SIGS, "m")
    with pytest.raises(WarmupError, match="no requests"):
        prediction_logs(["", "  "], SIGS, "m")


def test_signatures_of_a_real_savedmodel(model_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = model_factory(2.0)
    sigs = saved_model_signatures("saved_model.pb", (src / "saved_model.pb").read_bytes())
    lines = [json.dumps({"signature_name": "double", "instances": [3.0]})]
    (log,) = read_with_tensorflow(warmup_file_bytes(lines, sigs, "m"), tmp_path)
    assert inputs_of(log)["x"].tolist() == [3.0]
    with pytest.raises(WarmupError, match="unknown input"):
        warmup_file_bytes([json.dumps({"inputs": {"y": [1.0]}})], sigs, "m")


def test_stage_warmup(model_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = model_factory(2.0)
    requests = tmp_path / "w.jsonl"
    requests.write_text(json.dumps({"instances": [1.0]}) + "\n")
    staged = stage_warmup(src, requests, tmp_path / "stage", "m")
    assert (staged / WARMUP_FILE).is_file() and not (src / WARMUP_FILE).exists()
    assert sorted(
        p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()
    ) == sorted(
        [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()] + [WARMUP_FILE]
    )

    with pytest.raises(PublishError, match=r"already has assets\.extra/tf_serving_warmup"):
        stage_warmup(staged, requests, tmp_path / "again", "m")
    tarball = tmp_path / "m.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=".")
    with pytest.raises(PublishError, match="needs a SavedModel directory"):
        stage_warmup(tarball, requests, tmp_path / "tar", "m")
    requests.write_text('{"inputs": {"x": ["a"]}}\n')
    with pytest.raises(PublishError, match=r"w\.jsonl line 1: .*not a number"):
        stage_warmup(src, requests, tmp_path / "bad", "m")
    assert not (tmp_path / "bad").exists()  # nothing staged
    with pytest.raises(PublishError, match="No such file"):
        stage_warmup(src, tmp_path / "missing.jsonl", tmp_path / "missing", "m")
