"""Per-model serving telemetry from TF Serving's Prometheus page (pure: no I/O).

The config manager scrapes ``/monitoring/prometheus/metrics`` on TF Serving's REST port every few
seconds; :func:`snapshot` turns one page into cumulative per-model figures, :func:`interval` turns
two snapshots into what happened in between (requests by status, a latency histogram), and
:meth:`ModelInterval.to_json` makes that a small heartbeat document the master can merge across
nodes with :func:`merge_buckets` before it computes a :func:`quantile`.

The modules, each with the official facts it relies on (read in github.com/tensorflow/serving,
and in TensorFlow's monitoring library that it links) in its docstring:

* :mod:`~modelsync.telemetry.prometheus` — the text exposition format, as
  ``tensorflow_serving/util/prometheus_exporter.cc`` writes it, and its parser.
* :mod:`~modelsync.telemetry.histogram` — cumulative buckets, merging, Prometheus' quantiles.
* :mod:`~modelsync.telemetry.snapshots` — the official metric names, labels, units and buckets,
  who records what, and one scrape per model.
* :mod:`~modelsync.telemetry.intervals` — two scrapes' difference (counter resets) and the
  heartbeat JSON.
* :mod:`~modelsync.telemetry.versions` — modelsync's per-version extension metrics (the
  compatible server's ``:modelsync:serving:*``) and their intervals.
* :mod:`~modelsync.telemetry.beat` — one model's figures on a heartbeat, and the outbox.
* :mod:`~modelsync.telemetry.errors` — :class:`TelemetryError` and the checks of numbers.

Everything public is re-exported here: ``from modelsync.telemetry import X``.
"""

from __future__ import annotations

from modelsync.telemetry.beat import GATEWAY, SERVER, BeatModel, Outbox, Pending
from modelsync.telemetry.errors import MAX_COUNT, TelemetryError
from modelsync.telemetry.histogram import (
    EMPTY_HISTOGRAM,
    INF,
    MAX_BUCKETS,
    Histogram,
    merge_buckets,
    quantile,
    quantile_ms,
)
from modelsync.telemetry.intervals import ModelInterval, interval, merge_intervals
from modelsync.telemetry.prometheus import Exposition, Sample, parse, parse_number
from modelsync.telemetry.snapshots import (
    INFERENCE_APIS,
    LATENCY_BOUNDS_US,
    MAX_ERROR_CODES,
    MODEL_WARMUP_LATENCY,
    OK,
    REQUEST_COUNT,
    REQUEST_LATENCY,
    RUNTIME_LATENCY,
    STATUS_RE,
    ModelSnapshot,
    SeriesKey,
    Snapshot,
    exponential_bounds,
    snapshot,
)
from modelsync.telemetry.versions import (
    MAX_VERSIONS,
    VERSION_REQUEST_COUNT,
    VERSION_REQUEST_LATENCY,
    VersionSnapshots,
    version_intervals,
    version_snapshots,
)

__all__ = [
    "EMPTY_HISTOGRAM",
    "GATEWAY",
    "INF",
    "INFERENCE_APIS",
    "LATENCY_BOUNDS_US",
    "MAX_BUCKETS",
    "MAX_COUNT",
    "MAX_ERROR_CODES",
    "MAX_VERSIONS",
    "MODEL_WARMUP_LATENCY",
    "OK",
    "REQUEST_COUNT",
    "REQUEST_LATENCY",
    "RUNTIME_LATENCY",
    "SERVER",
    "STATUS_RE",
    "VERSION_REQUEST_COUNT",
    "VERSION_REQUEST_LATENCY",
    "BeatModel",
    "Exposition",
    "Histogram",
    "ModelInterval",
    "ModelSnapshot",
    "Outbox",
    "Pending",
    "Sample",
    "SeriesKey",
    "Snapshot",
    "TelemetryError",
    "VersionSnapshots",
    "exponential_bounds",
    "interval",
    "merge_buckets",
    "merge_intervals",
    "parse",
    "parse_number",
    "quantile",
    "quantile_ms",
    "snapshot",
    "version_intervals",
    "version_snapshots",
]
