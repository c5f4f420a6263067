"""plan_reload: the config manager's decision of one pass, over plain values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from config_manager.planner import Observed, PlanSettings, ReloadState, after_push, plan_reload
from config_manager.serving import VersionState
from modelsync.policy import ModelPolicy, Policy

MODELS = ["a", "b"]
STATES = ["LOADING", "AVAILABLE", "END", "UNLOADING"]
NODE = PlanSettings("/m")

installed_st = st.dictionaries(
    st.sampled_from(MODELS),
    st.dictionaries(st.integers(1, 6), st.sampled_from(["f1", "f2"]), min_size=1, max_size=4),
    max_size=2,
)
states_st = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(MODELS),
        st.dictionaries(
            st.integers(1, 6), st.tuples(st.sampled_from(STATES), st.booleans()), max_size=4
        ),
        max_size=2,
    ),
)
policy_st = st.builds(
    lambda keep, labels: Policy(models={"a": ModelPolicy(keep_versions=keep, labels=labels)}),
    st.integers(1, 3),
    st.dictionaries(st.sampled_from(["stable", "canary"]), st.integers(1, 6), max_size=2),
)
failed_st = st.dictionaries(
    st.tuples(st.sampled_from(MODELS), st.integers(1, 6)), st.sampled_from(["f1", "f2"]), max_size=3
)


def to_states(raw):  # type: ignore[no-untyped-def]
    if raw is None:
        return None
    return {
        m: {v: VersionState(v, s, 3 if err and s == "END" else 0) for v, (s, err) in vs.items()}
        for m, vs in raw.items()
    }


@settings(max_examples=300, deadline=None)
@given(installed_st, states_st, policy_st, failed_st, st.booleans())
def test_plan_reload_invariants(installed, raw_states, policy, failed, pushed_before) -> None:  # type: ignore[no-untyped-def]
    states = to_states(raw_states)
    previous = ReloadState(failed=failed)
    if pushed_before:
        first = plan_reload(Observed(installed, to_states({})), policy, previous, NODE)
        previous = after_push(previous, first)
    plan = plan_reload(Observed(installed, states), policy, previous, NODE)
    # deterministic
    assert plan == plan_reload(Observed(installed, states), policy, previous, NODE)
    # nothing is pushed while TF Serving does not answer
    if states is None:
        assert not plan.push and not plan.restarted
    else:
        assert plan.push == (plan.text != previous.pushed_text or plan.restarted)
    # failures are remembered only for the content that failed
    for (m, v), fp in plan.failed.items():
        assert installed.get(m, {}).get(v) == fp
    for m, dm in plan.staged.items():
        # only installed, not failed versions are served
        assert set(dm.versions) <= set(installed[m])
        assert not any((m, v) in plan.failed for v in dm.versions)
        # labels only onto versions TF Serving reports AVAILABLE, and only those the policy has
        for label, v in dm.labels.items():
            assert (states or {}).get(m, {}).get(v) is not None
            assert states[m][v].state == "AVAILABLE"
            assert plan.desired[m].labels[label] == v
        assert dm.versions == plan.desired[m].versions
    assert plan.held_labels == any(
        plan.desired[m].labels != plan.staged[m].labels for m in plan.desired
    )


@settings(max_examples=200, deadline=None)
@given(installed_st, policy_st)
def test_settled_plan_is_a_fixed_point(installed, policy) -> None:  # type: ignore[no-untyped-def]
    """Once TF Serving serves what was pushed (every version AVAILABLE), nothing more is pushed
    unless a held label can now move, and then exactly once."""
    state = ReloadState()
    pushes = 0
    for _ in range(4):
        served = {
            m: {v: VersionState(v, "AVAILABLE") for v in dm.versions}
            for m, dm in state.pushed.items()
        }
        plan = plan_reload(Observed(installed, served), policy, state, NODE)
        if plan.push:
            pushes += 1
            state = after_push(state, plan)
    assert pushes <= 2
    served = {
        m: {v: VersionState(v, "AVAILABLE") for v in dm.versions} for m, dm in state.pushed.items()
    }
    final = plan_reload(Observed(installed, served), policy, state, NODE)
    assert not final.push and not final.held_labels


def test_restart_is_detected_only_after_a_push() -> None:
    installed = {"a": {1: "f1"}}
    fresh = plan_reload(Observed(installed, {}), Policy(), ReloadState(), NODE)
    assert fresh.push and not fresh.restarted
    state = after_push(ReloadState(), fresh)
    # TF Serving forgot everything
    lost = plan_reload(Observed(installed, {}), Policy(), state, NODE)
    assert lost.push and lost.restarted and lost.text == fresh.text
    kept = plan_reload(
        Observed(installed, {"a": {1: VersionState(1, "AVAILABLE")}}), Policy(), state, NODE
    )
    assert not kept.push and not kept.restarted
