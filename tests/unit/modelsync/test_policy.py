from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.policy import (
    ModelPolicy,
    Policy,
    PolicyError,
    dump_policy,
    parse_policy,
    served_set,
)

EXAMPLE = {
    "schema": 1,
    "defaults": {"keep_versions": 1},
    "models": {
        "ranker": {
            "keep_versions": 2,
            "pin": None,
            "labels": {"stable": 41, "canary": 42},
            "disabled": False,
        }
    },
}


def test_parse_design_example_and_round_trip() -> None:
    p = parse_policy(json.dumps(EXAMPLE))
    assert p.default_keep_versions == 1
    assert p.keep_versions("ranker") == 2 and p.keep_versions("other") == 1
    assert p.for_model("ranker").labels == {"stable": 41, "canary": 42}
    assert parse_policy(dump_policy(p)) == p


def test_empty_and_minimal_documents() -> None:
    assert parse_policy("{}") == Policy()
    assert parse_policy(b'{"schema": 1}') == Policy()


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ({"schema": 2}, "unsupported schema"),
        ({"schema": 1, "extra": 1}, "unknown keys"),
        ({"defaults": {"keep_versions": 0}}, "defaults.keep_versions"),
        ({"defaults": {"keep_versions": True}}, "defaults.keep_versions"),
        ({"defaults": {"keep": 1}}, "defaults"),
        ({"models": []}, "models: expected an object"),
        ({"models": {"bad name": {}}}, "bad model name"),
        ({"models": {"_modelsync": {}}}, "reserved"),
        ({"models": {"m": {"pin": 0}}}, "models.m.pin"),
        ({"models": {"m": {"pin": "3"}}}, "models.m.pin"),
        ({"models": {"m": {"pin": 2**63}}}, "models.m.pin"),
        ({"models": {"m": {"keep_versions": 1.5}}}, "models.m.keep_versions"),
        ({"models": {"m": {"keep_version": 1}}}, "unknown keys"),
        ({"models": {"m": {"labels": {"1bad": 3}}}}, "bad label"),
        ({"models": {"m": {"labels": {"ok": -1}}}}, "models.m.labels.ok"),
        ({"models": {"m": {"labels": [1]}}}, "labels"),
        ({"models": {"m": {"disabled": "yes"}}}, "models.m.disabled"),
        ({"models": {"m": 3}}, "models.m: expected an object"),
    ],
)
def test_malformed_policies_are_rejected_with_their_location(doc: object, where: str) -> None:
    data = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(PolicyError, match=None) as info:
        parse_policy(data)
    assert where in str(info.value)


def pol(**mp: object) -> Policy:
    return Policy(models={"m": ModelPolicy(**mp)})  # type: ignore[arg-type]


def test_served_set_newest_keep_versions() -> None:
    assert served_set("m", [1, 2, 3], Policy()).versions == {3}
    assert served_set("m", [1, 2, 3], Policy(default_keep_versions=2)).versions == {2, 3}
    assert served_set("m", [3, 1, 2], pol(keep_versions=5)).versions == {1, 2, 3}
    assert served_set("m", [], Policy()).versions == frozenset()


def test_served_set_pin_and_labels() -> None:
    s = served_set("m", [1, 2, 3], pol(pin=1))
    assert s.versions == {1} and not s.problems
    s = served_set("m", [1, 2, 3], pol(pin=2, labels={"canary": 3}))
    assert s.versions == {2, 3} and s.labels == {"canary": 3}
    s = served_set("m", [1, 2, 3], pol(labels={"stable": 1, "canary": 3}, keep_versions=1))
    assert s.versions == {1, 3} and s.labels == {"stable": 1, "canary": 3}


def test_missing_pin_falls_back_and_reports() -> None:
    s = served_set("m", [1, 2], pol(pin=9))
    assert s.versions == {2}
    assert any("pin 9" in p for p in s.problems)


def test_missing_label_target_is_left_out_and_reported() -> None:
    s = served_set("m", [1, 2], pol(labels={"stable": 7}))
    assert s.versions == {2} and s.labels == {}
    assert any("stable" in p for p in s.problems)


def test_disabled_serves_nothing() -> None:
    s = served_set("m", [1, 2], pol(disabled=True, pin=1, labels={"a": 2}))
    assert s.versions == frozenset() and s.labels == {}


def test_with_model_drops_default_entries() -> None:
    p = Policy().with_model("m", ModelPolicy(pin=3))
    assert p.for_model("m").pin == 3
    assert "m" not in p.with_model("m", ModelPolicy()).models


@given(
    complete=st.sets(st.integers(1, 50), max_size=12),
    keep=st.integers(1, 5),
    pin=st.none() | st.integers(1, 60),
    labels=st.dictionaries(
        st.sampled_from(["stable", "canary", "b"]), st.integers(1, 60), max_size=3
    ),
    disabled=st.booleans(),
)
def test_served_set_properties(
    complete: set[int], keep: int, pin: int | None, labels: dict[str, int], disabled: bool
) -> None:
    policy = pol(keep_versions=keep, pin=pin, labels=labels, disabled=disabled)
    s = served_set("m", complete, policy)
    assert s.versions <= complete  # never asks for a version that is not complete
    assert set(s.labels.values()) <= s.versions
    if disabled:
        assert s.versions == frozenset()
        return
    if complete:
        assert s.versions  # a model with complete versions is never emptied by a bad pin
    if pin in complete:
        assert pin in s.versions
        assert s.versions - {pin} <= set(labels.values())
    else:
        newest = sorted(complete, reverse=True)[:keep]
        assert set(newest) <= s.versions
    assert parse_policy(dump_policy(policy)) == policy
