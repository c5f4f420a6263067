"""What a baking stage is judged on, and what the plan does with it (pure): the source chosen
(versions, gateway, node groups), the dilution, never a silent pass, and the steps after the
bake: advance, hold once with "waiting for traffic", pause or promote after max_wait_s, roll back
on a breach; the issue's everyday cases (labels, client errors in the baseline, a renamed
input)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from master.rollout_judge import (
    NO_FIGURES,
    NODE_GROUPS,
    VERSIONS,
    Rows,
    StageJudgement,
    gather,
    judge_stage,
    window_start,
)
from master.rollout_plan import ModelFleet, bake
from modelsync.policy import ModelPolicy
from modelsync.rollout import RolloutSpec, RolloutState
from modelsync.telemetry import (
    GATEWAY,
    LATENCY_BOUNDS_US,
    SERVER,
    BeatModel,
    Histogram,
    ModelInterval,
)

BOUNDS = (*LATENCY_BOUNDS_US, float("inf"))
NEW, OLD = 3, 2


def iv(ok: int, client: int = 0, server: int = 0, bucket: int = 12) -> ModelInterval:
    cumulative = tuple(ok if i >= bucket else 0 for i in range(len(BOUNDS)))
    statuses = {"OK": ok, "INVALID_ARGUMENT": client, "INTERNAL": server}
    return ModelInterval(10.0, statuses, Histogram(BOUNDS, cumulative, ok * 500.0).compact())


def merged(*parts: ModelInterval) -> ModelInterval:
    from modelsync.telemetry import merge_intervals

    return merge_intervals(parts)


def server_row(per: dict[int, ModelInterval], extension: bool = True) -> BeatModel:
    """A node's server figures: the whole is the sum of its versions' figures."""
    whole = merged(*per.values()) if per else iv(0)
    return BeatModel(whole, frozenset(per), dict(per) if extension else None)


def state(
    nodes: tuple[str, ...] = ("n1",), stage: int = 0, started: float = 1000.0
) -> RolloutState:
    return RolloutState(NEW, OLD, "baking", stage, nodes, 900.0, started, "baking")


SPEC = RolloutSpec(canary_nodes=1, waves=(0.5, 1.0), bake_s=100, min_requests=200)


# --- the source ---------------------------------------------------------------------------------
def test_labels_on_the_canary_are_judged_per_version() -> None:
    """The issue's first case: the canary serves the new version to name-only requests and the
    old one to a label; per-version figures keep them apart."""
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(300, client=6), OLD: iv(700, client=14)}),
        ("n2", SERVER): server_row({OLD: iv(1000, client=20)}),
    }
    e = gather(rows, NEW, OLD, ["n1"], 200)
    assert e.source == VERSIONS and e.counted == 306
    assert e.new.requests == 306 and e.base.requests == 714 + 1020
    assert e.new_nodes == ("n1",) and e.base_nodes == ("n1", "n2")
    assert e.other_share is not None and abs(e.other_share - 714 / 1020) < 1e-9
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "healthy", got.reason  # 2 % client errors on both sides


def test_the_gateway_when_the_servers_cannot_tell_versions() -> None:
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(900), OLD: iv(900)}, extension=False),
        ("n1", GATEWAY): BeatModel(iv(400), frozenset(), {NEW: iv(250), OLD: iv(150)}),
        ("n2", GATEWAY): BeatModel(iv(300), frozenset(), {OLD: iv(300)}),
    }
    e = gather(rows, NEW, OLD, ["n1"], 200)
    assert e.source == GATEWAY and e.counted == 250 and e.base.requests == 450
    # too few through the gateways: node groups, with the gateway's share of other versions
    few = gather(rows, NEW, OLD, ["n1"], 300)
    assert few.source == NODE_GROUPS
    assert few.other_share == 150 / 400 and few.counted == int(1800 * (1 - 150 / 400))


def test_node_groups_say_the_dilution_is_unknown_when_nothing_tells() -> None:
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(500), OLD: iv(100)}, extension=False),
        ("n2", SERVER): server_row({OLD: iv(700)}, extension=False),
        ("n3", SERVER): server_row({OLD: iv(800, server=9)}, extension=False),
    }
    e = gather(rows, NEW, OLD, ["n1"], 200)
    assert e.source == NODE_GROUPS and e.other_share is None and e.counted == 600
    assert e.new_nodes == ("n1",) and e.base_nodes == ("n2", "n3")
    assert e.base.requests == 1509 and e.base.count("server") == 9
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "healthy" and "unknown" in got.basis()
    only_new = {("n1", SERVER): server_row({NEW: iv(500)}, extension=False)}
    assert gather(only_new, NEW, OLD, ["n1"], 200).other_share == 0.0  # nothing else there


def test_a_version_with_no_traffic_of_its_own_waits_whatever_the_node_serves() -> None:
    """Every request names the old version's label: the canary is busy, the new version idle."""
    rows: Rows = {
        ("n1", SERVER): server_row({OLD: iv(5000)}),
        ("n2", SERVER): server_row({OLD: iv(5000)}),
    }
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "waiting" and got.reason == "waiting for traffic: 0 of 200 requests"
    gw_told: Rows = {  # the official binary, and a gateway that saw the same traffic
        ("n1", SERVER): server_row({OLD: iv(5000)}, extension=False),
        ("n1", GATEWAY): BeatModel(iv(100), frozenset(), {OLD: iv(100)}),
    }
    assert judge_stage(SPEC, state(), gw_told, 1100.0).verdict == "waiting"
    idle = judge_stage(SPEC, state(), {("n2", SERVER): server_row({OLD: iv(300)})}, 1100.0)
    assert idle.verdict == "waiting" and idle.evidence is not None
    assert idle.evidence.source == NO_FIGURES  # the canary reported nothing: no source yet


def test_a_small_baseline_and_untimed_latency_wait_and_no_baseline_judges_alone() -> None:
    """With a baseline that has some traffic, the stage is compared with it, not judged
    without it (alone, the clients' 8 % mistakes would be held against the tolerance), and
    latency waits for enough timed requests on both sides; with none at all, the new side is
    judged alone."""
    new = {("n1", SERVER): server_row({NEW: iv(230, client=20)})}
    small = {**new, ("n2", SERVER): server_row({OLD: iv(50, client=4)})}
    got = judge_stage(SPEC, state(), small, 1100.0)
    assert got.verdict == "waiting"
    assert got.reason == "waiting for traffic: the baseline has 54 of 200 requests"
    untimed = {**new, ("n2", SERVER): server_row({OLD: iv(150, client=60)})}
    got = judge_stage(SPEC, state(), untimed, 1100.0)
    assert got.verdict == "waiting" and "latency needs 200 timed requests" in got.reason
    assert "230 and 150 so far" in got.reason
    alone = judge_stage(SPEC, state(), {**new, ("n2", SERVER): server_row({})}, 1100.0)
    assert alone.verdict == "healthy" and "no baseline" in alone.reason, alone.reason


# --- never a silent pass ------------------------------------------------------------------------
sides = st.dictionaries(
    st.sampled_from([NEW, OLD, 1]),
    st.builds(iv, st.integers(0, 400), st.integers(0, 40), st.integers(0, 40)),
    max_size=3,
)
rows_st = st.dictionaries(
    st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.sampled_from([SERVER, GATEWAY])),
    st.tuples(sides, st.booleans()).map(lambda t: server_row(t[0], t[1])),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(rows_st, st.integers(0, 500))
def test_a_stage_is_never_healthy_on_fewer_requests_of_its_own_than_needed(
    rows: Rows, min_requests: int
) -> None:
    spec = RolloutSpec(bake_s=100, min_requests=min_requests)
    got = judge_stage(spec, state(), rows, 1100.0)
    e = got.evidence
    assert e is not None
    if got.verdict in ("healthy", "breach"):
        assert e.counted >= max(1, min_requests)
        assert e.new.requests >= e.counted
    canary = rows.get(("n1", SERVER))
    if canary is not None and canary.by_version is not None:  # it tells versions apart
        assert e.source == VERSIONS
        told = [f.by_version for (_n, src), f in rows.items() if src == SERVER]
        own = sum(per[NEW].requests for per in told if per is not None and NEW in per)
        assert e.counted == own  # the new version's own requests, wherever they were served


def test_the_window_starts_after_the_warmup() -> None:
    spec = RolloutSpec(bake_s=100, min_requests=1, warmup_s=20)
    rs = state(started=1000.0)
    assert window_start(spec, rs) == 1020.0
    early = judge_stage(spec, rs, {("n1", SERVER): server_row({NEW: iv(50)})}, 1010.0)
    assert early.verdict == "warming up" and early.evidence is None


# --- the everyday cases -------------------------------------------------------------------
def test_a_renamed_input_fails_on_client_errors_against_a_baseline_with_its_own() -> None:
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(0, client=320), OLD: iv(90, client=8)}),
        ("n2", SERVER): server_row({OLD: iv(2000, client=160)}),
    }
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "breach" and got.reason.startswith("client errors"), got.reason


def test_thirty_five_percent_server_errors_breach_with_labels_present() -> None:
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(195, server=105), OLD: iv(500)}),
        ("n2", SERVER): server_row({OLD: iv(3000, server=2)}),
    }
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "breach" and "server errors" in got.reason


def test_a_slow_version_breaches_on_latency_from_many_samples() -> None:
    rows: Rows = {
        ("n1", SERVER): server_row({NEW: iv(2000, bucket=15)}),
        ("n2", SERVER): server_row({OLD: iv(3000, bucket=12)}),  # 1.8**3 = 5.8x faster
    }
    got = judge_stage(SPEC, state(), rows, 1100.0)
    assert got.verdict == "breach" and got.reason.startswith("p99"), got.reason
    doc = got.to_json()
    assert doc["source"] == VERSIONS and doc["requests"] == {
        "new": 2000,
        "baseline": 3000,
        "needed": 200,
    }
    assert [c["name"] for c in doc["checks"]] == ["server_errors", "client_errors", "latency"]
    assert doc["checks"][2]["figures"]["quantile"] == "p99"


# --- the plan after the bake --------------------------------------------------------------------
NODES = ["n1", "n2", "n3", "n4"]


def view(spec: RolloutSpec) -> ModelFleet:
    return ModelFleet("m", spec, ModelPolicy(), [1, 2, 3], NODES, {NEW: {"n1"}, OLD: set(NODES)})


def judged(spec: RolloutSpec, rs: RolloutState, rows: Rows, now: float) -> StageJudgement:
    return judge_stage(spec, rs, rows, now)


GOOD: Rows = {
    ("n1", SERVER): server_row({NEW: iv(400, client=8)}),
    ("n2", SERVER): server_row({OLD: iv(1200, client=24)}),
}
IDLE: Rows = {("n2", SERVER): server_row({OLD: iv(1200)}), ("n1", SERVER): server_row({})}


def test_healthy_moves_on_only_after_the_bake() -> None:
    rs = state()
    assert bake(view(SPEC), rs, judged(SPEC, rs, GOOD, 1050.0), 1050.0) is None
    step = bake(view(SPEC), rs, judged(SPEC, rs, GOOD, 1100.0), 1100.0)
    assert step is not None and step.event == "rollout_advanced"
    assert step.state.stage == 1 and step.state.status == "validating"
    assert "judged on versions: v3 408 requests vs v2 1224" in step.state.reason
    assert step.judgement is not None and step.judgement.verdict == "healthy"


def test_a_breach_rolls_back_at_once_even_within_the_bake() -> None:
    rows: Rows = {**GOOD, ("n1", SERVER): server_row({NEW: iv(250, server=150)})}
    rs = state()
    step = bake(view(SPEC), rs, judged(SPEC, rs, rows, 1010.0), 1010.0)
    assert step is not None and step.event == "rollout_rolled_back" and step.reject == NEW
    assert "server errors" in step.state.reason and "[versions:" in step.state.reason


def test_too_few_requests_hold_say_so_once_then_pause() -> None:
    rs = state()
    step = bake(view(SPEC), rs, judged(SPEC, rs, IDLE, 1150.0), 1150.0)
    assert step is not None and step.event == "rollout_waiting"
    assert step.state.status == "baking"
    assert step.state.reason.startswith("waiting for traffic: 0 of 200 requests")
    held = step.state
    assert bake(view(SPEC), held, judged(SPEC, held, IDLE, 1200.0), 1200.0) is None  # said once
    late = 1000.0 + SPEC.max_wait
    step = bake(view(SPEC), held, judged(SPEC, held, IDLE, late), late)
    assert step is not None and step.event == "rollout_paused"
    assert step.state.status == "paused" and step.state.paused_status == "baking"
    assert "not judged after 400 s: waiting for traffic: 0 of 200 requests" in step.state.reason
    # traffic came after all, before max_wait: it moves on
    step = bake(view(SPEC), held, judged(SPEC, held, GOOD, 1300.0), 1300.0)
    assert step is not None and step.event == "rollout_advanced"


def test_on_insufficient_promote_moves_on_and_says_it_was_not_judged() -> None:
    spec = RolloutSpec(bake_s=100, min_requests=200, on_insufficient="promote", max_wait_s=150)
    rs = state()
    step = bake(view(spec), rs, judged(spec, rs, IDLE, 1150.0), 1150.0)
    assert step is not None and step.event == "rollout_advanced"
    assert "not judged after 150 s" in step.state.reason
    assert "promoted (on_insufficient: promote)" in step.state.reason


def test_a_judgement_of_another_stage_decides_nothing() -> None:
    rs = state()
    old = judged(SPEC, RolloutState(NEW, OLD, "baking", 1, ("n1",)), GOOD, 1100.0)
    assert bake(view(SPEC), rs, old, 1100.0) is None
    assert bake(view(SPEC), rs, None, 1100.0) is None
