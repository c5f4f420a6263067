"""One step of a staged rollout (pure: no I/O): from the policy, the bucket, the fleet's reports
and the stage's judgement (``master.rollout_judge``), the next rollout state of a model (or
none: nothing to do).

    complete -> (a newer version) validating (stage 0: the canary nodes)
    validating -> baking           once every live node of the stage has it AVAILABLE
    baking -> validating (stage+1) after bake_s, judged healthy
    baking (bake over, too few requests to judge) -> baking "waiting for traffic: 37 of 200
                                   requests" (once), then after max_wait_s -> paused (or, with
                                   "on_insufficient": "promote", the next stage)
    ... the last stage (every node) -> complete once all have it AVAILABLE
    validating | baking | paused -> rolled_back   a breach: failures on a stage node, or the
                                   judge (server errors, client errors, latency vs the baseline)
A pin freezes every rollout of the model (the operator's escape hatch); a newer version during
a rollout starts over from stage 0 with the same previous version; an operator's promote always
moves on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from master.rollout_judge import StageJudgement
from modelsync.judge import WAITING
from modelsync.policy import ModelPolicy
from modelsync.rollout import RolloutSpec, RolloutState, stage_nodes


@dataclass(frozen=True)
class ModelFleet:
    """What one step of a model's rollout is decided on: its spec and policy, the bucket's
    complete versions, and the fleet's reports (live nodes, where each version is AVAILABLE or
    failed, and why)."""

    model: str
    spec: RolloutSpec
    policy: ModelPolicy
    complete: Sequence[int] = ()
    live: Sequence[str] = ()
    available: Mapping[int, set[str]] = field(default_factory=dict)
    failed: Mapping[int, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    state: RolloutState
    event: str  # rollout_started | rollout_baking | rollout_advanced | ...
    reject: int | None = None  # a version to add to the model's rejected list
    judgement: StageJudgement | None = None  # what the step was decided on, if judged


def start(
    view: ModelFleet, version: int, previous: int | None, now: float, reason: str
) -> RolloutState:
    nodes = stage_nodes(view.model, version, view.spec, 0, view.live)
    state = RolloutState(version, previous, "validating", 0, nodes, now, now)
    return state.moved(now, "validating", reason)


def served_everywhere(
    candidates: Iterable[int], live: Sequence[str], available: Mapping[int, set[str]]
) -> int | None:
    """The newest of ``candidates`` AVAILABLE on every live node: the version a rollout adopts
    as stable (None: no node is live, or no version is on all of them)."""
    served = [v for v in sorted(candidates) if live and set(live) <= available.get(v, set())]
    return served[-1] if served else None


def step(view: ModelFleet, judged: StageJudgement | None, now: float) -> Step | None:
    """The next state of the model's rollout, or None. ``judged``: the judgement of the baking
    stage (``master.rollout_judge.judge_stage``), None when there is none to read."""
    spec, mp, live, available = view.spec, view.policy, view.live, view.available
    candidates = sorted(set(view.complete) - mp.rejected)
    rs = mp.rollout_state
    if mp.pin is not None or not candidates or not live:
        return None  # pinned; nothing to roll out; or this master hears no node: hands off
    target = candidates[-1]
    if rs is None:  # adopt what the fleet serves as the stable version
        base = served_everywhere(candidates, live, available)
        if base is None or base == target:  # nothing served yet: nothing to protect
            st = RolloutState(target, None, "complete", 0, (), now, now)
            return Step(
                st.moved(now, "complete", "adopted as the stable version"), "rollout_adopted"
            )
        return Step(
            start(
                view,
                target,
                base,
                now,
                f"v{target} published; v{base} is the stable version",
            ),
            "rollout_started",
        )
    if rs.status == "complete" or rs.status == "rolled_back":
        stable = rs.version if rs.status == "complete" else rs.previous
        if stable is not None and stable not in candidates and target < stable:
            st = RolloutState(target, None, "complete", 0, (), now, now)
            return Step(
                st.moved(now, "complete", f"v{stable} withdrawn; v{target} is the stable version"),
                "rollout_adopted",
            )
        if stable is None:
            st = RolloutState(target, None, "complete", 0, (), now, now)
            return Step(
                st.moved(now, "complete", "adopted as the stable version"), "rollout_adopted"
            )
        if target > stable:
            return Step(
                start(
                    view,
                    target,
                    stable,
                    now,
                    f"v{target} published (stable: v{stable})",
                ),
                "rollout_started",
            )
        return None
    # under way: validating, baking or paused
    if target > rs.version:
        return Step(
            start(view, target, rs.previous, now, f"v{target} superseded v{rs.version}"),
            "rollout_started",
        )
    if rs.version not in candidates:
        return Step(
            rs.moved(now, "rolled_back", f"v{rs.version} withdrawn (rejected or deleted)"),
            "rollout_rolled_back",
        )
    members = set(rs.nodes)
    failures = {n: why for n, why in view.failed.get(rs.version, {}).items() if n in members}
    if failures:
        node, why = sorted(failures.items())[0]
        return Step(
            rs.moved(now, "rolled_back", f"failed on {len(failures)} node(s), e.g. {node}: {why}"),
            "rollout_rolled_back",
            reject=rs.version,
        )
    if rs.status == "paused":
        return None
    live_members = members & set(live)
    ready = bool(live_members) and live_members <= available.get(rs.version, set())
    last = rs.stage >= spec.stages() - 1
    if rs.status == "validating":
        if not ready:
            return None
        if last:
            return Step(
                rs.moved(now, "complete", f"every node serves v{rs.version}"), "rollout_complete"
            )
        return Step(
            rs.moved(
                now,
                "baking",
                f"stage {rs.stage}: {len(members)} node(s) "
                f"serve v{rs.version}; baking {spec.bake_s:g} s",
                stage_started_at=now,
            ),
            "rollout_baking",
        )
    return bake(view, rs, judged, now)


def bake(
    view: ModelFleet, rs: RolloutState, judged: StageJudgement | None, now: float
) -> Step | None:
    """A baking stage: a breach rolls back at once; after ``bake_s`` a healthy stage moves on
    and one with too few requests holds (said once), then pauses (or promotes, if the spec
    says so) ``max_wait_s`` after it began baking."""
    spec = view.spec
    fresh = judged is not None and (judged.version, judged.stage) == (rs.version, rs.stage)
    if judged is None or not fresh:
        return None  # nothing to decide on
    baked = now - rs.stage_started_at
    if judged.verdict == "breach":
        return Step(
            rs.moved(now, "rolled_back", f"{judged.reason} [{judged.basis()}]"),
            "rollout_rolled_back",
            reject=rs.version,
            judgement=judged,
        )
    if baked < spec.bake_s:
        return None
    if judged.verdict == "healthy":
        reason = f"baked {baked:.0f} s, judged on {judged.basis()}: {judged.reason}"
        return advance(view, rs, now, reason, judged)
    # too few requests of the new version (or the window has not begun): never a silent pass
    if baked >= spec.max_wait:
        said = f"not judged after {baked:.0f} s: {judged.reason}"
        if spec.on_insufficient == "promote":
            return advance(view, rs, now, f"{said}; promoted (on_insufficient: promote)", judged)
        return Step(
            rs.moved(
                now,
                "paused",
                f"{said} (max_wait_s {spec.max_wait:g}); promote or abort",
                paused_status="baking",
            ),
            "rollout_paused",
            judgement=judged,
        )
    if rs.reason.startswith(WAITING) or judged.verdict != "waiting":
        return None  # said already (the live count is in the judgement), or still warming up
    reason = (
        f"{judged.reason} after the {spec.bake_s:g} s bake ({judged.basis()}); pauses at "
        f"{spec.max_wait:g} s" + (" then promotes" if spec.on_insufficient == "promote" else "")
    )
    return Step(rs.moved(now, "baking", reason), "rollout_waiting", judgement=judged)


def advance(
    view: ModelFleet,
    rs: RolloutState,
    now: float,
    reason: str,
    judged: StageJudgement | None = None,
) -> Step:
    """The next stage (its nodes validate, then bake), or complete after the last."""
    if rs.stage >= view.spec.stages() - 1:
        return Step(rs.moved(now, "complete", reason), "rollout_complete", judgement=judged)
    stage = rs.stage + 1
    nodes = stage_nodes(view.model, rs.version, view.spec, stage, view.live, rs.nodes)
    return Step(
        rs.moved(
            now,
            "validating",
            f"{reason}; stage {stage}: {len(nodes)} node(s)",
            stage=stage,
            nodes=nodes,
            stage_started_at=now,
        ),
        "rollout_advanced",
        judgement=judged,
    )


def apply(mp: ModelPolicy, st: Step) -> ModelPolicy:
    rejected = mp.rejected | ({st.reject} if st.reject is not None else set())
    return replace(mp, rollout_state=st.state, rejected=frozenset(rejected))


def operator_step(action: str, rs: RolloutState, view: ModelFleet, now: float) -> Step:
    """pause, resume, promote (skip the rest of the bake) or abort (roll back) a rollout."""
    model = view.model
    if not rs.active:
        raise ValueError(f"{model} has no rollout under way (status {rs.status})")
    if action == "pause":
        if rs.status == "paused":
            raise ValueError(f"{model}'s rollout is already paused")
        return Step(
            rs.moved(now, "paused", "paused by an operator", paused_status=rs.status),
            "rollout_paused",
        )
    if action == "resume":
        if rs.status != "paused":
            raise ValueError(f"{model}'s rollout is not paused")
        back = rs.paused_status or "validating"
        return Step(
            rs.moved(now, back, "resumed by an operator", paused_status=None, stage_started_at=now),
            "rollout_resumed",
        )
    if action == "promote":
        return advance(view, replace(rs, status="baking"), now, "promoted by an operator")
    if action == "abort":
        return Step(
            rs.moved(now, "rolled_back", "aborted by an operator"),
            "rollout_rolled_back",
            reject=rs.version,
        )
    raise ValueError(f"unknown action {action!r}")
