"""Prometheus metrics of the model server: TF Serving's own, written as TF Serving writes them.

The official metrics (read in github.com/tensorflow/serving; details in modelsync/telemetry.py):

* ``:tensorflow:serving:request_count{model_name,status}`` — counter, every request of gRPC
  Predict/Classify/Regress and every REST ``/v1/`` request; ``status`` is the canonical code name
  (``tensorflow_serving/servables/tensorflow/util.cc``: ``RecordModelRequestCount``).
* ``:tensorflow:serving:request_latency{model_name,API,entrypoint}`` — histogram in microseconds,
  buckets ``Exponential(10, 1.8, 33)`` + ``+Inf``, OK requests only
  (``util.cc``: ``RecordRequestLatency``; callers in ``model_servers/prediction_service_impl.cc``
  with ``API`` ``Predict``/``Classify``/``Regress`` and ``entrypoint="GRPC"``, and in
  ``model_servers/http_server.cc`` with ``API`` = the REST verb or ``""`` and ``"REST"``).
* ``:tensorflow:serving:model_warmup_latency{model_path,status}`` — histogram in microseconds,
  same buckets, ``status`` = ``absl::Status::ToString()`` (``"OK"`` or ``"CODE: message"``)
  (``servables/tensorflow/saved_model_warmup_util.cc``), recorded only when the warmup read
  its file to the end or to a read error (``tfserving/warmup.py``); with it the counter
  ``:tensorflow:serving:model_warmup_records_read{model_path,status}`` (records read).

modelsync's per-version extension (``modelsync.telemetry.versions``, documented there), in the same
format after the official metrics, which it leaves exactly as they are:

* ``:modelsync:serving:request_count{model_name,version,status}`` — counter, the inference
  requests (Predict/Classify/Regress over gRPC and REST) that reached a version;
* ``:modelsync:serving:request_latency{model_name,version}`` — histogram in microseconds, the
  official buckets, OK requests only.

prometheus_client cannot write these (its counters gain ``_total``), so they are rendered here in
the format of ``tensorflow_serving/util/prometheus_exporter.cc``: ``# TYPE`` lines and no HELP,
metrics sorted by TensorFlow name, series sorted by label values, ``NAME{labels} <int>``,
``NAME_bucket{labels,le="%.6g"}`` cumulative up to ``le="+Inf"``, ``NAME_sum`` as ``%.6g``,
``NAME_count``. One deliberate difference: a newline in a label value is written ``\\n`` (the
official exporter escapes only ``\\`` and ``"``, so a model name with a newline could inject
lines). modelsync's own ``modelsync_model_server_*`` gauges follow, from prometheus_client.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from modelsync.telemetry import (
    INFERENCE_APIS,
    LATENCY_BOUNDS_US,
    VERSION_REQUEST_COUNT,
    VERSION_REQUEST_LATENCY,
)
from tfserving.manager import ModelManager
from tfserving.policy import State

GRPC = "GRPC"
REST = "REST"


def prometheus_name(tf_name: str) -> str:
    """``/tensorflow/serving/request_count`` -> ``:tensorflow:serving:request_count``."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


def _label_name(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _double(value: float) -> str:
    """``absl::StrCat(double)``: six significant digits, like ``%g``."""
    return "%.6g" % value  # noqa: UP031 - printf semantics are the point


class _Metric:
    def __init__(self, tf_name: str, label_names: Sequence[str]) -> None:
        self.tf_name = tf_name
        self.name = prometheus_name(tf_name)
        self.label_names = tuple(_label_name(n) for n in label_names)
        self._lock = threading.Lock()

    def _labels(self, values: Sequence[str]) -> list[str]:
        return [f'{n}="{_label_value(v)}"' for n, v in zip(self.label_names, values, strict=True)]

    def lines(self) -> list[str]:
        raise NotImplementedError


class OfficialCounter(_Metric):
    """A TensorFlow ``monitoring::Counter``: int64 cells by label values."""

    def __init__(self, tf_name: str, label_names: Sequence[str]) -> None:
        super().__init__(tf_name, label_names)
        self._cells: dict[tuple[str, ...], int] = {}

    def inc(self, labels: Sequence[str], by: int = 1) -> None:
        key = tuple(labels)
        with self._lock:
            self._cells[key] = self._cells.get(key, 0) + by

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted(self._cells.items())
        return [
            f"# TYPE {self.name} counter",
            *(f"{self.name}{{{','.join(self._labels(k))}}} {v}" for k, v in cells),
        ]


class OfficialSampler(_Metric):
    """A TensorFlow ``monitoring::Sampler``: a histogram per label values. A sample goes to the
    first bucket whose bound is greater than it (``std::upper_bound``), the last one is +Inf."""

    def __init__(self, tf_name: str, label_names: Sequence[str], bounds: Sequence[float]) -> None:
        super().__init__(tf_name, label_names)
        self.bounds = tuple(bounds)
        self._cells: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def add(self, labels: Sequence[str], value: float) -> None:
        key = tuple(labels)
        with self._lock:
            counts, total = self._cells.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
            counts[bisect.bisect_right(self.bounds, value)] += 1
            total[0] += value

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted((k, (list(c), t[0])) for k, (c, t) in self._cells.items())
        out = [f"# TYPE {self.name} histogram"]
        for key, (counts, total) in cells:
            labels = self._labels(key)
            prefix = f"{self.name}_bucket{{" + "".join(f"{lab}," for lab in labels)
            cumulative = 0
            for i, n in enumerate(counts):
                cumulative += n
                le = _double(self.bounds[i]) if i < len(self.bounds) else "+Inf"
                out.append(f'{prefix}le="{le}"}} {cumulative}')
            out.append(f"{self.name}_sum{{{','.join(labels)}}} {_double(total)}")
            out.append(f"{self.name}_count{{{','.join(labels)}}} {cumulative}")
        return out


@dataclass
class Answering:
    """The version a request reached, set by the handler once it is chosen (None until then),
    for the per-version extension."""

    version: int | None = None


class ServerMetrics:
    def __init__(self, manager_ref: list[ModelManager] | None = None) -> None:
        self._request_count = OfficialCounter(
            "/tensorflow/serving/request_count", ["model_name", "status"]
        )
        self._request_latency = OfficialSampler(
            "/tensorflow/serving/request_latency",
            ["model_name", "API", "entrypoint"],
            LATENCY_BOUNDS_US,
        )
        self._warmup_latency = OfficialSampler(
            "/tensorflow/serving/model_warmup_latency", ["model_path", "status"], LATENCY_BOUNDS_US
        )
        self._warmup_records = OfficialCounter(
            "/tensorflow/serving/model_warmup_records_read", ["model_path", "status"]
        )
        self._official: list[_Metric] = sorted(
            [
                self._request_count,
                self._request_latency,
                self._warmup_latency,
                self._warmup_records,
            ],
            key=lambda m: m.tf_name,
        )
        # modelsync's extension: the same figures per version (names from modelsync.telemetry)
        self._version_count = OfficialCounter(
            VERSION_REQUEST_COUNT, ["model_name", "version", "status"]
        )
        self._version_latency = OfficialSampler(
            VERSION_REQUEST_LATENCY, ["model_name", "version"], LATENCY_BOUNDS_US
        )
        self.registry = CollectorRegistry()
        self._versions = Gauge(
            "modelsync_model_server_versions",
            "Model versions by state.",
            ["model_name", "state"],
            registry=self.registry,
        )
        self._batches = Gauge(
            "modelsync_model_server_batches",
            "Batches run (with --enable_batching), by model.",
            ["model_name"],
            registry=self.registry,
        )
        self._batch_rows = Gauge(
            "modelsync_model_server_batched_rows",
            "Rows run in batches, by model.",
            ["model_name"],
            registry=self.registry,
        )
        self._manager_ref = manager_ref or []
        for manager in self._manager_ref:  # versions warm up inside their load
            manager.set_warmup_recorder(self.warmup)

    def request(
        self,
        api: str,
        entrypoint: str,
        model: str,
        status: str,
        latency_us: int,
        version: int | None = None,
    ) -> None:
        """One request, as TF Serving records it: always counted by (model, status code name);
        its latency only when OK. ``api``: ``Predict``/``Classify``/``Regress`` over gRPC, the
        REST verb (``predict``, ...) or ``""`` for a REST GET; ``entrypoint``: GRPC or REST.
        ``version``: the version that answered (None: none was chosen), for the extension,
        which counts inference requests only."""
        self._request_count.inc((model, status))
        if status == "OK":
            self._request_latency.add((model, api, entrypoint), max(0, latency_us))
        if version is not None and api.casefold() in INFERENCE_APIS:
            self._version_count.inc((model, str(version), status))
            if status == "OK":
                self._version_latency.add((model, str(version)), max(0, latency_us))

    def warmup_latency(self, model_path: str, status: str, latency_us: int) -> None:
        """One warmup run of a version directory (``model_path``, the export dir), as
        ``saved_model_warmup_util.cc`` records it; ``status`` "OK" or "CODE: message"."""
        self._warmup_latency.add((model_path, status), max(0, latency_us))

    def warmup(self, model_path: str, status: str, latency_us: int, records: int) -> None:
        """A warmup that read to its end (``tfserving.warmup``): its latency, and the records
        read (``model_warmup_records_read``, a counter with the same labels)."""
        self.warmup_latency(model_path, status, latency_us)
        self._warmup_records.inc((model_path, status), records)

    def render_official(self) -> str:
        """The official metrics, then modelsync's per-version extension."""
        metrics = [*self._official, self._version_count, self._version_latency]
        lines = [line for metric in metrics for line in metric.lines()]
        return "\n".join(lines) + "\n"

    def _update_gauges(self) -> None:
        self._versions.clear()
        for manager in self._manager_ref:
            for name, entry in manager.models().items():
                counts: dict[str, int] = {}
                for v in entry.versions.values():
                    state = (State.START if v.state == State.UNKNOWN else v.state).name
                    counts[state] = counts.get(state, 0) + 1
                for state, n in counts.items():
                    self._versions.labels(name, state).set(n)
                batches = rows = 0
                for v in entry.versions.values():
                    stats = getattr(v.servable, "batch_stats", None)
                    if stats is not None:
                        b, r = stats()
                        batches, rows = batches + b, rows + r
                if batches:
                    self._batches.labels(name).set(batches)
                    self._batch_rows.labels(name).set(rows)

    def render(self) -> bytes:
        self._update_gauges()
        return self.render_official().encode() + generate_latest(self.registry)
