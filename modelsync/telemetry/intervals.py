"""What happened between two scrapes, per model, and its heartbeat form (pure: no I/O).

:func:`interval` turns two :class:`~modelsync.telemetry.snapshots.Snapshot` objects into
what happened in between (requests by status, a latency histogram), and
:meth:`ModelInterval.to_json` makes that a small heartbeat document the master can merge across
nodes with :func:`~modelsync.telemetry.histogram.merge_buckets` before it computes a
:func:`~modelsync.telemetry.histogram.quantile`.

The official counters (github.com/tensorflow/serving; see :mod:`modelsync.telemetry.snapshots`)
only go up while the server runs, and start from zero when it restarts. Choice made here: a
counter reset (TF Serving restarted: any status count or any latency series of the model went
down or vanished) makes that model's current values the interval's figures, as Prometheus'
``increase()`` does; the interval is marked ``reset``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

from modelsync.telemetry.errors import MAX_COUNT, TelemetryError, _finite, _is_count
from modelsync.telemetry.histogram import (
    EMPTY_HISTOGRAM,
    INF,
    MAX_BUCKETS,
    Histogram,
    _histogram_delta,
    merge_buckets,
    quantile_ms,
)
from modelsync.telemetry.snapshots import (
    MAX_ERROR_CODES,
    OK,
    STATUS_RE,
    ModelSnapshot,
    SeriesKey,
    Snapshot,
)

# ---------------------------------------------------------------------------------------------
# Intervals: what happened between two snapshots
# ---------------------------------------------------------------------------------------------


def _check_statuses(statuses: Mapping[str, int], where: str) -> None:
    if len(statuses) > MAX_ERROR_CODES + 1:
        raise TelemetryError(f"{where}: more than {MAX_ERROR_CODES} status codes")
    for status, count in statuses.items():
        if not isinstance(status, str) or not STATUS_RE.match(status):
            raise TelemetryError(f"{where}: bad status code {status!r}")
        if not _is_count(count):
            raise TelemetryError(f"{where}.{status}: expected a non-negative integer")


def _check_seconds(seconds: object, where: str) -> float:
    number = _finite(seconds, where)
    if number <= 0:
        raise TelemetryError(f"{where}: expected a positive number of seconds, got {seconds!r}")
    return number


@dataclass(frozen=True)
class ModelInterval:
    """One model over one interval: requests by status code (zeros dropped) and the latency
    histogram of the OK inference requests, in microseconds. ``reset``: the server restarted
    within the interval (its counters went down), so the figures count since the restart."""

    seconds: float
    statuses: Mapping[str, int] = field(default_factory=dict)
    latency: Histogram = EMPTY_HISTOGRAM
    reset: bool = False

    def __post_init__(self) -> None:
        _check_seconds(self.seconds, "seconds")
        _check_statuses(self.statuses, "statuses")
        object.__setattr__(self, "statuses", {s: n for s, n in sorted(self.statuses.items()) if n})

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> dict[str, int]:
        """Non-OK requests by status code."""
        return {s: n for s, n in self.statuses.items() if s != OK}

    @property
    def error_count(self) -> int:
        return self.requests - self.statuses.get(OK, 0)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def quantile_ms(self, q: float) -> float | None:
        return quantile_ms(q, self.latency)

    @property
    def p50_ms(self) -> float | None:
        return self.quantile_ms(0.5)

    @property
    def p90_ms(self) -> float | None:
        return self.quantile_ms(0.9)

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    def to_json(self) -> dict[str, object]:
        """A small JSON-able document: totals, errors by code, the non-empty latency buckets
        with their bounds (plus each one's lower edge) so that the master can merge nodes."""
        return {
            "seconds": self.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "latency_us": _histogram_to_json(self.latency),
            "reset": self.reset,
        }

    @classmethod
    def from_json(cls, doc: object) -> ModelInterval:
        """The inverse of :meth:`to_json`, for untrusted input: TelemetryError if malformed."""
        return _interval_from_json(doc)


def _series_deltas(
    cur: Mapping[SeriesKey, Histogram], prev: Mapping[SeriesKey, Histogram]
) -> list[Histogram] | None:
    if not set(prev) <= set(cur):
        return None
    deltas: list[Histogram] = []
    for key, histogram in cur.items():
        delta = _histogram_delta(histogram, prev[key]) if key in prev else histogram
        if delta is None:
            return None
        deltas.append(delta)
    return deltas


def _status_deltas(cur: Mapping[str, int], prev: Mapping[str, int]) -> dict[str, int] | None:
    if any(cur.get(status, 0) < count for status, count in prev.items()):
        return None
    return {status: count - prev.get(status, 0) for status, count in cur.items()}


def _model_interval(
    prev: ModelSnapshot | None, cur: ModelSnapshot, seconds: float
) -> ModelInterval:
    base = prev if prev is not None else ModelSnapshot()
    statuses = _status_deltas(cur.requests, base.requests)
    series = _series_deltas(cur.latency_series, base.latency_series)
    if statuses is None or series is None:
        return ModelInterval(
            seconds, dict(cur.requests), merge_buckets(cur.latency_series.values()), reset=True
        )
    return ModelInterval(seconds, statuses, merge_buckets(series))


def interval(prev: Snapshot | None, cur: Snapshot, seconds: float) -> dict[str, ModelInterval]:
    """Per-model figures between two scrapes ``seconds`` apart.

    Nothing when ``prev`` is None (the first scrape: the interval is unknown). A model new in
    ``cur`` counts from zero. A model whose counters went down (restart) counts its current
    values, flagged ``reset``. A model gone from ``cur`` is left out.
    """
    if prev is None:
        return {}
    seconds = _check_seconds(seconds, "interval seconds")
    return {
        model: _model_interval(prev.models.get(model), snap, seconds)
        for model, snap in cur.models.items()
    }


def merge_intervals(intervals: Iterable[ModelInterval]) -> ModelInterval:
    """Several intervals as one: statuses summed, latency buckets merged (so quantiles over
    nodes or over time come from the merged buckets), ``seconds`` summed (node-seconds)."""
    items = list(intervals)
    if not items:
        raise TelemetryError("merge_intervals: nothing to merge")
    statuses: dict[str, int] = {}
    for item in items:
        for status, count in item.statuses.items():
            statuses[status] = min(MAX_COUNT, statuses.get(status, 0) + count)
    return ModelInterval(
        sum(i.seconds for i in items),
        statuses,
        merge_buckets(i.latency for i in items),
        any(i.reset for i in items),
    )


# ---------------------------------------------------------------------------------------------
# The heartbeat form
# ---------------------------------------------------------------------------------------------

_JSON_KEYS = frozenset({"seconds", "requests", "errors", "latency_us", "reset"})
_LATENCY_KEYS = frozenset({"le", "n", "sum"})


def _bound_to_json(bound: float) -> float | str:
    return "+Inf" if bound == INF else bound


def _histogram_to_json(histogram: Histogram) -> dict[str, object]:
    compact = histogram.compact()
    pairs = [(b, n) for b, n in zip(compact.bounds, compact.counts(), strict=True)]
    if pairs and pairs[-1][1] == 0:  # +Inf holds nothing: count = the sum of the others
        pairs.pop()
    return {
        "le": [_bound_to_json(b) for b, _ in pairs],
        "n": [n for _, n in pairs],
        "sum": histogram.sum,
    }


def _json_count(value: object, where: str) -> int:
    if not _is_count(value):
        raise TelemetryError(f"{where}: expected a non-negative integer, got {value!r}")
    assert isinstance(value, int)
    return value


def _json_object(doc: object, keys: frozenset[str], where: str) -> dict[str, object]:
    if not isinstance(doc, dict):
        raise TelemetryError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in keys)
    if unknown:
        raise TelemetryError(f"{where}: unknown keys {unknown}")
    missing = sorted(keys - set(doc))
    if missing:
        raise TelemetryError(f"{where}: missing keys {missing}")
    return doc


def _json_list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise TelemetryError(f"{where}: expected a list")
    if len(value) > MAX_BUCKETS:
        raise TelemetryError(f"{where}: more than {MAX_BUCKETS} buckets")
    return value


def _json_bound(value: object, where: str) -> float:
    if value == "+Inf":
        return INF
    return _finite(value, f"{where} (a finite number or '+Inf')")


def _json_bounds(les: list[object]) -> list[float]:
    """Finite numbers, '+Inf' allowed last. The common case in one pass of C; anything else
    item by item, for the message that names the item."""
    head = les[:-1] if les and les[-1] == "+Inf" else les
    if all(type(b) is float or type(b) is int for b in head):
        try:
            out = [float(b) for b in head]  # type: ignore[arg-type]
        except OverflowError:
            out = []
        if len(out) == len(head) and all(map(math.isfinite, out)):
            return out + [INF] * (len(les) - len(head))
    return [_json_bound(b, f"latency_us.le[{i}]") for i, b in enumerate(les)]


def _json_counts(ns: list[object]) -> list[int]:
    """Non-negative int64s: the common case in one pass of C, else item by item."""
    if all(type(n) is int for n in ns):
        counts: list[int] = list(ns)  # type: ignore[arg-type]
        if not counts or (_is_count(min(counts)) and _is_count(max(counts))):
            return counts
    return [_json_count(n, f"latency_us.n[{i}]") for i, n in enumerate(ns)]


def _histogram_from_json(doc: object) -> Histogram:
    obj = _json_object(doc, _LATENCY_KEYS, "latency_us")
    les = _json_list(obj["le"], "latency_us.le")
    ns = _json_list(obj["n"], "latency_us.n")
    if len(les) != len(ns):
        raise TelemetryError("latency_us: 'le' and 'n' must have the same length")
    bounds = _json_bounds(les)
    counts = _json_counts(ns)
    total = _finite(obj["sum"], "latency_us.sum")
    if not bounds or bounds[-1] != INF:
        bounds.append(INF)
        counts.append(0)
    cumulative = tuple(accumulate(counts))
    if cumulative[-1] > MAX_COUNT:
        raise TelemetryError("latency_us.n: counts too large")
    try:
        return Histogram(tuple(bounds), cumulative, total)
    except TelemetryError as exc:
        raise TelemetryError(f"latency_us: {exc}") from None


def _errors_from_json(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TelemetryError("errors: expected a JSON object")
    if len(value) > MAX_ERROR_CODES:
        raise TelemetryError(f"errors: more than {MAX_ERROR_CODES} status codes")
    errors: dict[str, int] = {}
    for status, count in value.items():
        if not isinstance(status, str) or not STATUS_RE.match(status) or status == OK:
            raise TelemetryError(f"errors: bad status code {status!r}")
        errors[status] = _json_count(count, f"errors.{status}")
    return errors


def _interval_from_json(doc: object) -> ModelInterval:
    obj = _json_object(doc, _JSON_KEYS, "interval")
    seconds = _check_seconds(obj["seconds"], "seconds")
    requests = _json_count(obj["requests"], "requests")
    errors = _errors_from_json(obj["errors"])
    ok = requests - sum(errors.values())
    if ok < 0:
        raise TelemetryError("requests: fewer than the errors")
    if not isinstance(obj["reset"], bool):
        raise TelemetryError("reset: expected true or false")
    latency = _histogram_from_json(obj["latency_us"])
    return ModelInterval(seconds, {OK: ok, **errors}, latency, obj["reset"])


__all__ = ["ModelInterval", "interval"]
