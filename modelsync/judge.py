"""The rollout judge's statistics (pure: no I/O): one side (the new version, or the stage's
nodes) against the baseline over the same window, by status class and on latency.

Why these tests (the README's "How judgement works" says the same to operators):

* **Status classes.** A gRPC status is ``ok``, a **client** error (the request was bad:
  INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ...) or a **server** error (the model or the
  server failed: INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNKNOWN, ...). Each
  class is judged on its own, against the baseline: a fleet whose clients send 2 % bad requests
  sends them to both sides, and a new version that turns most requests into INVALID_ARGUMENT (a
  renamed input) shows up as a client-error rate far above the baseline's.
* **Error rates: Newcombe's hybrid score interval** for the difference of two proportions
  (Newcombe 1998, "Interval estimation for the difference between independent proportions",
  method 10), one-sided at ``confidence``: a class breaches when even the lower bound of
  (new rate - baseline rate) is above the class's tolerance. It is built from Wilson score
  intervals, so it keeps its coverage with few requests and with zero errors, where the usual
  z-test on the difference does not; equal rates never breach, whatever the counts.
* **Latency: Mann-Whitney U**, one-sided (the test Kayenta's NetflixACAJudge applies to latency
  metrics), on the two latency histograms' buckets taken as tied ranks — TF Serving's buckets
  are shared by every node (a compacted heartbeat histogram is put back on the union of the two
  sides' bounds first), so the comparison needs no raw samples — with the tie-corrected normal
  approximation; **and an effect size**: the ratio of a tail quantile above
  ``max_p99_ratio``. The quantile is the highest the samples support: p99 needs
  ``10 / (1 - 0.99)`` = 1,000 samples on each side (about ten above it), else p95 (200), p90
  (100) or p50 (20). Both must hold: a significant but small shift, or a big ratio from a handful
  of samples, is no breach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

from modelsync.telemetry import EMPTY_HISTOGRAM, Histogram, merge_buckets, quantile

StatusClass = Literal["ok", "client", "server"]
OK_STATUS = "OK"
# gRPC codes a bad request earns; every other non-OK code counts as the server's failure
CLIENT_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "CANCELLED",
    }
)
TAIL_QUANTILES = (0.99, 0.95, 0.9, 0.5)
SAMPLES_PER_TAIL = 10  # samples wanted above a quantile before it is compared
WAITING = "waiting for traffic"  # how the reason of a side with too few requests begins


def waiting_reason(requests: int, needed: int) -> str:
    """ "waiting for traffic: 37 of 200 requests"."""
    return f"{WAITING}: {requests} of {needed} requests"


def status_class(code: str) -> StatusClass:
    if code == OK_STATUS:
        return "ok"
    return "client" if code in CLIENT_CODES else "server"


@dataclass(frozen=True)
class Side:
    """One side's figures over the window: requests by status code and the latency histogram
    of its OK requests (microseconds)."""

    statuses: Mapping[str, int] = field(default_factory=dict)
    latency: Histogram = EMPTY_HISTOGRAM

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def count(self, cls: StatusClass) -> int:
        return sum(n for code, n in self.statuses.items() if status_class(code) == cls)

    def rate(self, cls: StatusClass) -> float | None:
        return self.count(cls) / self.requests if self.requests else None


@dataclass(frozen=True)
class Limits:
    """What the spec allows (``modelsync.rollout.RolloutSpec`` maps onto this)."""

    max_server_error_increase: float = 0.01
    max_client_error_increase: float = 0.05
    max_latency_ratio: float = 1.5
    min_requests: int = 200
    confidence: float = 0.99


@dataclass(frozen=True)
class Check:
    """One comparison: ``verdict`` is "pass", "breach" or "unjudged" (too few samples)."""

    name: str  # server_errors | client_errors | latency
    verdict: str
    detail: str
    figures: Mapping[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    """``verdict``: "healthy", "breach", or "waiting" (the new side has too few requests)."""

    verdict: str
    reason: str
    checks: tuple[Check, ...] = ()
    requests: tuple[int, int] = (0, 0)  # new, baseline


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``k / n`` (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_increase_lower_bound(k1: int, n1: int, k0: int, n0: int, confidence: float) -> float:
    """One-sided lower confidence bound of ``k1/n1 - k0/n0`` (Newcombe's hybrid score)."""
    z = _z(confidence)
    p1, p0 = k1 / n1, k0 / n0
    l1, _u1 = wilson(k1, n1, z)
    _l0, u0 = wilson(k0, n0, z)
    return p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)


def slower_p_value(new: Sequence[int], base: Sequence[int]) -> float:
    """One-sided Mann-Whitney U p-value that ``new`` is stochastically larger than ``base``,
    both given as counts per ordered bucket (ties within a bucket), tie-corrected normal
    approximation with continuity correction. 1.0 when there is nothing to tell them apart."""
    n1, n0 = sum(new), sum(base)
    total = n1 + n0
    if n1 == 0 or n0 == 0 or total < 2:
        return 1.0
    below = 0
    rank_sum = 0.0
    ties = 0.0
    for a, b in zip(new, base, strict=True):
        t = a + b
        rank_sum += a * (below + (t + 1) / 2)
        ties += t**3 - t
        below += t
    u = rank_sum - n1 * (n1 + 1) / 2
    var = n1 * n0 / 12 * ((total + 1) - ties / (total * (total - 1)))
    if var <= 0:
        return 1.0
    z = (u - n1 * n0 / 2 - 0.5) / math.sqrt(var)
    return 1.0 - NormalDist().cdf(z)


def supported_quantile(n: int) -> float | None:
    """The highest of ``TAIL_QUANTILES`` that ``n`` samples support (about ten above it)."""
    for q in TAIL_QUANTILES:
        if n >= round(SAMPLES_PER_TAIL / (1 - q)):
            return q
    return None


def _errors(cls: StatusClass, new: Side, base: Side, limits: Limits) -> Check:
    name = f"{cls}_errors"
    tolerance = (
        limits.max_server_error_increase if cls == "server" else limits.max_client_error_increase
    )
    k1, n1, k0, n0 = new.count(cls), new.requests, base.count(cls), base.requests
    figures: dict[str, float | int | str | None] = {
        "new_rate": new.rate(cls),
        "baseline_rate": base.rate(cls),
        "tolerance": tolerance,
    }
    if n1 < max(1, limits.min_requests):
        return Check(name, "unjudged", f"{n1} requests", figures)
    if n0 < max(1, limits.min_requests):
        # no baseline to compare with: the new side alone against the tolerance
        low, _high = wilson(k1, n1, _z(limits.confidence))
        figures["rate_lower_bound"] = round(low, 6)
        text = (
            f"{cls} errors {k1 / n1:.2%} of {n1}, no baseline ({n0} requests): rate >= "
            f"{low:.2%} at {limits.confidence:.0%}; tolerance {tolerance:.2%}"
        )
        return Check(name, "breach" if low > tolerance else "pass", text, figures)
    bound = rate_increase_lower_bound(k1, n1, k0, n0, limits.confidence)
    figures["increase_lower_bound"] = round(bound, 6)
    text = (
        f"{cls} errors {k1 / n1:.2%} of {n1} vs baseline {k0 / n0:.2%} of {n0} "
        f"(increase >= {bound:+.2%} at {limits.confidence:.0%}; tolerance {tolerance:.2%})"
    )
    return Check(name, "breach" if bound > tolerance else "pass", text, figures)


def common_grid(a: Histogram, b: Histogram) -> tuple[Histogram, Histogram]:
    """Both histograms on the union of their bounds. A heartbeat's histograms are compacted
    (empty buckets left out, each non-empty one kept with its lower edge), so two sides on TF
    Serving's grid seldom list the same bounds; on the union every count stays in its bucket."""
    if a.bounds == b.bounds:
        return a, b
    zero_a = Histogram(a.bounds, (0,) * len(a.bounds), 0.0)
    zero_b = Histogram(b.bounds, (0,) * len(b.bounds), 0.0)
    return merge_buckets([a, zero_b]), merge_buckets([b, zero_a])


def _latency(new: Side, base: Side, limits: Limits) -> Check:
    n1, n0 = new.latency.count, base.latency.count
    q = supported_quantile(min(n1, n0))
    if q is None or min(n1, n0) < max(1, limits.min_requests):
        return Check("latency", "unjudged", f"{n1} vs {n0} timed requests")
    h_new, h_base = common_grid(new.latency, base.latency)
    p_value = slower_p_value(h_new.counts(), h_base.counts())
    q_new, q_base = quantile(q, h_new), quantile(q, h_base)
    ratio = (q_new / q_base) if q_new is not None and q_base else None
    label = f"p{round(q * 100)}"
    figures: dict[str, float | int | str | None] = {
        "quantile": label,
        "new_ms": None if q_new is None else round(q_new / 1000, 3),
        "baseline_ms": None if q_base is None else round(q_base / 1000, 3),
        "ratio": None if ratio is None else round(ratio, 3),
        "p_value": round(p_value, 6),
    }
    slower = p_value < 1 - limits.confidence
    big = ratio is not None and ratio > limits.max_latency_ratio
    text = (
        f"{label} {figures['new_ms']} ms vs {figures['baseline_ms']} ms "
        f"(x{figures['ratio']}, limit x{limits.max_latency_ratio:g}); "
        f"Mann-Whitney p={p_value:.3g} over {n1} vs {n0}"
    )
    return Check("latency", "breach" if slower and big else "pass", text, figures)


def judge_sides(new: Side, base: Side, limits: Limits) -> Judgement:
    """The new side against the baseline. "waiting" until the new side has ``min_requests``;
    a breach of any check is a breach. Without baseline traffic the error classes are judged
    on the new side alone (its rate's lower bound against the tolerance) and latency stays
    "unjudged"."""
    counts = (new.requests, base.requests)
    if new.requests < max(1, limits.min_requests):
        return Judgement(
            "waiting", waiting_reason(new.requests, limits.min_requests), requests=counts
        )
    checks = (
        _errors("server", new, base, limits),
        _errors("client", new, base, limits),
        _latency(new, base, limits),
    )
    breaches = [c for c in checks if c.verdict == "breach"]
    if breaches:
        return Judgement("breach", "; ".join(c.detail for c in breaches), checks, counts)
    judged = [c.detail for c in checks if c.verdict == "pass"]
    return Judgement("healthy", "; ".join(judged), checks, counts)
