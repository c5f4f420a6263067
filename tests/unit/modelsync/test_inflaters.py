"""gzip is inflated by the fastest zlib-compatible module installed (isal, then zlib-ng), with
the standard library's zlib as the fallback: each gives the same bytes and refuses the same
damage, so which one runs is only a matter of speed."""

from __future__ import annotations

import gzip
import importlib
import io
import os
import zlib
from types import ModuleType

import pytest

from modelsync import decompress
from modelsync.decompress import INFLATERS, Decompressed, DecompressError, fastest_inflater


def available() -> list[ModuleType]:
    out = []
    for name in INFLATERS:
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            continue
    return out


INFLATER_MODULES = available()
PAYLOAD = os.urandom(300_000) + bytes(500_000) + b"weights " * 100_000


def read_all(data: bytes, inflater: ModuleType, chunk: int = 64 * 1024) -> bytes:
    d = Decompressed(io.BytesIO(data), chunk, inflater)
    out = bytearray()
    while part := d.read(chunk):
        out += part
    return bytes(out)


def test_the_fastest_installed_inflater_is_chosen_and_zlib_is_the_fallback() -> None:
    assert decompress.INFLATER is INFLATER_MODULES[0]
    assert fastest_inflater(("no_such_inflater", "zlib")) is zlib
    assert fastest_inflater(("no_such_inflater",)) is zlib  # always something
    assert zlib in INFLATER_MODULES  # the fallback is the standard library's


@pytest.mark.parametrize("inflater", INFLATER_MODULES, ids=lambda m: m.__name__)
def test_every_inflater_gives_the_same_bytes(inflater: ModuleType) -> None:
    data = gzip.compress(PAYLOAD[:400_000]) + gzip.compress(PAYLOAD[400_000:]) + b"\0" * 100
    assert read_all(data, inflater) == PAYLOAD


@pytest.mark.parametrize("inflater", INFLATER_MODULES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("damage", ["truncated", "bad-crc", "garbage-after"])
def test_every_inflater_refuses_the_same_damage(inflater: ModuleType, damage: str) -> None:
    data = gzip.compress(PAYLOAD)
    if damage == "truncated":
        data = data[:-4]
    elif damage == "bad-crc":
        data = data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]
    else:
        data += b"not gzip"
    with pytest.raises(DecompressError):
        read_all(data, inflater)


def test_the_stdlib_fallback_extracts_a_tarball(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no faster module installed, extraction runs on the standard library's zlib."""
    import tarfile
    from pathlib import Path

    from modelsync.savedmodel import extract_tarball

    monkeypatch.setattr(decompress, "INFLATER", zlib)
    root = Path(str(tmp_path))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in (
            ("saved_model.pb", b"pb"),
            ("variables/variables.index", b"ix"),
            ("variables/variables.data-00000-of-00001", PAYLOAD),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    (root / "m.tar.gz").write_bytes(buf.getvalue())
    (root / "out").mkdir()
    extract_tarball(root / "m.tar.gz", root / "out")
    assert (root / "out/variables/variables.data-00000-of-00001").read_bytes() == PAYLOAD
