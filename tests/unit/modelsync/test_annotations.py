"""A version's notes: the manifest's, or the operators' edits kept in the bucket."""

from __future__ import annotations

import json

import pytest

from modelsync.annotations import (
    Annotation,
    AnnotationError,
    Annotations,
    dump_annotations,
    notes,
    parse_annotations,
)
from modelsync.manifest import ManifestError, check_notes, parse_tag


def test_an_edit_replaces_the_manifests_notes_and_says_who() -> None:
    assert notes("from CI", {"a": "1"}, None).to_json() == {
        "description": "from CI",
        "tags": {"a": "1"},
        "edited_by": None,
        "edited_at": None,
    }
    edit = Annotation("better", {"b": "2"}, "ana", 1795300000.0)
    assert notes("from CI", {"a": "1"}, edit).to_json() == {
        "description": "better",
        "tags": {"b": "2"},
        "edited_by": "ana",
        "edited_at": 1795300000.0,
    }


def test_annotations_round_trip_and_edit_one_version() -> None:
    doc = Annotations().with_version("m", 3, Annotation("x", {"k": "v"}, "bob", 5.0))
    doc = doc.with_version("m", 4, Annotation("y", {}, "ana", 6.0))
    again = parse_annotations(dump_annotations(doc))
    assert again == doc and again.get("m", 3) == Annotation("x", {"k": "v"}, "bob", 5.0)
    assert again.get("m", 9) is None and again.get("other", 3) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"schema": 2, "models": {}}',
        b'{"schema": 1, "models": {"bad name": {}}}',
        b'{"schema": 1, "models": {"m": {"007": {}}}}',
        b'{"schema": 1, "models": {"m": {"1": {"tags": {"k": 1}}}}}',
        b'{"schema": 1, "models": {"m": {"1": {"by": 3}}}}',
    ],
)
def test_a_malformed_annotations_object_is_refused(body: bytes) -> None:
    with pytest.raises(AnnotationError):
        parse_annotations(body)


def test_notes_are_bounded_and_tags_are_key_value() -> None:
    assert check_notes("  spaced  ", {"b": "2", "a": "1"}, "x") == ("spaced", {"a": "1", "b": "2"})
    assert parse_tag("dataset = 2026-03") == ("dataset", "2026-03")
    for bad in ("no-equals", "=value"):
        with pytest.raises(ManifestError):
            parse_tag(bad)
    with pytest.raises(ManifestError, match="at most 2000"):
        check_notes("x" * 2001, {}, "x")
    with pytest.raises(ManifestError, match="at most 32"):
        check_notes("", {f"k{i}": "v" for i in range(33)}, "x")
    with pytest.raises(ManifestError, match="tag 'bad key'"):
        check_notes("", {"bad key": "v"}, "x")
    assert json.loads(dump_annotations(Annotations()))["models"] == {}
