from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from modelsync.savedmodel import (
    TarballError,
    check_tarball,
    extract_tarball,
    local_savedmodel_problem,
)

GOOD = {
    "saved_model.pb": b"pb",
    "variables/variables.index": b"ix",
    "variables/variables.data-00000-of-00001": b"data",
}


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return path


def special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_good_tarball_extracts(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "m.tar.gz", [("./" + k, v) for k, v in GOOD.items()])
    assert sorted(check_tarball(tar)) == sorted(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    extract_tarball(tar, out)
    for k, v in GOOD.items():
        assert (out / k).read_bytes() == v


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (("/etc/evil", b"x"), "absolute path"),
        (("../evil", b"x"), "'..'"),
        (("variables/../../evil", b"x"), "'..'"),
        (special("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (special("hard", tarfile.LNKTYPE, "saved_model.pb"), "link"),
        (special("dev", tarfile.CHRTYPE), "special file"),
        (special("fifo", tarfile.FIFOTYPE), "special file"),
    ],
)
def test_malicious_members_are_rejected_and_nothing_extracted(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], reason: str
) -> None:
    tar = make_tar(tmp_path / "m.tar.gz", [*GOOD.items(), member])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TarballError, match=reason):
        extract_tarball(tar, out)
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_size_limit(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "m.tar.gz", [*GOOD.items(), ("assets/big", b"x" * 1000)])
    with pytest.raises(TarballError, match="exceeds 100 bytes"):
        check_tarball(tar, max_bytes=100)


def test_not_a_savedmodel_or_not_a_tarball(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "m.tar.gz", [("readme.txt", b"hi")])
    with pytest.raises(TarballError, match="not a SavedModel"):
        check_tarball(tar)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(TarballError, match="unreadable"):
        check_tarball(junk)


def test_local_savedmodel_problem(tmp_path: Path) -> None:
    assert "not a directory" in (local_savedmodel_problem(tmp_path / "nope") or "")
    for k, v in GOOD.items():
        (tmp_path / k).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / k).write_bytes(v)
    assert local_savedmodel_problem(tmp_path) is None
    (tmp_path / "variables" / "variables.data-00000-of-00001").unlink()
    assert "index without" in (local_savedmodel_problem(tmp_path) or "")
    (tmp_path / "variables" / "link").symlink_to("/etc/passwd")
    assert "symbolic links" in (local_savedmodel_problem(tmp_path) or "")
