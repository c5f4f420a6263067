"""The marker's manifest (pure): parsing, what a mismatch says, and the catalog's states."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.catalog import MarkerInfo, build_catalog, dump_catalog, parse_catalog
from modelsync.checksums import crc32c_b64
from modelsync.layout import ObjectInfo, RemoteFile, SettleTracker, parse_listing
from modelsync.manifest import (
    Manifest,
    ManifestError,
    ManifestFile,
    Publisher,
    build_manifest,
    dump_manifest,
    manifest_state,
    parse_manifest,
)

CRC = crc32c_b64(b"x")
FILES = [
    ("saved_model.pb", 10, crc32c_b64(b"pb")),
    ("variables/variables.data-00000-of-00001", 20, crc32c_b64(b"data")),
    ("variables/variables.index", 5, crc32c_b64(b"ix")),
]


def manifest(files: list[tuple[str, int, str]] = FILES) -> Manifest:
    return build_manifest(files, Publisher("ana", "build-7", "modelsync 0.1.0"), 1795300000.5)


def listed(files: list[tuple[str, int, str]] = FILES) -> list[RemoteFile]:
    return [RemoteFile(p, generation=i + 1, size=s, crc32c=c) for i, (p, s, c) in enumerate(files)]


def doc(**changes: object) -> bytes:
    base: dict[str, object] = json.loads(dump_manifest(manifest()))
    base.update(changes)
    return json.dumps(base).encode()


def test_dump_is_the_documented_format_sorted_by_path() -> None:
    out = json.loads(dump_manifest(manifest(list(reversed(FILES)))))
    assert out == {
        "schema": 1,
        "files": [{"path": p, "size": s, "crc32c": c} for p, s, c in FILES],
        "publisher": {"user": "ana", "host": "build-7", "tool": "modelsync 0.1.0"},
        "published_at": 1795300000.5,
    }
    assert parse_manifest(dump_manifest(manifest())) == manifest()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \n",
        b"x",
        b"done\n",
        b"1795300000",
        b"{}",
        b'{"model": "m", "version": 1, "files": 3}',
    ],
)
def test_markers_without_a_manifest_keep_todays_rules(body: bytes) -> None:
    assert parse_manifest(body) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"schema": 1, "files": [{"path": "saved_mo', "not a JSON manifest"),
        (b"{not json}", "not a JSON manifest"),
        (doc(schema=2), "unsupported schema 2"),
        (doc(files=[]), "non-empty list"),
        (doc(files="saved_model.pb"), "non-empty list"),
        (doc(files=[{"path": "saved_model.pb", "size": 1}]), "exactly path, size and crc32c"),
        (doc(files=[{"path": "a", "size": 1, "crc32c": CRC, "md5": "x"}]), "exactly path"),
        (doc(files=[{"path": "a", "size": "1", "crc32c": CRC}]), "size must be an integer"),
        (doc(files=[{"path": "a", "size": True, "crc32c": CRC}]), "size must be an integer"),
        (doc(files=[{"path": "a", "size": -1, "crc32c": CRC}]), "negative size"),
        (doc(files=[{"path": "a", "size": 1, "crc32c": "nope"}]), "base64 of 4 bytes"),
        (doc(files=[{"path": "a", "size": 1, "crc32c": "AAAAAAAA"}]), "base64 of 4 bytes"),
        (doc(files=[{"path": 3, "size": 1, "crc32c": CRC}]), "must be strings"),
        (doc(files=[{"path": "../a", "size": 1, "crc32c": CRC}]), "bad relative path"),
        (doc(files=[{"path": "/a", "size": 1, "crc32c": CRC}]), "bad relative path"),
        (doc(files=[{"path": "a//b", "size": 1, "crc32c": CRC}]), "bad relative path"),
        (doc(files=[{"path": "a", "size": 1, "crc32c": CRC}] * 2), "duplicate paths ['a']"),
        (doc(publisher="ana"), "publisher"),
        (doc(publisher={"user": 1}), "publisher"),
        (doc(published_at="yesterday"), "published_at"),
    ],
)
def test_malformed_manifests_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(body)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_mismatch_names_what_differs() -> None:
    m = manifest()
    assert m.mismatch(listed()) is None
    assert m.mismatch(listed(list(reversed(FILES)))) is None  # order does not matter
    missing = m.mismatch(listed(FILES[:2]))
    assert missing is not None and "1 differences" in missing
    assert "missing variables/variables.index" in missing
    extra = m.mismatch(listed([*FILES, ("assets/vocab.txt", 3, CRC)]))
    assert extra is not None and "extra assets/vocab.txt" in extra
    resized = m.mismatch(listed([FILES[0], (FILES[1][0], 21, FILES[1][2]), FILES[2]]))
    assert resized is not None
    assert "variables/variables.data-00000-of-00001 size 21 != 20 in the manifest" in resized
    changed = m.mismatch(listed([(FILES[0][0], 10, CRC), *FILES[1:]]))
    assert changed is not None and f"saved_model.pb crc32c {CRC} != " in changed
    no_crc = m.mismatch([RemoteFile(p, 1, s, None) for p, s, _ in FILES])
    assert no_crc is not None and "3 differences" in no_crc


def test_mismatch_shows_the_first_few_differences_on_one_line() -> None:
    many = [(f"assets/f{i:02d}", 1, CRC) for i in range(10)]
    text = manifest().mismatch(listed(many))
    assert text is not None and "\n" not in text
    assert "13 differences" in text and text.endswith("and 10 more")
    assert text.count(";") == 3


def test_manifest_state() -> None:
    assert manifest_state(None, listed()) == ("none", None)
    assert manifest_state(manifest(), listed()) == ("verified", None)
    state, problem = manifest_state(manifest(), listed(FILES[:2]))
    assert state == "mismatch" and problem is not None and "missing" in problem
    assert manifest_state(ManifestError("manifest: bad"), listed()) == ("mismatch", "manifest: bad")


def test_build_manifest_checks_its_input() -> None:
    with pytest.raises(ManifestError, match="duplicate"):
        manifest([FILES[0], FILES[0]])
    with pytest.raises(ManifestError, match="base64"):
        manifest([("a", 1, "")])


paths = st.lists(
    st.text("abcXYZ019_.-", min_size=1, max_size=8).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=3,
).map("/".join)
crcs = st.binary(min_size=4, max_size=4).map(lambda b: base64.b64encode(b).decode())
manifests = st.builds(
    lambda files, pub, at: Manifest(
        tuple(ManifestFile(p, s, c) for p, (s, c) in files.items()), pub, at
    ),
    st.dictionaries(paths, st.tuples(st.integers(0, 2**53), crcs), min_size=1, max_size=20),
    st.builds(Publisher, st.text(max_size=10), st.text(max_size=10), st.text(max_size=20)),
    st.floats(0, 4e9, allow_nan=False),
)


@given(manifests)
def test_round_trip_and_self_match(m: Manifest) -> None:
    back = parse_manifest(dump_manifest(m))
    assert back == m
    assert [f.path for f in back.files] == sorted(f.path for f in m.files)
    files = [RemoteFile(f.path, 1, f.size, f.crc32c) for f in m.files]
    assert m.mismatch(files) is None
    if len(files) > 1:
        assert m.mismatch(files[1:]) is not None


def test_catalog_carries_the_manifest_state_and_reads_older_catalogs() -> None:
    objects = [ObjectInfo(f"models/m/{v}/{p}", 1, s, c) for v in (1, 2, 3) for p, s, c in FILES]
    objects += [ObjectInfo("models/m/1/_READY", 9, 100), ObjectInfo("models/m/2/_READY", 9, 100)]
    objects[0] = ObjectInfo("models/m/1/saved_model.pb", 1, 11, CRC)  # v1 differs
    listing = parse_listing(objects, "models", "_READY")
    states = {
        (m, v): MarkerInfo(*manifest_state(p, rv.files), p)
        for (m, v), p in {("m", 1): manifest(), ("m", 2): manifest(), ("m", 3): None}.items()
        if (rv := listing.version(m, v)) is not None
    }
    catalog = build_catalog(listing, SettleTracker(0), 0.0, "models", states)
    m = catalog.models["m"]
    assert (m[1].manifest, m[2].manifest, m[3].manifest) == ("mismatch", "verified", "none")
    assert m[1].problem is not None and "saved_model.pb size 11 != 10" in m[1].problem
    assert (m[1].marker, m[2].marker, m[3].marker) == (9, 9, None)
    again = parse_catalog(dump_catalog(catalog))
    assert again.models == catalog.models
    old = json.loads(dump_catalog(catalog))
    for entry in old["models"]["m"].values():
        entry.pop("manifest")
        entry.pop("problem", None)
        entry.pop("marker", None)
    old["models"]["m"]["2"]["manifest"] = "a-state-from-the-future"
    older = parse_catalog(json.dumps(old).encode())
    assert {v: cv.manifest for v, cv in older.models["m"].items()} == {
        1: "none",
        2: "none",
        3: "none",
    }
    assert older.models["m"][1].problem is None
