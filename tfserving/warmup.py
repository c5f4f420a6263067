"""TF Serving's model warmup: replay ``assets.extra/tf_serving_warmup_requests`` while a version
loads, before it becomes AVAILABLE.

As ``tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc``
(``RunSavedModelWarmupUntracked``, one warmup thread, the default) and ``saved_model_warmup.cc``
(``RunWarmupRequest``):

* no file: nothing happens (OK, nothing recorded);
* records are read one at a time with TensorFlow's ``SequentialRecordReader`` semantics
  (:func:`read_records`): a clean or partial-header end of file is the end; a bad checksum or a
  truncated body is ``DATA_LOSS``; a record that is not a ``PredictionLog`` is
  ``INVALID_ARGUMENT: Failed to parse warmup record: …``;
* each record runs ``num_request_iterations`` times (default 1) against the version being
  loaded: the model name and version of its ``model_spec`` are ignored (only
  ``signature_name`` counts); predict, classify, regress and multi_inference logs run,
  ``predict_streamed_log``/``session_run_log`` are ``UNIMPLEMENTED: Unsupported log_type for
  warmup: <field number>``, a record with no log is skipped;
* the count is checked after a record ran: the 1,001st record runs, then ``INVALID_ARGUMENT:
  Number of warmup records exceeds the maximum (1000) at <file>``;
* a failing request, a record that does not parse and too many records return at once, with no
  metric; only when reading ends (end of file or a read error) is
  ``model_warmup_latency{model_path=<export dir>, status}`` recorded (µs, ``status`` ``"OK"`` or
  ``"CODE: message"``) with ``model_warmup_records_read``; a ``DATA_LOSS`` is then returned as
  ``<message>. Please verify your warmup data is in TFRecord format.``

Any error fails the load (the manager retries it like any failed load).
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from modelsync.log import get_logger
from modelsync.tfrecord import masked_crc
from tfserving.errors import ServingError
from tfserving.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Servable,
    classify_rows,
    examples_signature_name,
    predict_signature_name,
    regress_values,
    run_examples,
    serialized_examples,
    tensor_to_ndarray,
)

log = get_logger("model_server")

ASSETS_EXTRA = "assets.extra"
REQUESTS_FILE = "tf_serving_warmup_requests"
MAX_NUM_RECORDS = 1000  # WarmupConsts::kMaxNumRecords
_SIZE_MAX = 2**64 - 1

# (model_path, status, latency_us, records_read)
Recorder = Callable[[str, str, int, int], None]


class ReadStatus(ServingError):
    """What TensorFlow's record reader returned instead of a record (ends the reading)."""


def warmup_file(export_dir: str) -> str:
    return os.path.join(export_dir, ASSETS_EXTRA, REQUESTS_FILE)


def status_text(exc: ServingError | None) -> str:
    """``absl::Status::ToString()``."""
    return "OK" if exc is None else f"{exc.code}: {exc.message}"


def _suffix(offset: int) -> str:
    return " (Is this even a TFRecord file?)" if offset == 0 else ""


def _read_checksummed(f: IO[bytes], remaining: int, offset: int, n: int) -> bytes | None:
    """``RecordReader::ReadChecksummed``; None where TensorFlow's read gives OUT_OF_RANGE."""
    if n >= _SIZE_MAX - 4:
        raise ReadStatus("DATA_LOSS", "record size too large" + _suffix(offset))
    expected = n + 4
    if expected >= 2**63:  # ReadNBytes takes an int64
        raise ReadStatus(
            "INVALID_ARGUMENT", f"Can't read a negative number of bytes: {expected - 2**64}"
        )
    if remaining < expected:
        return None  # "Read less bytes than requested"
    data = f.read(expected)
    if len(data) < expected:
        return None
    (crc,) = struct.unpack("<I", data[n:])
    if masked_crc(data[:n]) != crc:
        raise ReadStatus("DATA_LOSS", f"corrupted record at {offset}" + _suffix(offset))
    return data[:n]


def read_records(f: IO[bytes]) -> Iterator[bytes]:
    """The records of an open TFRecord file, as TensorFlow's ``SequentialRecordReader`` reads
    them; a read error is raised as :class:`ReadStatus` (with TensorFlow's code and message)."""
    size = os.fstat(f.fileno()).st_size
    offset = 0
    while True:
        header = _read_checksummed(f, size - offset, offset, 8)
        if header is None:
            return  # OUT_OF_RANGE: the end of the file (also after a partial header)
        (length,) = struct.unpack("<Q", header)
        body = _read_checksummed(f, size - offset - 12, offset + 12, length)
        if body is None:
            raise ReadStatus(
                "DATA_LOSS",
                f"truncated record at {offset}' failed with Read less bytes than requested",
            )
        yield body
        offset += 12 + length + 4


def _os_error(path: str, exc: OSError) -> ServingError:
    code = {
        errno.ENOENT: "NOT_FOUND",
        errno.EACCES: "PERMISSION_DENIED",
        errno.EPERM: "PERMISSION_DENIED",
        errno.EISDIR: "FAILED_PRECONDITION",
    }
    return ServingError(code.get(exc.errno or 0, "UNKNOWN"), f"{path}; {exc.strerror}")


def _signature_name(model_spec: Any) -> str:
    return str(model_spec.signature_name) or DEFAULT_SIGNATURE


def _run_predict(servable: Servable, request: Any) -> None:
    name = predict_signature_name(servable, request.model_spec.signature_name)
    inputs = {k: tensor_to_ndarray(t, k) for k, t in request.inputs.items()}
    servable.run(name, inputs, list(request.output_filter) or None)


def _run_examples(servable: Servable, request: Any, method: str) -> None:
    name = examples_signature_name(servable, request.model_spec.signature_name)
    outputs = run_examples(servable, name, method, serialized_examples(request.input))
    if method == CLASSIFY_METHOD:
        classify_rows(outputs)
    else:
        regress_values(outputs)


def _run_multi_inference(servable: Servable, request: Any) -> None:
    """``TensorFlowMultiInferenceRunner::Infer``'s checks, then each task on the input."""
    model_name = ""
    seen: set[str] = set()
    for task in request.tasks:
        if not task.model_spec.name:
            raise ServingError("INVALID_ARGUMENT", "Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise ServingError(
                "INVALID_ARGUMENT",
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
            )
        model_name = task.model_spec.name
        name = _signature_name(task.model_spec)
        if name in seen:
            raise ServingError("INVALID_ARGUMENT", f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if name not in servable.meta_graph.signature_def:
            raise ServingError(
                "INVALID_ARGUMENT", f"Requested signature not found in model graph: {name}"
            )
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                "UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}"
            )
    examples = serialized_examples(request.input)
    for task in request.tasks:
        outputs = run_examples(
            servable, _signature_name(task.model_spec), task.method_name, examples
        )
        if task.method_name == CLASSIFY_METHOD:
            classify_rows(outputs)
        else:
            regress_values(outputs)


def run_warmup_request(servable: Servable, prediction_log: Any) -> None:
    """``RunWarmupRequest``: one ``PredictionLog`` against ``servable``; raises ServingError."""
    kind = prediction_log.WhichOneof("log_type")
    if kind == "predict_log":
        _run_predict(servable, prediction_log.predict_log.request)
    elif kind == "classify_log":
        _run_examples(servable, prediction_log.classify_log.request, CLASSIFY_METHOD)
    elif kind == "regress_log":
        _run_examples(servable, prediction_log.regress_log.request, REGRESS_METHOD)
    elif kind == "multi_inference_log":
        _run_multi_inference(servable, prediction_log.multi_inference_log.request)
    elif kind is not None:  # predict_streamed_log (7), session_run_log (5)
        number = prediction_log.DESCRIPTOR.fields_by_name[kind].number
        raise ServingError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {number}")


def run_saved_model_warmup(
    servable: Servable,
    export_dir: str,
    record: Recorder | None = None,
    *,
    num_request_iterations: int = 1,
) -> int:
    """Replay the version's warmup file (if any) against ``servable``; returns the number of
    records read. Raises :class:`ServingError` (code and message as TF Serving's)."""
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    started = time.perf_counter()
    path = warmup_file(export_dir)
    if not os.path.exists(path):
        return 0  # "No warmup data file found": warmup is optional
    log.info("warmup_started", path=path, num_request_iterations=num_request_iterations)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _os_error(path, exc) from None
    records = 0
    status: ServingError | None = None
    with f:
        try:
            for raw in read_records(f):
                try:
                    prediction_log = prediction_log_pb2.PredictionLog.FromString(raw)
                except DecodeError:
                    text = raw.decode("utf-8", "replace")
                    raise ServingError(
                        "INVALID_ARGUMENT", f"Failed to parse warmup record: {text} from {path}"
                    ) from None
                for _ in range(num_request_iterations):
                    run_warmup_request(servable, prediction_log)
                records += 1
                if records > MAX_NUM_RECORDS:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        "Number of warmup records exceeds "
                        f"the maximum ({MAX_NUM_RECORDS}) at {path}",
                    )
        except ReadStatus as exc:
            status = ServingError(exc.code, exc.message)
        except OSError as exc:  # a read error of the file system
            status = _os_error(path, exc)
    latency_us = max(0, int((time.perf_counter() - started) * 1_000_000))
    if record is not None:
        record(export_dir, status_text(status), latency_us, records)
    if status is not None and status.code == "DATA_LOSS":
        raise ServingError(
            "DATA_LOSS", f"{status.message}. Please verify your warmup data is in TFRecord format."
        )
    if status is not None:
        raise status
    log.info("warmup_finished", path=path, records=records, micros=latency_us)
    return records
