"""modelsync's per-version extension of TF Serving's metrics, and one scrape of it (pure: no I/O).

TF Serving's ``request_count`` and ``request_latency`` carry no version (tensorflow/serving
#1970, closed unfixed), so a node serving two versions of a model (labels, ``keep_versions`` > 1,
a rollout's previous version beside the new one) cannot tell their figures apart. modelsync's
compatible model server (``tfserving/metrics.py``) keeps the official metrics exactly as they
are and adds, on the same page:

* ``:modelsync:serving:request_count{model_name,version,status}`` — a counter of the inference
  requests (gRPC Predict, Classify, Regress; REST predict, classify, regress) that reached a
  version, by the version that answered (a decimal string) and the canonical status code name
  as in the official ``request_count``. Requests that failed before a version was chosen (an
  unknown model, version or label) carry no version and are only in the official counter.
* ``:modelsync:serving:request_latency{model_name,version}`` — a histogram of their wall time in
  **microseconds**, OK requests only, with the official buckets ``Exponential(10, 1.8, 33)`` +
  ``+Inf`` (:data:`~modelsync.telemetry.snapshots.LATENCY_BOUNDS_US`), so the master merges it
  with anything else on that grid.

Both follow the official exporter's text format (``:`` names, no ``_total`` suffix). A page
that has the ``# TYPE`` line of the counter has the extension, even before any request: its
per-version figures are then known to be empty, where a page without it (the official binary)
tells nothing per version.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from modelsync.layout import parse_version
from modelsync.telemetry.errors import TelemetryError
from modelsync.telemetry.histogram import Histogram
from modelsync.telemetry.intervals import ModelInterval, _model_interval
from modelsync.telemetry.prometheus import Exposition, Sample
from modelsync.telemetry.snapshots import STATUS_RE, ModelSnapshot, _as_count, _SeriesParts

VERSION_REQUEST_COUNT = ":modelsync:serving:request_count"
VERSION_REQUEST_LATENCY = ":modelsync:serving:request_latency"
MAX_VERSIONS = 64  # per model and page: more are counted as ignored

VersionSnapshots = Mapping[str, Mapping[int, ModelSnapshot]]
"""model -> version -> its cumulative figures."""


def _version(text: str | None) -> int | None:
    return None if text is None else parse_version(text)


def _counts(
    samples: Iterable[Sample], wanted: Collection[str] | None
) -> tuple[dict[tuple[str, int], dict[str, int]], int]:
    counts: dict[tuple[str, int], dict[str, int]] = {}
    ignored = 0
    for s in samples:
        model, status = s.label("model_name"), s.label("status")
        if model is not None and wanted is not None and model not in wanted:
            continue
        version, value = _version(s.label("version")), _as_count(s.value)
        key = (model or "", version or 0)
        if (
            model is None
            or version is None
            or status is None
            or not STATUS_RE.match(status)
            or value is None
            or status in counts.get(key, {})
        ):
            ignored += 1
            continue
        counts.setdefault(key, {})[status] = value
    return counts, ignored


def _latency(
    samples: Iterable[Sample], wanted: Collection[str] | None
) -> tuple[dict[tuple[str, int], Histogram], int]:
    parts: dict[tuple[str, int], _SeriesParts] = {}
    ignored = 0
    for s in samples:
        model, version = s.label("model_name"), _version(s.label("version"))
        if model is not None and wanted is not None and model not in wanted:
            continue
        if model is None or version is None:
            ignored += 1
            continue
        parts.setdefault((model, version), _SeriesParts()).add(
            s.name[len(VERSION_REQUEST_LATENCY) :], s
        )
    out: dict[tuple[str, int], Histogram] = {}
    for key, part in parts.items():
        histogram = part.histogram()
        if histogram is None:
            ignored += 1
        else:
            out[key] = histogram
    return out, ignored


def version_snapshots(
    page: Exposition, models: Collection[str] | None = None
) -> tuple[VersionSnapshots | None, int]:
    """Per model and version, the extension's cumulative figures on ``page`` (only ``models``
    if given), and how many of its samples could not be used. None: the page has no extension
    (no ``# TYPE`` line and no sample of its counter)."""
    names = {VERSION_REQUEST_LATENCY + suffix for suffix in ("_bucket", "_sum", "_count")}
    count_samples = [s for s in page.samples if s.name == VERSION_REQUEST_COUNT]
    if VERSION_REQUEST_COUNT not in page.types and not count_samples:
        return None, 0
    counts, ignored_counts = _counts(count_samples, models)
    latency, ignored_latency = _latency((s for s in page.samples if s.name in names), models)
    out: dict[str, dict[int, ModelSnapshot]] = {}
    ignored = ignored_counts + ignored_latency
    for model, version in sorted(set(counts) | set(latency)):
        per = out.setdefault(model, {})
        if len(per) >= MAX_VERSIONS:
            ignored += 1
            continue
        hist = latency.get((model, version))
        per[version] = ModelSnapshot(
            counts.get((model, version), {}), {} if hist is None else {(): hist}
        )
    return out, ignored


def version_intervals(
    prev: VersionSnapshots | None, cur: VersionSnapshots | None, seconds: float
) -> dict[str, dict[int, ModelInterval]] | None:
    """Per model and version, what happened between two scrapes ``seconds`` apart, as
    :func:`~modelsync.telemetry.intervals.interval` does for whole models (a version new in
    ``cur`` counts from zero; a counter that went down is a reset). None when either page had no
    extension: nothing is known per version then. A model of ``cur`` without any versioned
    request is not in the answer (the caller knows it had none)."""
    if prev is None or cur is None:
        return None
    if not seconds > 0:
        raise TelemetryError(f"interval seconds: expected a positive number, got {seconds!r}")
    out: dict[str, dict[int, ModelInterval]] = {}
    for model, versions in cur.items():
        before = prev.get(model, {})
        per = {
            version: _model_interval(before.get(version), snap, seconds)
            for version, snap in versions.items()
        }
        per = {v: iv for v, iv in per.items() if iv.requests or iv.latency.count}
        if per:
            out[model] = per
    return out


__all__ = [
    "MAX_VERSIONS",
    "VERSION_REQUEST_COUNT",
    "VERSION_REQUEST_LATENCY",
    "VersionSnapshots",
    "version_intervals",
    "version_snapshots",
]
