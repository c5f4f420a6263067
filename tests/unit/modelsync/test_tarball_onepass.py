"""One streaming pass that checks and extracts a tarball (from a file or from a download's
pipe): every hostile member is refused wherever it sits, and nothing is left behind."""

from __future__ import annotations

import io
import re
import tarfile
import threading
from pathlib import Path

import pytest

from modelsync.savedmodel import TarballError, check_tarball, extract_tarball
from remote_model_puller.pipe import ChunkPipe, PipeAbandoned, PipeStopped

GOOD = [
    ("saved_model.pb", b"pb"),
    ("variables/variables.index", b"ix"),
    ("variables/variables.data-00000-of-00001", b"data" * 1000),
    ("assets/vocab", b"v"),
]


def entry(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def good() -> list[tuple[tarfile.TarInfo, bytes]]:
    return [entry(n, d) for n, d in GOOD]


HOSTILE = [
    (entry("/etc/evil"), "absolute path"),
    (entry("C:/evil"), "absolute path"),
    (entry("../evil"), "'..'"),
    (entry("variables/../../evil"), "'..'"),
    (entry("a\\..\\..\\evil"), "'..'"),
    (entry("link", b"", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (entry("variables/link", b"", tarfile.SYMTYPE, "../../evil"), "link"),
    (entry("hard", b"", tarfile.LNKTYPE, "saved_model.pb"), "link"),
    (entry("dev", b"", tarfile.CHRTYPE), "special file"),
    (entry("blk", b"", tarfile.BLKTYPE), "special file"),
    (entry("fifo", b"", tarfile.FIFOTYPE), "special file"),
    (entry("saved_model.pb", b"again"), "duplicate member names"),
    (entry("variables/variables.index/inner"), "duplicate member names"),
    (entry("assets", b"", tarfile.DIRTYPE), None),  # a directory entry after its files: fine
]


def outside(tmp_path: Path) -> list[str]:
    return sorted(
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if not str(p.relative_to(tmp_path)).startswith(("out", "m.tar.gz"))
    )


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize(("member", "reason"), HOSTILE)
def test_hostile_member_anywhere_is_refused_and_nothing_is_left(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], reason: str | None, position: str
) -> None:
    members = good()
    at = {"first": 0, "middle": 2, "last": len(members)}[position]
    if reason and reason.startswith("duplicate") and position == "first":
        at = len(members)  # a duplicate needs its first copy before it
    members.insert(at, member)
    tar = tmp_path / "m.tar.gz"
    tar.write_bytes(tar_bytes(members))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("was there before")  # not the extraction's to remove
    if reason is None:
        assert sorted(extract_tarball(tar, out)) == sorted(n for n, _ in GOOD)
        return
    with pytest.raises(TarballError, match=re.escape(reason)):
        extract_tarball(tar, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep"]  # nothing extracted stays
    assert outside(tmp_path) == []  # and nothing was ever written outside it
    with pytest.raises(TarballError, match=re.escape(reason)):
        check_tarball(tar)


def test_extraction_is_byte_identical_and_checks_the_structure(tmp_path: Path) -> None:
    tar = tmp_path / "m.tar.gz"
    tar.write_bytes(
        tar_bytes(
            [
                entry("./", b"", tarfile.DIRTYPE),
                entry("./variables", b"", tarfile.DIRTYPE),
                *[entry("./" + n, d) for n, d in GOOD],
            ]
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    assert sorted(extract_tarball(tar, out)) == sorted(n for n, _ in GOOD)
    assert {n: (out / n).read_bytes() for n, _ in GOOD} == dict(GOOD)
    not_sm = tmp_path / "readme.tar.gz"
    not_sm.write_bytes(tar_bytes([entry("readme.txt", b"hi")]))
    out2 = tmp_path / "out2"
    out2.mkdir()
    with pytest.raises(TarballError, match="not a SavedModel at its root"):
        extract_tarball(not_sm, out2)
    assert list(out2.iterdir()) == []


def test_size_limit_and_truncation_while_extracting(tmp_path: Path) -> None:
    tar = tmp_path / "m.tar.gz"
    data = tar_bytes(good())
    tar.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TarballError, match="exceeds 1000 bytes"):
        extract_tarball(tar, out, max_bytes=1000)
    assert list(out.iterdir()) == []
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(TarballError, match="unreadable tarball"):
        extract_tarball(tar, out)
    assert list(out.iterdir()) == []


def feed(pipe: ChunkPipe, data: bytes, chunk: int) -> threading.Thread:
    def run() -> None:
        try:
            for i in range(0, len(data), chunk):
                pipe.write(data[i : i + chunk])
        except PipeAbandoned:
            pass
        finally:
            pipe.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("chunk", [1, 511, 4096, 1 << 20])
def test_extracts_from_a_stream_in_one_pass(tmp_path: Path, chunk: int) -> None:
    data = tar_bytes(good())
    pipe = ChunkPipe(threading.Event(), max_chunks=4)
    writer = feed(pipe, data, chunk)
    out = tmp_path / "out"
    out.mkdir()
    assert sorted(extract_tarball(pipe, out)) == sorted(n for n, _ in GOOD)
    pipe.drain()
    writer.join(10)
    assert not writer.is_alive()
    assert {n: (out / n).read_bytes() for n, _ in GOOD} == dict(GOOD)


def test_a_hostile_stream_is_refused_and_its_writer_released(tmp_path: Path) -> None:
    data = tar_bytes([entry("../evil"), *good()]) + b"\0" * (4 << 20)
    pipe = ChunkPipe(threading.Event(), max_chunks=2)
    writer = feed(pipe, data, 4096)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TarballError, match=r"path with '\.\.'"):
        extract_tarball(pipe, out)
    pipe.abandon()
    writer.join(10)
    assert not writer.is_alive()  # the writer is not left blocked on a full pipe
    assert list(out.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_stop_releases_both_sides() -> None:
    stop = threading.Event()
    pipe = ChunkPipe(stop, max_chunks=1)
    pipe.write(b"a")
    stop.set()
    with pytest.raises(PipeStopped):
        pipe.write(b"b")  # the pipe is full and we stop
    assert pipe.read(1) == b"a"
    with pytest.raises(PipeStopped):
        pipe.read(1)  # nothing more will come


def plain_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["w:gz", "w:bz2", "w:xz", "w", "gz-two-members", "gz-zero-padding"])
def test_compressions_accepted_as_before(tmp_path: Path, fmt: str) -> None:
    import gzip

    raw = plain_tar(good())
    if fmt == "gz-two-members":  # what `cat a.gz b.gz` makes: one stream for gzip
        data = gzip.compress(raw[:3000]) + gzip.compress(raw[3000:])
    elif fmt == "gz-zero-padding":
        data = gzip.compress(raw) + b"\0" * 4096
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=fmt) as tar:  # type: ignore[call-overload]
            for info, d in good():
                tar.addfile(info, io.BytesIO(d))
        data = buf.getvalue()
    tar_path = tmp_path / "m.tar.gz"
    tar_path.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    assert sorted(extract_tarball(tar_path, out)) == sorted(n for n, _ in GOOD)
    assert {n: (out / n).read_bytes() for n, _ in GOOD} == dict(GOOD)


@pytest.mark.parametrize("damage", ["truncated-in-trailer", "garbage-after", "bad-gzip-crc"])
def test_damaged_compression_is_refused(tmp_path: Path, damage: str) -> None:
    data = tar_bytes(good())
    if damage == "truncated-in-trailer":
        data = data[:-4]  # the archive itself is whole: only the gzip length is missing
    elif damage == "garbage-after":
        data += b"not gzip"
    else:
        data = data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]
    tar_path = tmp_path / "m.tar.gz"
    tar_path.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TarballError, match="unreadable tarball"):
        extract_tarball(tar_path, out)
    assert list(out.iterdir()) == []


class Zeros:
    def __init__(self, n: int) -> None:
        self.n = n

    def read(self, k: int = -1) -> bytes:
        k = self.n if k < 0 else min(k, self.n)
        self.n -= k
        return b"\0" * k


def test_a_compression_bomb_stays_bounded(tmp_path: Path) -> None:
    import subprocess
    import sys

    tar_path = tmp_path / "m.tar.gz"
    with tarfile.open(tar_path, "w:gz", compresslevel=9) as tar:
        for info, data in good():
            tar.addfile(info, io.BytesIO(data))
        big = tarfile.TarInfo("assets/zeros")
        big.size = 256 << 20
        tar.addfile(big, Zeros(big.size))  # type: ignore[arg-type]
    assert tar_path.stat().st_size < 1 << 20  # 256 MiB of zeros in under 1 MiB
    code = (
        "from modelsync.savedmodel import check_tarball as c;"  # VmHWM: this process's
        f"n = len(c({str(tar_path)!r})); assert n == 5, n;"  # own peak (ru_maxrss is not)
        "print(next(int(l.split()[1]) // 1024 for l in open('/proc/self/status')"
        " if l.startswith('VmHWM:')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) < 120  # MB: decompressed in bounded steps, never all at once
    with pytest.raises(TarballError, match="exceeds"):
        check_tarball(tar_path, max_bytes=128 << 20)


def test_a_member_cap_stops_an_inode_bomb_before_it_lands(tmp_path: Path) -> None:
    """Empty files and directories weigh no bytes: the cap counts members, and extraction
    stops at the one too many, with nothing of the tarball left behind."""
    bomb = good() + [entry(f"assets/e{i}", b"") for i in range(40)]
    bomb += [entry(f"assets/d{i}", b"", tarfile.DIRTYPE) for i in range(40)]
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(tar_bytes(bomb))
    with pytest.raises(TarballError, match="more than 50 members"):
        check_tarball(path, max_members=50)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(TarballError, match="more than 50 members"):
        extract_tarball(path, dest, max_members=50)
    assert list(dest.iterdir()) == []
    assert len(check_tarball(path, max_members=len(bomb))) == len(GOOD) + 40  # at the cap: fine
