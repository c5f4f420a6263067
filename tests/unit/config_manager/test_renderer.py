from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from config_manager.renderer import (
    DesiredModel,
    desired_models,
    policy_wanted,
    render_text,
    stage_labels,
    versions_to_prune,
)
from modelsync.policy import ModelPolicy, Policy


def test_desired_serves_newest_installed_minus_failed() -> None:
    d = desired_models({"m": {1, 2, 3}}, {"m": {3}}, Policy(), "/models")
    assert d == {"m": DesiredModel("m", "/models/m", (2,), {})}
    d = desired_models({"m": {1, 2, 3}}, {}, Policy(default_keep_versions=2), "/models/")
    assert d["m"].versions == (2, 3) and d["m"].base_path == "/models/m"


def test_desired_pin_labels_disabled() -> None:
    policy = Policy(
        models={"m": ModelPolicy(pin=1, labels={"canary": 3}), "off": ModelPolicy(disabled=True)}
    )
    d = desired_models({"m": {1, 2, 3}, "off": {1}}, {}, policy, "/r")
    assert d["m"].versions == (1, 3) and d["m"].labels == {"canary": 3}
    assert "off" not in d


def test_pin_to_a_version_not_installed_keeps_serving_the_newest() -> None:
    d = desired_models({"m": {1, 2}}, {}, Policy(models={"m": ModelPolicy(pin=7)}), "/r")
    assert d["m"].versions == (2,)


def test_stage_labels_holds_back_labels_onto_unavailable_versions() -> None:
    desired = {"m": DesiredModel("m", "/r/m", (1, 2), {"stable": 1, "canary": 2})}
    staged, held = stage_labels(desired, {"m": {1}})
    assert held and staged["m"].labels == {"stable": 1} and staged["m"].versions == (1, 2)
    staged, held = stage_labels(desired, {"m": {1, 2}})
    assert not held and staged == desired


def test_render_text_parses_as_a_model_server_config() -> None:
    from google.protobuf import text_format

    from modelsync.protos import serving_protos

    text = render_text(
        {
            "m": DesiredModel("m", "/r/m", (1, 2), {"stable": 1}),
            "a": DesiredModel("a", '/r/"a"', (5,), {}),
        }
    )
    cfg = text_format.Parse(text, serving_protos().ModelServerConfig())
    models = {c.name: c for c in cfg.model_config_list.config}
    assert list(models) == ["a", "m"]
    assert list(models["m"].model_version_policy.specific.versions) == [1, 2]
    assert dict(models["m"].version_labels) == {"stable": 1}
    assert models["a"].base_path == '/r/"a"' and models["m"].model_platform == "tensorflow"


def test_prune_rules() -> None:
    on_disk = {"m": {1, 2, 3, 4}}
    aspired = {"m": {4}}
    states = {"m": {1: "END", 2: "END", 3: "END", 4: "AVAILABLE"}}
    # keep one rollback copy (3), prune the rest
    assert versions_to_prune(on_disk, aspired, states, {}, 1) == [("m", 2), ("m", 1)]
    # a failed version is never a rollback copy: v2 is kept instead of the corrupt v3
    assert versions_to_prune(on_disk, aspired, states, {"m": {3}}, 1) == [("m", 3), ("m", 1)]
    # not END yet: kept
    states2 = {"m": {1: "UNLOADING", 2: "END", 3: "END", 4: "AVAILABLE"}}
    assert versions_to_prune(on_disk, aspired, states2, {}, 1) == [("m", 2)]
    # the only AVAILABLE version is never pruned, even if no longer aspired
    assert (
        versions_to_prune({"m": {1, 2}}, {"m": {2}}, {"m": {1: "AVAILABLE", 2: "LOADING"}}, {}, 0)
        == []
    )
    # a failed version the policy still selects (the newest) is kept: the puller would only
    # fetch it again
    assert (
        versions_to_prune(
            {"m": {2, 3}},
            {"m": {2}},
            {"m": {2: "AVAILABLE", 3: "END"}},
            {"m": {3}},
            0,
            protected={"m": {3}},
        )
        == []
    )
    # a model that left the config: TF Serving knows nothing of it, so it is END for us
    assert versions_to_prune({"gone": {1, 2}}, {}, {}, {}, 1) == [("gone", 1)]


def test_policy_wanted_includes_failed_versions() -> None:
    assert policy_wanted({"m": {1, 2, 3}}, Policy()) == {"m": {3}}


@given(
    on_disk=st.sets(st.integers(1, 8), max_size=8),
    aspired=st.sets(st.integers(1, 8)),
    states=st.dictionaries(
        st.integers(1, 8), st.sampled_from(["START", "LOADING", "AVAILABLE", "UNLOADING", "END"])
    ),
    failed=st.sets(st.integers(1, 8)),
    keep=st.integers(0, 3),
)
def test_prune_never_touches_what_may_be_served(
    on_disk: set[int], aspired: set[int], states: dict[int, str], failed: set[int], keep: int
) -> None:
    pruned = {
        v
        for _m, v in versions_to_prune(
            {"m": on_disk}, {"m": aspired}, {"m": states}, {"m": failed}, keep
        )
    }
    assert pruned <= on_disk
    assert not pruned & aspired
    assert all(states.get(v, "END") == "END" for v in pruned)
    available = {v for v, s in states.items() if s == "AVAILABLE"}
    if available:
        assert available - pruned
