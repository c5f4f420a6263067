from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tfserving.policy import (
    Action,
    Resolution,
    Snapshot,
    State,
    VersionPolicy,
    aspired_versions,
    next_actions,
    resolve_version,
    version_dirs,
)


def test_version_dirs() -> None:
    assert version_dirs(
        ["1", "10", "2", "x", "1.5", "-1", "0", "99999999999999999999", ".tmp"]
    ) == [0, 1, 2, 10]


def test_aspired_versions_by_policy() -> None:
    found = [1, 2, 3, 5]
    assert aspired_versions(found, VersionPolicy()) == {5}
    assert aspired_versions(found, VersionPolicy("latest", 2)) == {3, 5}
    assert aspired_versions(found, VersionPolicy("all")) == {1, 2, 3, 5}
    assert aspired_versions(found, VersionPolicy("specific", versions=frozenset({2, 4}))) == {2}
    assert aspired_versions([], VersionPolicy()) == frozenset()


def S(v: int, state: State, aspired: bool, failed: bool = False) -> Snapshot:
    return Snapshot(v, state, aspired, failed)


def test_swap_loads_new_before_unloading_old() -> None:
    # v1 serving, v2 newly aspired: load v2, keep v1
    acts = next_actions([S(1, State.AVAILABLE, False), S(2, State.UNKNOWN, True)])
    assert acts == [Action("load", 2)]
    # v2 loading: nothing to do, v1 keeps serving
    assert next_actions([S(1, State.AVAILABLE, False), S(2, State.LOADING, True)]) == []
    # v2 available: now unload v1
    assert next_actions([S(1, State.AVAILABLE, False), S(2, State.AVAILABLE, True)]) == [
        Action("unload", 1)
    ]


def test_failed_new_version_keeps_old_serving() -> None:
    assert next_actions([S(1, State.AVAILABLE, False), S(2, State.END, True, failed=True)]) == []


def test_model_removed_unloads_everything() -> None:
    acts = next_actions([S(1, State.AVAILABLE, False), S(2, State.AVAILABLE, False)])
    assert set(acts) == {Action("unload", 1), Action("unload", 2)}


def test_two_unaspired_serving_unload_the_lowest_first() -> None:
    acts = next_actions(
        [S(1, State.AVAILABLE, False), S(2, State.AVAILABLE, False), S(3, State.LOADING, True)]
    )
    assert acts == [Action("unload", 1)]


def test_load_order_and_concurrency_bound() -> None:
    acts = next_actions(
        [S(1, State.UNKNOWN, True), S(3, State.UNKNOWN, True), S(2, State.UNKNOWN, True)],
        max_loads=2,
    )
    assert acts == [Action("load", 3), Action("load", 2)]
    assert next_actions([S(1, State.UNKNOWN, True), S(3, State.LOADING, True)], max_loads=1) == []


states = st.sampled_from([State.UNKNOWN, State.LOADING, State.AVAILABLE, State.END])


@given(st.lists(st.tuples(states, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_never_unloads_the_last_available_while_aspired_is_pending(
    spec: list[tuple[State, bool, bool]],
) -> None:
    snaps = [
        S(i + 1, state, aspired, failed and state == State.END)
        for i, (state, aspired, failed) in enumerate(spec)
    ]
    acts = next_actions(snaps, max_loads=4)
    unloaded = {a.version for a in acts if a.kind == "unload"}
    serving_after = {s.version for s in snaps if s.state == State.AVAILABLE} - unloaded
    any_aspired = any(s.aspired for s in snaps)
    if any_aspired and any(s.state == State.AVAILABLE for s in snaps):
        assert serving_after, (snaps, acts)  # availability preserved
    for a in acts:
        snap = next(s for s in snaps if s.version == a.version)
        assert (a.kind == "unload") == (not snap.aspired)


def test_resolve_version_as_tf_serving() -> None:
    """server_core.cc ServableRequestFromModelSpec / GetModelVersionForLabel, basic_manager.cc
    GetUntypedServableHandle, manager.h ServableRequest::DebugString."""
    assert resolve_version("m", None, None, [1, 3], {}) == Resolution(3)
    assert resolve_version("m", 1, None, [1, 3], {}) == Resolution(1)
    assert resolve_version("m", None, "stable", [1, 3], {"stable": 1}) == Resolution(1)
    not_found = "Servable not found for request: "
    assert resolve_version("m", 2, None, [1, 3], {}) == Resolution(
        None, "NOT_FOUND", not_found + "Specific(m, 2)"
    )
    # no version loaded yet (or none left): NOT_FOUND for the latest, not UNAVAILABLE
    assert resolve_version("m", None, None, [], {}) == Resolution(
        None, "NOT_FOUND", not_found + "Latest(m)"
    )
    # a label is resolved first, then looked up as a specific version
    assert resolve_version("m", None, "canary", [1], {"canary": 3}) == Resolution(
        None, "NOT_FOUND", not_found + "Specific(m, 3)"
    )
    unknown_label = Resolution(None, "INVALID_ARGUMENT", "Unrecognized servable version label: x")
    assert resolve_version("m", None, "x", [1, 3], {"stable": 1}) == unknown_label
    assert resolve_version("nope", None, "x", [], {}) == unknown_label  # unknown model too
    assert resolve_version("", None, None, [1], {}) == Resolution(
        None, "INVALID_ARGUMENT", "ModelSpec has no name specified."
    )
