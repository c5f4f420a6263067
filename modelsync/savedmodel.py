"""Local SavedModel checks and safe tarball handling (no TensorFlow needed)."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from modelsync.layout import structure_problem

DEFAULT_MAX_TAR_BYTES = 20 * 2**30


class TarballError(ValueError):
    """A tarball is unsafe or malformed; nothing was extracted."""


def local_files(root: str | os.PathLike[str]) -> list[str]:
    """Regular files under ``root`` as sorted '/'-separated relative paths (links refused)."""
    base = Path(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        for name in list(dirnames) + filenames:
            full = Path(dirpath) / name
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ValueError(f"{full}: symbolic links are not published")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ValueError(f"{full}: not a regular file")
            if stat.S_ISREG(mode):
                out.append(full.relative_to(base).as_posix())
    return sorted(out)


def local_savedmodel_problem(root: str | os.PathLike[str]) -> str | None:
    if not Path(root).is_dir():
        return f"{root}: not a directory"
    try:
        files = local_files(root)
    except ValueError as exc:
        return str(exc)
    problem = structure_problem(files)
    if problem is None and "model.tar.gz" in files:
        return "a SavedModel directory cannot hold a root model.tar.gz"
    return problem


def _member_problem(m: tarfile.TarInfo) -> str | None:
    name = m.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return f"path with '..' {name!r}"
    if m.issym() or m.islnk():
        return f"link {name!r} -> {m.linkname!r}"
    if not (m.isfile() or m.isdir()):
        return f"special file {name!r} (device, fifo or other)"
    return None


def _normalized(name: str) -> str:
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def check_tarball(path: str | os.PathLike[str],
                  max_bytes: int = DEFAULT_MAX_TAR_BYTES) -> list[str]:
    """Validate every member; return the regular files' normalized names.

    Rejects absolute paths, '..', symlinks, hardlinks, devices and fifos, more than
    ``max_bytes`` of content, and content that is not a whole SavedModel at the root.
    """
    total = 0
    files: list[str] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                problem = _member_problem(m)
                if problem:
                    raise TarballError(f"unsafe tarball member: {problem}")
                if m.isfile():
                    total += m.size
                    if total > max_bytes:
                        raise TarballError(f"tarball content exceeds {max_bytes} bytes")
                    files.append(_normalized(m.name))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TarballError(f"unreadable tarball: {exc}") from None
    if len(set(files)) != len(files):
        raise TarballError("tarball has duplicate member names")
    problem = structure_problem(files)
    if problem or "model.tar.gz" in files:
        raise TarballError(f"tarball is not a SavedModel at its root: "
                           f"{problem or 'nested model.tar.gz'}")
    return files


def extract_tarball(path: str | os.PathLike[str], dest: str | os.PathLike[str],
                    max_bytes: int = DEFAULT_MAX_TAR_BYTES) -> list[str]:
    """Check, then extract regular files and directories only, into ``dest`` (must exist)."""
    check_tarball(path, max_bytes)
    out = Path(dest)
    written: list[str] = []
    total = 0
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            if _member_problem(m):  # the archive changed under us
                raise TarballError(f"tarball changed while extracting: {m.name!r}")
            rel = _normalized(m.name)
            if not rel:
                continue
            target = out / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            if src is None:
                raise TarballError(f"cannot read member {m.name!r}")
            with src, open(target, "xb") as fh:
                while chunk := src.read(1 << 20):
                    total += len(chunk)
                    if total > max_bytes:
                        raise TarballError(f"tarball content exceeds {max_bytes} bytes")
                    fh.write(chunk)
            written.append(rel)
    return written
