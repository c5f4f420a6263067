"""Histograms of cumulative buckets by upper bound: merging and quantiles (pure: no I/O).

A TensorFlow histogram (``tensorflow/core/lib/histogram/histogram.cc``, read with TensorFlow's
monitoring library that github.com/tensorflow/serving links) puts a sample in the first bucket
whose bound is *greater* than it (``Histogram::Add`` uses ``std::upper_bound``), so a value
equal to a bound counts in the next bucket; integer microseconds make this moot. Its last bound
is ``DBL_MAX`` (``tensorflow/core/lib/monitoring/sampler.cc``: ``ExplicitBuckets``), exported as
``le="+Inf"``: here every :class:`Histogram` ends at +Inf.

:func:`merge_buckets` sums histograms (nodes, intervals, series) bucket by bucket, and
:func:`quantile` interpolates as Prometheus' ``histogram_quantile`` (promql/quantile.go).
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from modelsync.telemetry.errors import TelemetryError, _finite, _is_count

INF = math.inf
MAX_BUCKETS = 256


def _check_histogram(bounds: tuple[float, ...], cumulative: tuple[int, ...], total: float) -> None:
    if not bounds or len(bounds) != len(cumulative):
        raise TelemetryError("histogram: expected as many cumulative counts as bounds (>= 1)")
    if len(bounds) > MAX_BUCKETS:
        raise TelemetryError(f"histogram: more than {MAX_BUCKETS} buckets")
    if bounds[-1] != INF or not all(map(math.isfinite, bounds[:-1])):
        raise TelemetryError("histogram: finite bounds, then +Inf last, expected")
    if not all(map(operator.lt, bounds, bounds[1:])):
        raise TelemetryError("histogram: bounds must be strictly increasing")
    # every count an int, none decreasing: then the first and the last bound them all
    # (one pass each in C: a heartbeat's telemetry holds thousands of counts)
    if not all(type(c) is int for c in cumulative) or not (
        _is_count(cumulative[0]) and _is_count(cumulative[-1])
    ):
        raise TelemetryError("histogram: counts must be non-negative integers")
    if not all(map(operator.le, cumulative, cumulative[1:])):
        raise TelemetryError("histogram: cumulative counts must not decrease")
    _finite(total, "histogram: sum")


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts by ascending upper bound (the last bound is +Inf), and the sum.

    Counts are integers; latency histograms are in microseconds, as TF Serving records them.
    """

    bounds: tuple[float, ...] = (INF,)
    cumulative: tuple[int, ...] = (0,)
    sum: float = 0.0

    def __post_init__(self) -> None:
        _check_histogram(self.bounds, self.cumulative, self.sum)

    @property
    def count(self) -> int:
        return self.cumulative[-1]

    @property
    def buckets(self) -> tuple[tuple[float, int], ...]:
        """``(upper bound, cumulative count)`` pairs."""
        return tuple(zip(self.bounds, self.cumulative, strict=True))

    def counts(self) -> tuple[int, ...]:
        """The count of each bucket alone (not cumulative)."""
        return tuple(c - p for c, p in zip(self.cumulative, (0, *self.cumulative), strict=False))

    def at(self, bound: float) -> int:
        """Observations known to be below ``bound``: the cumulative count of the largest own
        bound <= ``bound`` (0 below the first). Exact at own bounds; never an overestimate."""
        index = bisect.bisect_right(self.bounds, bound)
        return self.cumulative[index - 1] if index else 0

    def compact(self) -> Histogram:
        """The same step function without redundant bounds: keeps each non-empty bucket and the
        bound just below it (its lower edge), and +Inf. Quantiles and merges are unchanged."""
        counts = self.counts()
        keep = [
            i
            for i in range(len(counts))
            if counts[i] or (i + 1 < len(counts) and counts[i + 1]) or i == len(counts) - 1
        ]
        if len(keep) == len(counts):
            return self  # already compact (as every histogram a heartbeat carries)
        return Histogram(
            tuple(self.bounds[i] for i in keep), tuple(self.cumulative[i] for i in keep), self.sum
        )


EMPTY_HISTOGRAM = Histogram()


def merge_buckets(histograms: Iterable[Histogram]) -> Histogram:
    """Sum histograms (nodes, intervals, series) bucket by bucket.

    Different bounds merge on the union of bounds: at a bound a histogram lacks, it contributes
    its cumulative count at its largest bound below (what it is known to hold below that bound),
    so the result is exact at every bound of every input, stays monotone and integral, and
    merging is associative and commutative. Sums add up. When the grids really differ, an
    observation lands at the top of its own bucket cut by the other bounds, so interpolated
    quantiles can only move up, by less than that bucket's width. Histograms on one grid (every
    TF Serving node: the official bounds), compacted or not, merge exactly.
    """
    parts = list(histograms)
    if not parts:
        return EMPTY_HISTOGRAM
    if all(h.bounds == parts[0].bounds for h in parts):
        cumulative = tuple(
            sum(column) for column in zip(*(h.cumulative for h in parts), strict=True)
        )
        return Histogram(parts[0].bounds, cumulative, math.fsum(h.sum for h in parts))
    # at(b) of one histogram is the sum of its own steps at bounds <= b, so the merged
    # cumulative count at each bound of the union is a running sum of every input's steps
    steps: dict[float, int] = {}
    for h in parts:
        below = 0
        for b, c in zip(h.bounds, h.cumulative, strict=True):
            steps[b] = steps.get(b, 0) + c - below
            below = c
    bounds = tuple(sorted(steps))
    return Histogram(
        bounds, tuple(accumulate(steps[b] for b in bounds)), math.fsum(h.sum for h in parts)
    )


def _histogram_delta(cur: Histogram, prev: Histogram) -> Histogram | None:
    """``cur - prev``, or None when a bucket counter went down (a reset) or the bounds changed."""
    if cur.bounds != prev.bounds or cur.sum < prev.sum:
        return None
    diffs = [c - p for c, p in zip(cur.counts(), prev.counts(), strict=True)]
    if any(d < 0 for d in diffs):
        return None
    return Histogram(cur.bounds, tuple(accumulate(diffs)), cur.sum - prev.sum)


# ---------------------------------------------------------------------------------------------
# Quantiles, as Prometheus' histogram_quantile
# ---------------------------------------------------------------------------------------------


def _prepared(buckets: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]] | None:
    """Sorted, equal bounds coalesced, counts made monotone (as Prometheus does); None without a
    +Inf bucket or with a NaN bound or a count that is not finite."""
    ordered = sorted((float(b), float(c)) for b, c in buckets)
    if (
        not ordered
        or ordered[-1][0] != INF
        or any(math.isnan(b) or not math.isfinite(c) for b, c in ordered)
    ):
        return None
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in ordered:
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    return bounds, list(accumulate(counts, max))


def quantile(q: float, buckets: Histogram | Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile (0 <= q <= 1) from cumulative buckets — a Histogram or ``(upper bound,
    cumulative count)`` pairs — interpolated linearly inside the bucket it falls in, as
    Prometheus' ``histogram_quantile`` (promql/quantile.go).

    Edge cases: no observations, no +Inf bucket or no finite bound -> None; a quantile in the
    +Inf bucket -> the highest finite bound; the lowest bucket interpolates from 0 (or returns its
    bound if that is <= 0); q = 0 -> the lower edge of the first non-empty bucket (where
    Prometheus can answer NaN). q outside [0, 1] or NaN is a ValueError.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile: q must be within [0, 1], got {q}")
    pairs = buckets.buckets if isinstance(buckets, Histogram) else buckets
    prepared = _prepared(pairs)
    if prepared is None:
        return None
    bounds, cumulative = prepared
    total = cumulative[-1]
    if len(bounds) < 2 or total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(cumulative) if c >= rank and c > 0)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = bounds[index - 1] if index else 0.0
    below = cumulative[index - 1] if index else 0.0
    return start + (bounds[index] - start) * (rank - below) / (cumulative[index] - below)


def quantile_ms(q: float, buckets: Histogram | Sequence[tuple[float, float]]) -> float | None:
    """:func:`quantile` of a microsecond histogram, in milliseconds."""
    value = quantile(q, buckets)
    return None if value is None else value / 1000.0


__all__ = [
    "EMPTY_HISTOGRAM",
    "INF",
    "MAX_BUCKETS",
    "Histogram",
    "merge_buckets",
    "quantile",
    "quantile_ms",
]
