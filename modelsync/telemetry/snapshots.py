"""TF Serving's official metrics, and one scrape of them per model (pure: no I/O).

The config manager scrapes ``/monitoring/prometheus/metrics`` on TF Serving's REST port every few
seconds; :func:`snapshot` turns one page into cumulative per-model figures.

What the official server exports (facts read in github.com/tensorflow/serving, and in
TensorFlow's monitoring library that it links; the text format is in
:mod:`modelsync.telemetry.prometheus`):

* ``:tensorflow:serving:request_count`` — a counter, labels ``model_name, status`` in that order
  (``tensorflow_serving/servables/tensorflow/util.cc``: ``model_request_status_count_total``,
  "/tensorflow/serving/request_count"). ``status`` is the canonical error code name of the request's
  status, ``error::Code_Name(...)``: ``OK``, ``CANCELLED``, ``UNKNOWN``, ``INVALID_ARGUMENT``,
  ``DEADLINE_EXCEEDED``, ``NOT_FOUND``, ``ALREADY_EXISTS``, ``PERMISSION_DENIED``,
  ``RESOURCE_EXHAUSTED``, ``FAILED_PRECONDITION``, ``ABORTED``, ``OUT_OF_RANGE``,
  ``UNIMPLEMENTED``, ``INTERNAL``, ``UNAVAILABLE``, ``DATA_LOSS``, ``UNAUTHENTICATED``.
* ``:tensorflow:serving:request_latency`` — a histogram of wall time in **microseconds**, labels
  ``model_name, API, entrypoint`` (same file, ``request_latency``), buckets
  ``Buckets::Exponential(10, 1.8, 33)``: 33 finite bounds ``10 * 1.8**i`` computed by repeated
  multiplication, plus ``DBL_MAX`` appended by TensorFlow (``tensorflow/core/lib/monitoring/
  sampler.cc``: ``ExponentialBuckets``, ``ExplicitBuckets``), exported as ``le="+Inf"``.
  A sample lands in the first bucket whose bound is *greater* than it
  (``tensorflow/core/lib/histogram/histogram.cc``: ``Histogram::Add`` uses ``std::upper_bound``),
  so a value equal to a bound counts in the next bucket; integer microseconds make this moot.
* Who records what (``tensorflow_serving/model_servers/prediction_service_impl.cc`` and
  ``http_server.cc``): gRPC ``Predict``, ``Classify`` and ``Regress`` count every request in
  ``request_count`` and add the latency only when the status is OK, with ``API`` = ``"Predict"``,
  ``"Classify"``, ``"Regress"`` and ``entrypoint="GRPC"``. gRPC ``GetModelMetadata`` and
  ``MultiInference`` (and ``ModelService``) record nothing. Every REST request under ``/v1/``
  is counted (status and metadata GETs too, malformed paths with ``model_name=""``), latency only
  when OK, with ``entrypoint="REST"`` and ``API`` = the verb of the URL as written (``predict``,
  ``classify``, ``regress``: the path regex is case-insensitive) or ``""`` for a GET
  (``http_rest_api_util.cc``: ``kPredictionApiGegex``, ``kModelStatusApiRegex``,
  ``ParseModelInfo``).

Choices made here:

* *requests* of a model = its ``request_count`` series summed per status. That metric has no API
  label, so REST status/metadata GETs are in it, as the official server counts them.
* *latency* of a model = its ``request_latency`` series of the inference APIs only (``API`` in
  ``predict``, ``classify``, ``regress``, compared case-insensitively) summed over API and
  entrypoint; REST GETs (``API=""``) would otherwise pull the percentiles down.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from modelsync.telemetry.errors import MAX_COUNT, TelemetryError
from modelsync.telemetry.histogram import INF, Histogram, merge_buckets
from modelsync.telemetry.prometheus import Exposition, Sample, parse, parse_number

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
MODEL_WARMUP_LATENCY = ":tensorflow:serving:model_warmup_latency"
OK = "OK"
INFERENCE_APIS = frozenset({"predict", "classify", "regress"})
MAX_ERROR_CODES = 64
STATUS_RE = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def exponential_bounds(scale: float, growth_factor: float, bucket_count: int) -> tuple[float, ...]:
    """TensorFlow's ``Buckets::Exponential`` finite bounds (DBL_MAX, i.e. +Inf, comes on top)."""
    bounds: list[float] = []
    bound = scale
    for _ in range(bucket_count):
        bounds.append(bound)
        bound *= growth_factor
    return tuple(bounds)


LATENCY_BOUNDS_US = exponential_bounds(10.0, 1.8, 33)
"""Finite bounds of request_latency, runtime_latency and model_warmup_latency, in µs."""


SeriesKey = tuple[tuple[str, str], ...]
"""A latency series' labels but model_name and le, sorted: (("API", ..), ("entrypoint", ..))."""


@dataclass(frozen=True)
class ModelSnapshot:
    """One model's cumulative figures: requests by status, latency histograms by series."""

    requests: Mapping[str, int] = field(default_factory=dict)
    latency_series: Mapping[SeriesKey, Histogram] = field(default_factory=dict)

    @property
    def latency(self) -> Histogram:
        return merge_buckets(self.latency_series.values())


@dataclass(frozen=True)
class Snapshot:
    """One scrape. ``bad_lines``: unparsable lines; ``ignored_samples``: request samples or
    latency series of the official metrics that could not be used (bad labels or values)."""

    models: Mapping[str, ModelSnapshot] = field(default_factory=dict)
    bad_lines: int = 0
    ignored_samples: int = 0


def _as_count(value: float) -> int | None:
    if not math.isfinite(value) or value < 0 or not value.is_integer() or value > MAX_COUNT:
        return None
    return int(value)


def _request_counts(
    samples: Iterable[Sample], wanted: Collection[str] | None
) -> tuple[dict[str, dict[str, int]], int]:
    counts: dict[str, dict[str, int]] = {}
    ignored = 0
    for s in samples:
        model, status, value = s.label("model_name"), s.label("status"), _as_count(s.value)
        if model is not None and wanted is not None and model not in wanted:
            continue
        if (
            model is None
            or status is None
            or not STATUS_RE.match(status)
            or value is None
            or status in counts.get(model, {})
        ):
            ignored += 1
            continue
        counts.setdefault(model, {})[status] = value
    return counts, ignored


@dataclass
class _SeriesParts:
    """A latency series being assembled from its _bucket, _sum and _count samples."""

    buckets: dict[float, int] = field(default_factory=dict)
    sum: float | None = None
    count: int | None = None
    bad: bool = False

    def add(self, suffix: str, sample: Sample) -> None:
        if suffix == "_sum":
            self.bad |= self.sum is not None or not math.isfinite(sample.value)
            self.sum = sample.value
            return
        value = _as_count(sample.value)
        if value is None:
            self.bad = True
        elif suffix == "_count":
            self.bad |= self.count is not None
            self.count = value
        else:
            self._add_bucket(sample.label("le"), value)

    def _add_bucket(self, le: str | None, value: int) -> None:
        try:
            bound = parse_number(le or "")
        except ValueError:
            self.bad = True
            return
        self.bad |= math.isnan(bound) or bound in self.buckets
        self.buckets[bound] = value

    def histogram(self) -> Histogram | None:
        if self.bad or self.sum is None or INF not in self.buckets:
            return None
        bounds = tuple(sorted(self.buckets))
        cumulative = tuple(self.buckets[b] for b in bounds)
        if self.count is not None and self.count != cumulative[-1]:
            return None
        try:
            return Histogram(bounds, cumulative, self.sum)
        except TelemetryError:
            return None


_LATENCY_SUFFIXES = ("_bucket", "_sum", "_count")


def _latency_series(
    samples: Iterable[Sample], wanted: Collection[str] | None
) -> tuple[dict[str, dict[SeriesKey, Histogram]], int]:
    parts: dict[tuple[str, SeriesKey], _SeriesParts] = {}
    ignored = 0
    for s in samples:
        suffix = s.name[len(REQUEST_LATENCY) :]
        model, api = s.label("model_name"), s.label("API")
        if model is None or api is None:
            ignored += 1
            continue
        if api.casefold() not in INFERENCE_APIS or (wanted is not None and model not in wanted):
            continue
        key = tuple(sorted((k, v) for k, v in s.labels if k not in ("model_name", "le")))
        parts.setdefault((model, key), _SeriesParts()).add(suffix, s)
    series: dict[str, dict[SeriesKey, Histogram]] = {}
    for (model, key), part in parts.items():
        histogram = part.histogram()
        if histogram is None:
            ignored += 1
        else:
            series.setdefault(model, {})[key] = histogram
    return series, ignored


def snapshot(text: str | bytes | Exposition, models: Collection[str] | None = None) -> Snapshot:
    """Per-model cumulative figures of one TF Serving page (only ``models`` if given).

    Never raises on bad input: malformed lines and unusable samples are counted, not fatal.
    """
    page = text if isinstance(text, Exposition) else parse(text)
    latency_names = {REQUEST_LATENCY + suffix for suffix in _LATENCY_SUFFIXES}
    counts, ignored_counts = _request_counts(
        (s for s in page.samples if s.name == REQUEST_COUNT), models
    )
    series, ignored_series = _latency_series(
        (s for s in page.samples if s.name in latency_names), models
    )
    names = sorted(set(counts) | set(series))
    return Snapshot(
        {m: ModelSnapshot(counts.get(m, {}), series.get(m, {})) for m in names},
        page.bad_lines,
        ignored_counts + ignored_series,
    )


__all__ = [
    "INFERENCE_APIS",
    "LATENCY_BOUNDS_US",
    "MAX_ERROR_CODES",
    "MODEL_WARMUP_LATENCY",
    "OK",
    "REQUEST_COUNT",
    "REQUEST_LATENCY",
    "RUNTIME_LATENCY",
    "STATUS_RE",
    "ModelSnapshot",
    "SeriesKey",
    "Snapshot",
    "exponential_bounds",
    "snapshot",
]
