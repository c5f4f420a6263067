from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.layout import (
    ObjectInfo,
    SettleTracker,
    complete_versions,
    is_model_name,
    parse_listing,
    parse_version,
    structure_problem,
)

SM = ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"]


def objs(prefix: str, names: list[str], gen: int = 1) -> list[ObjectInfo]:
    return [
        ObjectInfo(name=f"{prefix}/{n}" if prefix else n, generation=gen, size=10) for n in names
    ]


@pytest.mark.parametrize("name", ["ranker", "a", "A1", "my_model.v2", "x-y", "9lives", "a" * 128])
def test_good_model_names(name: str) -> None:
    assert is_model_name(name)


@pytest.mark.parametrize(
    "name", ["", "_modelsync", "-x", ".hidden", "a b", "a/b", "é", "a" * 129, "x\n"]
)
def test_bad_model_names(name: str) -> None:
    assert not is_model_name(name)


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("42", 42), ("9223372036854775807", 2**63 - 1)]
)
def test_good_versions(text: str, value: int) -> None:
    assert parse_version(text) == value


@pytest.mark.parametrize(
    "text", ["0", "007", "-1", "+1", "1.0", "", "v1", "9223372036854775808", "1e3", " 1", "\u0661"]
)
def test_bad_versions(text: str) -> None:
    assert parse_version(text) is None


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_version_round_trip(v: int) -> None:
    assert parse_version(str(v)) == v


@given(st.text(max_size=30))
def test_parse_version_never_raises(text: str) -> None:
    v = parse_version(text)
    assert v is None or (1 <= v < 2**63 and str(v) == text)


def test_structure_rules() -> None:
    assert structure_problem(SM) is None
    assert structure_problem(["saved_model.pbtxt"]) is None  # no variables at all is fine
    assert structure_problem(["model.tar.gz"]) is None
    assert "only file" in (structure_problem(["model.tar.gz", "saved_model.pb"]) or "")
    assert "no saved_model" in (structure_problem(SM[1:]) or "")
    assert "index" in (structure_problem(["saved_model.pb", SM[2]]) or "")
    assert "no files" in (structure_problem([]) or "")
    shards = ["saved_model.pb", "variables/variables.index"] + [
        f"variables/variables.data-{i:05d}-of-00004" for i in (0, 1, 3)
    ]
    assert "missing: [2]" in (structure_problem(shards) or "")
    shards.append("variables/variables.data-00002-of-00004")
    assert structure_problem(shards) is None
    assert "disagree" in (
        structure_problem([*shards, "variables/variables.data-00000-of-00005"]) or ""
    )


def test_parse_listing_groups_and_skips() -> None:
    names = (
        [f"ranker/1/{n}" for n in SM]
        + ["ranker/1/_READY"]
        + [f"ranker/2/{n}" for n in SM]
        + [
            "bad name/1/saved_model.pb",
            "ranker/007/saved_model.pb",
            "ranker/x/y",
            "README",
            "ranker/notes.txt",
            "_modelsync/policy.json",
            "ranker/",
            "ranker/3/",
            "ranker/4/../saved_model.pb",
            "tarred/5/model.tar.gz",
        ]
    )
    listing = parse_listing(objs("models", names), "models", "_READY")
    assert sorted(listing.models) == ["ranker", "tarred"]
    assert sorted(listing.models["ranker"]) == [1, 2]
    v1 = listing.version("ranker", 1)
    assert v1 is not None and v1.has_marker and v1.problem() is None
    assert [f.path for f in v1.files] == sorted(SM)
    v2 = listing.version("ranker", 2)
    assert v2 is not None and not v2.has_marker
    tar = listing.version("tarred", 5)
    assert tar is not None and tar.is_tarball
    skipped = {s.path: s.reason for s in listing.skipped}
    assert "models/bad name/" in skipped
    assert "models/ranker/007/" in skipped
    assert "models/ranker/x/" in skipped
    assert "models/README" in skipped
    assert "models/ranker/notes.txt" in skipped
    assert "models/ranker/4/../saved_model.pb" in skipped
    assert not any("_modelsync" in p for p in skipped)
    assert listing.version("ranker", 4) is None


def test_parse_listing_ignores_other_prefixes_and_root_prefix() -> None:
    listing = parse_listing(objs("", ["m/1/saved_model.pb", "other/x"]), "", "_READY")
    assert listing.version("m", 1) is not None
    listing = parse_listing(objs("", ["elsewhere/m/1/saved_model.pb"]), "models", "_READY")
    assert listing.models == {}


def test_fingerprint_changes_with_generation() -> None:
    a = parse_listing(objs("p", [f"m/1/{n}" for n in SM], gen=1), "p", "_READY")
    b = parse_listing(objs("p", [f"m/1/{n}" for n in SM], gen=2), "p", "_READY")
    va, vb = a.version("m", 1), b.version("m", 1)
    assert va is not None and vb is not None
    assert va.fingerprint != vb.fingerprint
    assert (
        va.fingerprint
        == parse_listing(objs("p", [f"m/1/{n}" for n in reversed(SM)]), "p", "_READY")
        .version("m", 1)
        .fingerprint
    )  # type: ignore[union-attr]


def test_settle_rules() -> None:
    tracker = SettleTracker(settle_s=10)
    no_marker = parse_listing(objs("p", [f"m/1/{n}" for n in SM]), "p", "_READY")
    assert complete_versions(no_marker, tracker, now=100) == {}
    assert complete_versions(no_marker, tracker, now=105) == {}
    assert list(complete_versions(no_marker, tracker, now=110)["m"]) == [1]
    # the listing changes (a new generation): the clock starts again
    changed = parse_listing(objs("p", [f"m/1/{n}" for n in SM], gen=2), "p", "_READY")
    assert complete_versions(changed, tracker, now=111) == {}
    assert list(complete_versions(changed, tracker, now=121)["m"]) == [1]
    # structurally incomplete never settles; a marker makes complete at once
    partial = parse_listing(
        objs("p", ["m/1/saved_model.pb", "m/1/variables/variables.index"]), "p", "_READY"
    )
    assert complete_versions(partial, tracker, now=1000) == {}
    assert complete_versions(partial, tracker, now=2000) == {}
    marked = parse_listing(objs("p", [*(f"m/1/{n}" for n in SM), "m/1/_READY"]), "p", "_READY")
    assert list(complete_versions(marked, SettleTracker(3600), now=0)["m"]) == [1]
    # a marker does not make a structurally broken version complete
    broken = parse_listing(
        objs("p", ["m/1/variables/variables.index", "m/1/_READY"]), "p", "_READY"
    )
    assert complete_versions(broken, SettleTracker(0), now=0) == {}


segments = st.sampled_from(["a", "b1", "_x", ".", "..", "", "-", "1", "007", "é", " ", "_READY"])
names_strategy = st.lists(segments, min_size=1, max_size=6).map("/".join)


@given(st.lists(names_strategy, max_size=40))
def test_parse_listing_never_raises(names: list[str]) -> None:
    listing = parse_listing(objs("p", names), "p", "_READY")
    for model, versions in listing.models.items():
        assert is_model_name(model)
        for v, rv in versions.items():
            assert v >= 1 and rv.model == model and rv.version == v
            for f in rv.files:
                assert ".." not in f.path.split("/") and f.path
