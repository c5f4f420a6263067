from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelsync.policy import ModelPolicy, Policy
from remote_model_puller.planner import Install, plan_sync


def test_installs_newest_served_versions_missing_locally() -> None:
    remote = {"m": {1: "a", 2: "b", 3: "c"}}
    plan = plan_sync(remote, {}, Policy(default_keep_versions=2))
    assert plan.installs == (Install("m", 3, "c", "missing"), Install("m", 2, "b", "missing"))
    assert plan.wanted == {"m": frozenset({2, 3})}


def test_idle_when_everything_is_installed() -> None:
    remote = {"m": {1: "a", 2: "b"}}
    plan = plan_sync(remote, {"m": {2: "b", 1: "a"}}, Policy())
    assert plan.idle and plan.wanted == {"m": frozenset({2})}


def test_changed_and_unrecorded_versions_are_fetched_again() -> None:
    remote = {"m": {1: "a", 2: "b"}}
    plan = plan_sync(remote, {"m": {2: "old", 1: None}}, Policy(default_keep_versions=2))
    assert set(plan.installs) == {
        Install("m", 2, "b", "changed"),
        Install("m", 1, "a", "unrecorded"),
    }


def test_pin_labels_disabled() -> None:
    remote = {"m": {1: "a", 2: "b", 3: "c"}, "off": {1: "x"}}
    policy = Policy(
        models={"m": ModelPolicy(pin=1, labels={"canary": 3}), "off": ModelPolicy(disabled=True)}
    )
    plan = plan_sync(remote, {}, policy)
    assert {(i.model, i.version) for i in plan.installs} == {("m", 1), ("m", 3)}
    assert plan.wanted["off"] == frozenset()


def test_policy_for_a_model_not_in_bucket_is_a_problem_not_a_crash() -> None:
    plan = plan_sync({}, {}, Policy(models={"ghost": ModelPolicy(pin=4)}))
    assert plan.idle and plan.wanted == {"ghost": frozenset()}
    assert any("pin 4" in p for p in plan.problems)


fps = st.sampled_from(["a", "b", "c"])


@given(
    remote=st.dictionaries(st.integers(1, 20), fps, max_size=8),
    local=st.dictionaries(st.integers(1, 20), st.none() | fps, max_size=8),
    keep=st.integers(1, 4),
)
def test_plan_properties(remote: dict[int, str], local: dict[int, str | None], keep: int) -> None:
    plan = plan_sync({"m": remote}, {"m": local}, Policy(default_keep_versions=keep))
    wanted = plan.wanted["m"]
    assert wanted == frozenset(sorted(remote, reverse=True)[:keep])
    planned = {i.version for i in plan.installs}
    assert planned <= wanted
    for v in wanted:  # after the plan runs, every wanted version is local with the remote content
        assert (v in planned) == (local.get(v, "missing") != remote[v])
    versions = [i.version for i in plan.installs]
    assert versions == sorted(versions, reverse=True)
