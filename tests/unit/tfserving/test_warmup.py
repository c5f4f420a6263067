"""tfserving.warmup: the TFRecord reading of TensorFlow's SequentialRecordReader (checked against
TensorFlow's own reader) and the replay rules of saved_model_warmup_util.cc, on a fake servable."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelsync.tfrecord import masked_crc, write_records
from tfserving.errors import ServingError
from tfserving.warmup import ReadStatus, read_records, run_saved_model_warmup

GOOD = write_records([b"abc", b"defgh"])


def _header(length: int) -> bytes:
    return struct.pack("<Q", length) + struct.pack("<I", masked_crc(struct.pack("<Q", length)))


CASES = {
    "good": GOOD,
    "empty": b"",
    "short": b"short",
    "text": b"this is not a TFRecord file\n",
    "truncated body": GOOD[:14],
    "truncated second": GOOD[:-3],
    "partial header": GOOD[:22],
    "bad body crc": GOOD[:12] + b"abd" + GOOD[15:],
    "bad second header": GOOD[:19] + b"\0" + GOOD[20:],
    "no body crc": GOOD[:15],
    "negative": _header(2**63),
    "too large": _header(2**64 - 4),
    "empty record": write_records([b""]),
}


def tensorflow_reads(path: Path) -> tuple[str, Any]:
    import tensorflow as tf

    try:
        return "OK", list(tf.compat.v1.io.tf_record_iterator(str(path)))
    except tf.errors.OpError as exc:
        return status_code(exc), exc.message


def status_code(exc: Any) -> str:
    import tensorflow as tf

    return {
        tf.errors.DataLossError: "DATA_LOSS",
        tf.errors.InvalidArgumentError: "INVALID_ARGUMENT",
    }[type(exc)]


def we_read(path: Path) -> tuple[str, Any]:
    with path.open("rb") as f:
        out: list[bytes] = []
        try:
            for record in read_records(f):
                out.append(record)
        except ReadStatus as exc:
            return exc.code, exc.message
    return "OK", out


@pytest.mark.parametrize("name", sorted(CASES))
def test_reads_as_tensorflow(name: str, tmp_path: Path) -> None:
    path = tmp_path / "records"
    path.write_bytes(CASES[name])
    assert we_read(path) == tensorflow_reads(path)


class FakeServable:
    """What the replay needs of a Servable: the MetaGraph's signature keys and run()."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.meta_graph = type("MG", (), {"signature_def": {"serving_default": None}})()
        self.calls: list[list[float]] = []
        self.fail_on = fail_on

    def run(
        self, signature_name: str, inputs: dict[str, np.ndarray], output_filter: Any = None
    ) -> dict[str, np.ndarray]:
        self.calls.append(inputs["x"].tolist())
        if self.fail_on in self.calls[-1]:
            raise ServingError("INVALID_ARGUMENT", "bad x")
        return {"y": inputs["x"]}


def write(version: Path, records: list[bytes]) -> None:
    (version / "assets.extra").mkdir(parents=True)
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(write_records(records))


def predict(x: float, signature: str = "") -> bytes:
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    req = log.predict_log.request
    req.model_spec.name, req.model_spec.signature_name = "other", signature
    req.inputs["x"].dtype = 1
    req.inputs["x"].tensor_shape.dim.add().size = 1
    req.inputs["x"].float_val.append(x)
    return log.SerializeToString()


def replay(version: Path, servable: FakeServable, **kwargs: Any) -> tuple[Any, list[Any]]:
    recorded: list[Any] = []
    try:
        result: Any = run_saved_model_warmup(
            servable,
            str(version),  # type: ignore[arg-type]
            lambda *a: recorded.append(a[:2] + a[3:]),
            **kwargs,
        )
    except ServingError as exc:
        result = (exc.code, exc.message)
    return result, recorded


def test_no_file_is_fine(tmp_path: Path) -> None:
    assert replay(tmp_path, FakeServable()) == (0, [])


def test_iterations_and_the_record_limit(tmp_path: Path) -> None:
    write(tmp_path / "1", [predict(1.0), predict(2.0)])
    servable = FakeServable()
    assert replay(tmp_path / "1", servable, num_request_iterations=2) == (
        2,
        [(str(tmp_path / "1"), "OK", 2)],
    )
    assert servable.calls == [[1.0], [1.0], [2.0], [2.0]]
    write(tmp_path / "2", [predict(float(i)) for i in range(1001)])
    servable = FakeServable()
    path = tmp_path / "2" / "assets.extra" / "tf_serving_warmup_requests"
    assert replay(tmp_path / "2", servable) == (
        ("INVALID_ARGUMENT", f"Number of warmup records exceeds the maximum (1000) at {path}"),
        [],
    )  # returned at once: no metric
    assert len(servable.calls) == 1001  # the 1,001st ran before the count was checked


def test_failures(tmp_path: Path) -> None:
    write(tmp_path / "1", [predict(1.0), predict(2.0), predict(3.0)])
    servable = FakeServable(fail_on=2.0)
    assert replay(tmp_path / "1", servable) == (("INVALID_ARGUMENT", "bad x"), [])
    assert servable.calls == [[1.0], [2.0]]
    write(tmp_path / "2", [predict(1.0, signature="nope")])
    assert replay(tmp_path / "2", FakeServable())[0] == (
        "FAILED_PRECONDITION",
        'Serving signature key "nope" not found.',
    )
    write(tmp_path / "3", [b"\xff\xff not a PredictionLog"])
    code, message = replay(tmp_path / "3", FakeServable())[0]
    assert code == "INVALID_ARGUMENT" and message.startswith("Failed to parse warmup record: ")
    write(tmp_path / "4", [predict(1.0), b""])  # an empty PredictionLog runs nothing
    assert replay(tmp_path / "4", FakeServable())[0] == 2


def test_data_loss_is_recorded_then_returned(tmp_path: Path) -> None:
    write(tmp_path / "1", [predict(1.0)])
    path = tmp_path / "1" / "assets.extra" / "tf_serving_warmup_requests"
    offset = path.stat().st_size  # where the second "record" starts
    path.write_bytes(path.read_bytes() + b"garbage after the first record")
    servable = FakeServable()
    result, recorded = replay(tmp_path / "1", servable)
    assert result == (
        "DATA_LOSS",
        f"corrupted record at {offset}. Please verify your warmup data is in TFRecord format.",
    )
    assert recorded == [(str(tmp_path / "1"), f"DATA_LOSS: corrupted record at {offset}", 1)]
    assert servable.calls == [[1.0]]
