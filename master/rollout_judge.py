"""What a baking stage is judged on, and the judgement (pure: no I/O).

The window starts ``warmup_s`` after the stage's nodes all served the new version (the state's
``stage_started_at``) and ends now; the master's telemetry gives, per node and source, the
figures merged over it (``master.telemetry.TelemetryStore.window``). From them the two sides
the judge compares (``modelsync.judge.judge_sides``), with the best source there is:

1. **versions** — when a stage node's server reports per version (modelsync's compatible server:
   ``:modelsync:serving:request_count`` and ``request_latency``): the new version's requests
   against the previous version's, over every node that reports them. Exact whatever the
   labels, pins or ``keep_versions``: every request that reached a version is counted for it.
2. **gateway** — else, when the nodes' gateways (which see the version of each answer) counted
   at least ``min_requests`` requests of the new version: the same comparison on the requests
   that went through a gateway (gRPC codes; a REST pass-through answer names its version only
   when its URL did).
3. **node groups** — else (the official binary, called directly over gRPC by search: no
   per-version figure anywhere): the stage's nodes against the other nodes over the same
   minutes, on model-level figures. Diluted by whatever else the stage's nodes served (a label
   on the previous version, say): the share of their requests that were for other versions is
   given when a gateway or the versions AVAILABLE tell it (and the new version's own requests
   are counted as that share's complement), else it is "unknown".

Before the stage's nodes report any request at all, the source is "no figures" (an idle model
writes no telemetry row, so nothing tells yet which source it will be), and the stage waits.

A stage is "waiting", never passed, while its new side has too few requests ("waiting for
traffic: 37 of 200 requests"), while a baseline that has some traffic has fewer than
``min_requests`` (compared with, not judged without: alone, the new side's error rates would
be held against the tolerances themselves, and a fleet whose clients make 8 % mistakes would
fail), and while latency lacks ``min_requests`` timed requests on a side that has some. Only a
baseline with no traffic at all lets the judge decide on the new side alone (``judge_sides``:
error rates against the tolerances, latency not compared). The plan
(``master.rollout_plan.step``) holds a waiting stage, then pauses or promotes it after
``max_wait_s``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelsync.judge import WAITING, Check, Judgement, Side, judge_sides, waiting_reason
from modelsync.rollout import RolloutSpec, RolloutState
from modelsync.telemetry import (
    GATEWAY,
    SERVER,
    BeatModel,
    ModelInterval,
    merge_intervals,
    quantile_ms,
)

VERSIONS, NODE_GROUPS = "versions", "node groups"
NO_FIGURES = "no figures"  # the stage's nodes reported no request at all over the window
Rows = Mapping[tuple[str, str], BeatModel]
"""(node, source) -> a model's figures merged over the window."""


def _merged(items: Iterable[ModelInterval]) -> ModelInterval | None:
    parts = list(items)
    return merge_intervals(parts) if parts else None


def _side(iv: ModelInterval | None) -> Side:
    return Side() if iv is None else Side(dict(iv.statuses), iv.latency)


@dataclass(frozen=True)
class Evidence:
    """The two sides and where they come from. ``counted``: the new version's own requests
    (node groups: the stage's requests less the share known to be for other versions);
    ``other_share``: the share of the stage nodes' requests that were for other versions, None
    when nothing tells."""

    source: str  # VERSIONS | GATEWAY | NODE_GROUPS
    new: Side = field(default_factory=Side)
    base: Side = field(default_factory=Side)
    new_nodes: tuple[str, ...] = ()
    base_nodes: tuple[str, ...] = ()
    counted: int = 0
    other_share: float | None = None


def _by_version(
    rows: Mapping[str, BeatModel], version: int | None
) -> tuple[ModelInterval | None, tuple[str, ...]]:
    """One version's figures merged over the nodes whose rows tell versions apart."""
    if version is None:
        return None, ()
    hits = {
        n: f.by_version[version]
        for n, f in rows.items()
        if f.by_version is not None and version in f.by_version
    }
    return _merged(hits.values()), tuple(sorted(hits))


def _other_share(
    server: Mapping[str, BeatModel], gateway: Mapping[str, BeatModel], stage: set[str], version: int
) -> float | None:
    """The share of the stage nodes' requests that were for other versions: from the servers'
    own per-version figures, else the gateways', else 0 when the new version was the only one
    AVAILABLE on every stage node; None when nothing tells."""
    for rows in (server, gateway):
        told = [f.by_version for n, f in rows.items() if n in stage and f.by_version is not None]
        total = sum(iv.requests for per in told for iv in per.values())
        if total:
            mine = sum(per[version].requests for per in told if version in per)
            return 1 - mine / total
    on_stage = [f for n, f in server.items() if n in stage]
    if on_stage and all(f.versions == {version} for f in on_stage):
        return 0.0
    return None


def gather(
    rows: Rows, version: int, previous: int | None, stage: Collection[str], min_requests: int
) -> Evidence:
    """The sides to judge, from the best source there is (see the module's docstring)."""
    members = set(stage)
    server = {n: f for (n, src), f in rows.items() if src == SERVER}
    gateway = {n: f for (n, src), f in rows.items() if src == GATEWAY}
    share = _other_share(server, gateway, members, version)
    if any(f.by_version is not None for n, f in server.items() if n in members):
        new, new_nodes = _by_version(server, version)
        base, base_nodes = _by_version(server, previous)
        counted = new.requests if new else 0
        return Evidence(VERSIONS, _side(new), _side(base), new_nodes, base_nodes, counted, share)
    new, new_nodes = _by_version(gateway, version)
    if new is not None and new.requests >= max(1, min_requests):
        base, base_nodes = _by_version(gateway, previous)
        return Evidence(
            GATEWAY, _side(new), _side(base), new_nodes, base_nodes, new.requests, share
        )
    on = sorted(n for n in server if n in members)
    off = sorted(n for n in server if n not in members)
    if not on:  # an idle model writes no row: nothing tells which source it will be
        base = _merged(server[n].interval for n in off)
        return Evidence(NO_FIGURES, Side(), _side(base), (), tuple(off), 0, share)
    new = _merged(server[n].interval for n in on)
    base = _merged(server[n].interval for n in off)
    requests = new.requests if new else 0
    counted = requests if share is None else math.floor(requests * (1 - share) + 1e-9)
    return Evidence(NODE_GROUPS, _side(new), _side(base), tuple(on), tuple(off), counted, share)


# --- the stage's judgement ------------------------------------------------------------------
def _side_json(side: Side) -> dict[str, Any]:
    n = side.requests
    p50, p99 = quantile_ms(0.5, side.latency), quantile_ms(0.99, side.latency)
    return {
        "requests": n,
        "ok": side.count("ok"),
        "client_errors": side.count("client"),
        "server_errors": side.count("server"),
        "client_error_rate": None if not n else round(side.count("client") / n, 6),
        "server_error_rate": None if not n else round(side.count("server") / n, 6),
        "errors_by_code": {c: k for c, k in sorted(side.statuses.items()) if c != "OK"},
        "timed": side.latency.count,
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
    }


def _check_json(check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "verdict": check.verdict,
        "detail": check.detail,
        "figures": dict(check.figures),
    }


@dataclass(frozen=True)
class StageJudgement:
    """One judgement of a baking stage: the verdict ("healthy", "breach", "waiting", or
    "warming up" before the window starts), why, and everything it was based on."""

    version: int
    previous: int | None
    stage: int
    at: float
    window_start: float
    verdict: str
    reason: str
    needed: int
    evidence: Evidence | None = None
    checks: tuple[Check, ...] = ()

    @property
    def requests(self) -> tuple[int, int]:
        e = self.evidence
        return (0, 0) if e is None else (e.counted, e.base.requests)

    def basis(self) -> str:
        """What it was judged on, in a line: source, requests per side, window."""
        e = self.evidence
        seconds = max(0.0, self.at - self.window_start)
        if e is None:
            return f"warming up until {seconds:.0f} s"
        old = f"v{self.previous}" if self.previous is not None else "the baseline"
        if e.source == NODE_GROUPS:
            share = "unknown" if e.other_share is None else f"{e.other_share:.0%}"
            return (
                f"node groups: {len(e.new_nodes)} stage node(s) {e.new.requests} requests vs "
                f"{len(e.base_nodes)} other node(s) {e.base.requests} over {seconds:.0f} s "
                f"(share of the stage's requests for other versions: {share})"
            )
        return (
            f"{e.source}: v{self.version} {e.counted} requests vs {old} {e.base.requests} "
            f"over {seconds:.0f} s"
        )

    def to_json(self) -> dict[str, Any]:
        e = self.evidence
        return {
            "version": self.version,
            "previous": self.previous,
            "stage": self.stage,
            "at": round(self.at, 3),
            "verdict": self.verdict,
            "reason": self.reason,
            "basis": self.basis(),
            "source": None if e is None else e.source,
            "window": {
                "start": round(self.window_start, 3),
                "end": round(self.at, 3),
                "seconds": round(max(0.0, self.at - self.window_start), 1),
            },
            "requests": {
                "new": self.requests[0],
                "baseline": self.requests[1],
                "needed": self.needed,
            },
            "nodes": {
                "new": [] if e is None else list(e.new_nodes),
                "baseline": [] if e is None else list(e.base_nodes),
            },
            "other_share": None if e is None or e.other_share is None else round(e.other_share, 4),
            "new": None if e is None else _side_json(e.new),
            "baseline": None if e is None else _side_json(e.base),
            "checks": [_check_json(c) for c in self.checks],
        }


def window_start(spec: RolloutSpec, rs: RolloutState) -> float:
    """When a baking stage's judged window starts: ``warmup_s`` after its nodes all served."""
    return rs.stage_started_at + spec.warmup


def judge_stage(spec: RolloutSpec, rs: RolloutState, rows: Rows, now: float) -> StageJudgement:
    """The stage's judgement from the window's figures (``rows``: read from ``window_start``
    to now)."""
    start = window_start(spec, rs)
    needed = max(1, spec.min_requests)
    common = (rs.version, rs.previous, rs.stage, now, start)
    if now < start:
        reason = f"warming up: judged from {start - rs.stage_started_at:g} s into the stage"
        return StageJudgement(*common, "warming up", reason, needed)
    evidence = gather(rows, rs.version, rs.previous, rs.nodes, spec.min_requests)
    if evidence.counted < needed:
        reason = waiting_reason(evidence.counted, needed)
        return StageJudgement(*common, "waiting", reason, needed, evidence)
    base = evidence.base
    if 0 < base.requests < needed:  # a baseline is there: compared with, not judged without
        reason = f"{WAITING}: the baseline has {base.requests} of {needed} requests"
        return StageJudgement(*common, "waiting", reason, needed, evidence)
    judged: Judgement = judge_sides(evidence.new, base, spec.limits())
    latency = next((c for c in judged.checks if c.name == "latency"), None)
    if judged.verdict == "healthy" and latency is not None and latency.verdict == "unjudged":
        timed = (evidence.new.latency.count, base.latency.count)
        if timed[1] > 0:  # latency is compared with the baseline once both sides have enough
            reason = (
                f"{WAITING}: latency needs {needed} timed requests on each side, "
                f"{timed[0]} and {timed[1]} so far"
            )
            return StageJudgement(*common, "waiting", reason, needed, evidence, judged.checks)
    return StageJudgement(*common, judged.verdict, judged.reason, needed, evidence, judged.checks)
