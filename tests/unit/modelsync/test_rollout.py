"""Staged rollouts, pure: stage membership, the spec (old specs still parse; the judge's keys),
the served set per node."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.judge import Limits
from modelsync.policy import ModelPolicy, Policy, dump_policy, fetch_set, parse_policy, served_set
from modelsync.rollout import (
    SPEC_BOUNDS,
    SPEC_CHOICES,
    RolloutError,
    RolloutSpec,
    RolloutState,
    parse_spec,
    spec_schema,
    stage_nodes,
    stage_size,
)

nodes_st = st.lists(
    st.text("abcdefghij0123456789", min_size=1, max_size=6), min_size=0, max_size=40, unique=True
)
waves_st = st.lists(st.floats(0.01, 1.0), min_size=0, max_size=4).map(lambda ws: (*sorted(ws), 1.0))
spec_st = st.builds(RolloutSpec, canary_nodes=st.integers(1, 5), waves=waves_st)


@settings(max_examples=300, deadline=None)
@given(nodes_st, spec_st, st.integers(1, 100))
def test_stages_are_exact_monotone_deterministic_and_reach_everyone(nodes, spec, version) -> None:  # type: ignore[no-untyped-def]
    chosen: tuple[str, ...] = ()
    sizes = []
    for stage in range(spec.stages()):
        nxt = stage_nodes("m", version, spec, stage, nodes, chosen)
        assert set(chosen) <= set(nxt)  # monotone: nobody goes back
        assert nxt == stage_nodes("m", version, spec, stage, list(reversed(nodes)), chosen)
        assert len(nxt) == stage_size(spec, stage, len(nodes))
        sizes.append(len(nxt))
        chosen = nxt
    if nodes:
        assert sizes[0] == min(spec.canary_nodes, len(nodes))  # the exact canary count
        for i, wave in enumerate(spec.waves, start=1):  # each wave rounds its fraction up
            assert sizes[i] == max(sizes[0], math.ceil(wave * len(nodes) - 1e-9))
    assert set(chosen) == set(nodes)  # 1.0 reaches every live node
    assert sizes == sorted(sizes)


def test_stages_keep_nodes_that_went_away_and_spread_rollouts() -> None:
    spec = RolloutSpec(canary_nodes=1, waves=(0.5, 1.0))
    nodes = [f"n{i}" for i in range(10)]
    canary = stage_nodes("m", 7, spec, 0, nodes)
    wave = stage_nodes("m", 7, spec, 1, [n for n in nodes if n != canary[0]], canary)
    assert wave[0] == canary[0] and len(wave) == 5
    canaries = {stage_nodes("m", v, spec, 0, nodes)[0] for v in range(1, 40)}
    assert len(canaries) > 3  # not always the same node


OLD_SPEC = {
    "canary_nodes": 1,
    "waves": [0.25, 1.0],
    "bake_s": 300,
    "max_error_rate": 0.01,
    "max_p99_ratio": 1.5,
    "min_requests": 200,
}


def test_an_old_spec_parses_and_writes_back_unchanged() -> None:
    """A spec of before the judge's keys: same values, and written as it was, so that a node
    of an older modelsync still reads the policy."""
    spec = parse_spec(OLD_SPEC)
    assert spec.to_json() == {**OLD_SPEC, "bake_s": 300.0}
    assert parse_spec(spec.to_json()) == spec


def test_the_old_limits_map_onto_the_judge() -> None:
    spec = parse_spec({**OLD_SPEC, "max_error_rate": 0.02, "max_p99_ratio": 3, "min_requests": 50})
    assert spec.limits() == Limits(
        max_server_error_increase=0.02,
        max_client_error_increase=0.05,
        max_latency_ratio=3.0,
        min_requests=50,
        confidence=0.99,
    )


def test_the_judge_keys_parse_and_are_written_only_when_set() -> None:
    doc = {
        "bake_s": 60,
        "max_client_error_increase": 0.1,
        "confidence": 0.95,
        "warmup_s": 5,
        "max_wait_s": 600,
        "on_insufficient": "promote",
    }
    spec = parse_spec(doc)
    assert (spec.warmup, spec.max_wait, spec.on_insufficient) == (5.0, 600.0, "promote")
    assert spec.limits().confidence == 0.95 and spec.limits().max_client_error_increase == 0.1
    assert {k: spec.to_json()[k] for k in doc} == {**doc, "bake_s": 60.0}
    assert parse_spec(spec.to_json()) == spec
    effective = spec.effective_json()
    assert effective["warmup_s"] == 5.0 and effective["on_insufficient"] == "promote"


@given(st.floats(0, 7 * 86400))
def test_warmup_and_wait_derive_from_the_bake(bake: float) -> None:
    spec = RolloutSpec(bake_s=bake)
    assert spec.warmup == min(30.0, bake / 10) and spec.max_wait == 4 * bake
    assert spec.warmup <= spec.bake_s
    assert "warmup_s" not in spec.to_json() and "max_wait_s" not in spec.to_json()
    assert spec.effective_json()["max_wait_s"] == 4 * bake


def test_the_schema_has_every_key_with_its_bounds() -> None:
    props = spec_schema()["properties"]
    assert set(props) == {*SPEC_BOUNDS, *SPEC_CHOICES, "waves"}
    assert props["warmup_s"]["minimum"] == 0 and props["confidence"]["maximum"] == 0.9999
    assert props["on_insufficient"] == {"type": "string", "enum": ["pause", "promote"]}


@pytest.mark.parametrize(
    "bad",
    [
        {"on_insufficient": "ignore"},
        {"confidence": 0.2},
        {"confidence": 1},
        {"warmup_s": -1},
        {"max_wait_s": "long"},
        {"max_client_error_increase": 2},
        {"warmup_s": None},
    ],
)
def test_bad_judge_keys_are_refused(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(RolloutError) as exc:
        parse_spec(bad)
    assert next(iter(bad)) in str(exc.value)


def state(status: str, nodes: tuple[str, ...] = ("a",)) -> RolloutState:
    return RolloutState(version=3, previous=2, status=status, nodes=nodes)


@pytest.mark.parametrize(
    "status, inside, outside",
    [
        ("baking", {3}, {2}),
        ("validating", {3}, {2}),
        ("paused", {3}, {2}),
        ("complete", {3}, {3}),
        ("rolled_back", {2}, {2}),
    ],
)
def test_served_set_per_node(status: str, inside: set[int], outside: set[int]) -> None:
    policy = Policy(
        models={
            "m": ModelPolicy(
                rollout=RolloutSpec(),
                rollout_state=state(status),
                rejected=frozenset({3}) if status == "rolled_back" else frozenset(),
            )
        }
    )
    assert served_set("m", [1, 2, 3], policy, "a").versions == inside
    assert served_set("m", [1, 2, 3], policy, "b").versions == outside
    # a newer version waits for its own rollout on every node
    assert served_set("m", [1, 2, 3, 4], policy, "b").versions == outside
    if status in ("baking", "validating", "paused"):  # fetched ahead everywhere
        assert fetch_set("m", [1, 2, 3], policy, "b") == {2, 3}


def test_pin_and_labels_are_immediate_and_rejected_never_served() -> None:
    rs = state("baking")
    policy = Policy(
        models={
            "m": ModelPolicy(
                rollout=RolloutSpec(),
                rollout_state=rs,
                rejected=frozenset({1}),
                labels={"canary": 3},
            )
        }
    )
    assert served_set("m", [1, 2, 3], policy, "b").versions == {2, 3}  # the label
    pinned = Policy(models={"m": ModelPolicy(pin=1, rollout_state=rs, rejected=frozenset({1}))})
    assert served_set("m", [1, 2, 3], pinned, "a").versions == {1}  # the escape hatch
    plain = Policy(models={"m": ModelPolicy(rejected=frozenset({3}))})
    assert served_set("m", [1, 2, 3], plain).versions == {2}


@settings(max_examples=200, deadline=None)
@given(
    nodes_st,
    st.sampled_from(["baking", "complete", "rolled_back", "paused"]),
    st.lists(st.integers(1, 9), min_size=1, max_size=6, unique=True),
)
def test_served_sets_are_deterministic_and_split_two_ways(nodes, status, complete) -> None:  # type: ignore[no-untyped-def]
    members = tuple(nodes[: len(nodes) // 2])
    policy = Policy(
        models={
            "m": ModelPolicy(
                rollout=RolloutSpec(),
                rollout_state=RolloutState(
                    version=max(complete), previous=min(complete), status=status, nodes=members
                ),
            )
        }
    )
    sets = {n: served_set("m", complete, policy, n).versions for n in nodes}
    assert len(set(sets.values())) <= 2
    assert all(served_set("m", complete, policy, n).versions == v for n, v in sets.items())
    for n, v in sets.items():
        assert v and max(v) <= max(complete)
        if status in ("baking", "paused") and n not in members:
            assert max(complete) not in v or max(complete) == min(complete)


def test_a_state_left_without_a_spec_steers_no_node() -> None:
    """The spec removed (by hand or through the API): every node goes to the target at once."""
    left = Policy(models={"m": ModelPolicy(rollout_state=state("baking"))})
    assert served_set("m", [1, 2, 3], left, "b").versions == {3}
    assert fetch_set("m", [1, 2, 3, 4], left, "b") == {4}
    done = Policy(models={"m": ModelPolicy(rollout_state=state("complete"))})
    assert served_set("m", [2, 3, 4], done, "a").versions == {4}
    by_default = Policy(
        models={"m": ModelPolicy(rollout_state=state("baking"))}, default_rollout=RolloutSpec()
    )
    assert served_set("m", [1, 2, 3], by_default, "b").versions == {2}


def test_policy_round_trip_and_bad_specs() -> None:
    doc = {
        "schema": 1,
        "defaults": {"keep_versions": 1, "rollout": {"bake_s": 60}},
        "models": {
            "m": {
                "rejected": [4],
                "rollout": {"canary_nodes": 2, "waves": [0.5, 1.0]},
                "rollout_state": state("baking").to_json(),
            }
        },
    }
    policy = parse_policy(doc)
    assert policy.rollout_spec("m").canary_nodes == 2  # type: ignore[union-attr]
    assert policy.rollout_spec("other").bake_s == 60  # type: ignore[union-attr]
    assert parse_policy(dump_policy(policy)) == policy
    for bad in (
        {"waves": [0.5]},
        {"waves": [0.8, 0.5, 1.0]},
        {"canary_nodes": 0},
        {"bake": 3},
        {"max_error_rate": 2},
        {"waves": "all"},
    ):
        with pytest.raises(RolloutError):
            parse_spec(bad)
