"""A container model's descriptor (pure): the documented schema, every bad field on its own
line, the image reference rules, the kind in the layout and the catalog."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.catalog import build_catalog, dump_catalog, parse_catalog
from modelsync.container import (
    Descriptor,
    DescriptorError,
    Resources,
    check_descriptor,
    dump_descriptor,
    image_problem,
    parse_descriptor,
    parse_env,
    parse_memory,
    split_image,
)
from modelsync.layout import (
    DESCRIPTOR_NAME,
    ObjectInfo,
    SettleTracker,
    parse_listing,
    structure_problem,
)

DIGEST = "sha256:" + "ab" * 32
GOOD = Descriptor(
    "127.0.0.1:5000/churn:7",
    DIGEST,
    8080,
    {"THREADS": "2"},
    Resources(cpus=0.5, memory_bytes=512 * 2**20),
)


def test_dump_is_the_documented_schema_and_parses_back() -> None:
    doc = json.loads(dump_descriptor(GOOD))
    assert doc == {
        "schema": 1,
        "image": "127.0.0.1:5000/churn:7",
        "digest": DIGEST,
        "port": 8080,
        "env": {"THREADS": "2"},
        "resources": {"cpus": 0.5, "memory_bytes": 536870912},
    }
    assert parse_descriptor(dump_descriptor(GOOD)) == GOOD


def test_minimal_descriptor_takes_the_defaults() -> None:
    d = parse_descriptor(b'{"schema": 1, "image": "reg.example/team/churn:1"}')
    assert (d.port, d.digest, dict(d.env), d.resources) == (8080, None, {}, Resources())
    assert d.reference == "reg.example/team/churn:1"


def test_reference_pins_the_digest() -> None:
    assert GOOD.reference == f"127.0.0.1:5000/churn:7@{DIGEST}"  # the tag says, the digest pins
    assert Descriptor(f"r.io/a:1@{DIGEST}", DIGEST).reference == f"r.io/a:1@{DIGEST}"


def test_every_bad_field_is_one_line() -> None:
    body = json.dumps(
        {
            "schema": 1,
            "image": "Bad/Name",
            "digest": "md5:x",
            "port": 0,
            "env": {"1X": "a", "OK": 3},
            "resources": {"cpus": -1, "memory_bytes": 10, "gpus": 1},
            "extra": True,
        }
    ).encode()
    with pytest.raises(DescriptorError) as info:
        parse_descriptor(body)
    problems = info.value.problems
    fields = [p.split(":", 1)[0] for p in problems]
    assert sorted(fields) == sorted(
        [
            "extra",
            "resources.gpus",
            "image",
            "digest",
            "port",
            "env",
            "env.OK",
            "resources.cpus",
            "resources.memory_bytes",
        ]
    )
    assert all("\n" not in p for p in problems)
    assert str(info.value) == "; ".join(problems)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"image": "a/b:1"}', "schema: expected 1"),
        (b'{"schema": 2, "image": "a/b:1"}', "schema: expected 1, got 2"),
        (b'{"schema": 1}', "image: expected a string"),
        (b'{"schema": 1, "image": "reg.io/churn"}', "has no tag"),
        (b'{"schema": 1, "image": "a/b:1", "env": []}', "env: expected an object"),
        (b'{"schema": 1, "image": "a/b:1", "resources": 3}', "resources: expected an object"),
        (b'{"schema": 1, "image": "a/b:1", "port": true}', "port: expected an integer"),
        (b'{"schema": 1, "image": "a/b:1", "port": 70000}', "port: expected an integer"),
        (b" " * 70000, "larger than"),
    ],
)
def test_malformed_descriptors_say_why(body: bytes, needle: str) -> None:
    with pytest.raises(DescriptorError, match=needle):
        parse_descriptor(body)


def test_digest_must_agree_with_a_pinned_image() -> None:
    other = "sha256:" + "cd" * 32
    with pytest.raises(DescriptorError, match="differs from the image"):
        check_descriptor(Descriptor(f"r.io/a@{DIGEST}", other))


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("127.0.0.1:5000/churn:7", ("127.0.0.1:5000", "churn", "7", None)),
        ("localhost/x/y:tag", ("localhost", "x/y", "tag", None)),
        ("team/churn:1", (None, "team/churn", "1", None)),
        ("gcr.io/p/churn:v1.2-rc", ("gcr.io", "p/churn", "v1.2-rc", None)),
        (f"r.io/a@{DIGEST}", ("r.io", "a", None, DIGEST)),
    ],
)
def test_split_image(image: str, parts: tuple[object, ...]) -> None:
    assert image_problem(image) is None
    assert split_image(image) == parts


@pytest.mark.parametrize(
    "image", ["", "churn", "UPPER/x:1", "a//b:1", "a/b:", "a/b:-x", "a/b@sha256:12", "a b:1"]
)
def test_bad_images(image: str) -> None:
    assert image_problem(image) is not None


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    registry=st.sampled_from(["", "127.0.0.1:5000/", "reg.example.com/", "localhost:1/"]),
    path=st.lists(_component, min_size=1, max_size=3),
    tag=_tag,
    port=st.integers(1, 65535),
    env=st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
        st.text(max_size=20).filter(lambda v: "\0" not in v),
        max_size=5,
    ),
    cpus=st.none() | st.floats(0.01, 256),
    memory=st.none() | st.integers(6 * 2**20, 2**40),
)
def test_any_valid_descriptor_round_trips(
    registry: str,
    path: list[str],
    tag: str,
    port: int,
    env: dict[str, str],
    cpus: float | None,
    memory: int | None,
) -> None:
    d = Descriptor(f"{registry}{'/'.join(path)}:{tag}", None, port, env, Resources(cpus, memory))
    assert parse_descriptor(dump_descriptor(d)) == d


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_descriptor(data)
    except DescriptorError as exc:
        assert exc.problems


def test_env_and_memory_flags() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(DescriptorError) as info:
        parse_env(["A=1", "A=2", "nothing", "9X=1"])
    assert len(info.value.problems) == 3
    assert parse_memory("512M") == 512 * 2**20
    assert parse_memory("1.5g") == int(1.5 * 2**30)
    assert parse_memory("2GiB") == 2 * 2**30
    assert parse_memory("1048576") == 2**20
    with pytest.raises(DescriptorError, match="--memory"):
        parse_memory("lots")


def test_layout_kind_and_structure() -> None:
    assert structure_problem([DESCRIPTOR_NAME]) is None
    assert "only file" in (structure_problem([DESCRIPTOR_NAME, "saved_model.pb"]) or "")
    objects = [
        ObjectInfo(f"models/churn/3/{DESCRIPTOR_NAME}", 5, 120),
        ObjectInfo("models/churn/3/_READY", 6, 300),
        ObjectInfo("models/ranker/1/saved_model.pb", 7, 10),
        ObjectInfo("models/ranker/1/_READY", 8, 0),
    ]
    listing = parse_listing(objects, "models", "_READY")
    assert listing.models["churn"][3].kind == "container"
    assert listing.models["ranker"][1].kind == "savedmodel"
    catalog = build_catalog(listing, SettleTracker.markers_only(), 1.0, "models")
    assert catalog.models["churn"][3].complete and catalog.models["churn"][3].kind == "container"
    doc = json.loads(dump_catalog(catalog))
    assert doc["models"]["churn"]["3"]["kind"] == "container"
    assert "kind" not in doc["models"]["ranker"]["1"]  # as catalogs were before containers
    back = parse_catalog(dump_catalog(catalog))
    assert back.models["churn"][3].kind == "container"
    assert back.models["ranker"][1].kind == "savedmodel"


def test_catalog_with_an_unknown_kind_is_refused() -> None:
    from modelsync.catalog import CatalogError

    doc = {
        "schema": 1,
        "models": {
            "m": {
                "1": {"complete": True, "bytes": 1, "objects": 1, "fingerprint": "f", "kind": "x"}
            }
        },
    }
    with pytest.raises(CatalogError, match="unknown kind"):
        parse_catalog(json.dumps(doc).encode())
